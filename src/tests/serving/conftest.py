"""Session fixtures for serving tests: two small trained models (champion and challenger), built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.servers import model_sources_digest, small_model

CHAMPION_SEED = 1
CHALLENGER_SEED = 2


@pytest.fixture(scope="session")
def model_cache_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained test models survive between sessions in pytest's cache (keyed by the model code's digest)."""
    cache = getattr(request.config, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return tmp_path_factory.mktemp("small-models")
    return Path(cache.mkdir(f"sluice-small-models-{model_sources_digest()}"))


@pytest.fixture(scope="session")
def champion_model_dir(model_cache_root: Path) -> Path:
    return small_model(model_cache_root, CHAMPION_SEED)


@pytest.fixture(scope="session")
def challenger_model_dir(model_cache_root: Path) -> Path:
    return small_model(model_cache_root, CHALLENGER_SEED)


@pytest.fixture(scope="session")
def xray_model_dir(model_cache_root: Path) -> Path:
    """The tiny xray model of tests/serving/xray_model.py, saved as an MLflow pyfunc once per source digest."""
    from tests.serving.xray_model import saved_region_model

    return saved_region_model(model_cache_root)
