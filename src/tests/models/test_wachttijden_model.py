"""The wachttijden model's one check of categories against its vocabularies, on every input shape it gets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.wachttijden.schema import FEATURES
from tests.serving.small_model import CATEGORIES


@pytest.fixture(scope="module")
def model():
    from models.wachttijden.model import WachttijdenModel, build_model

    return WachttijdenModel(build_model(CATEGORIES, hidden_units=(4,)), CATEGORIES)


def known_columns(rows: int = 3) -> dict[str, list[str]]:
    return {name: [values[i % len(values)] for i in range(rows)] for name, values in CATEGORIES.items()}


def test_known_values_have_no_unknown_categories_in_any_container(model):
    columns = known_columns()
    assert model.unknown_categories(columns) == {}
    assert model.unknown_categories(pd.DataFrame(columns)) == {}
    assert model.unknown_categories({k: np.asarray(v).reshape(-1, 1) for k, v in columns.items()}) == {}


@pytest.mark.parametrize("container", [list, np.asarray, pd.Series, lambda v: np.asarray(v, dtype=object)[:, None]])
def test_unknown_values_are_named_sorted_and_once_per_feature(model, container):
    columns = known_columns(4)
    columns["ROAZ_REGIO"][1:] = ["Zeeland", "Atlantis", "Zeeland"]
    columns["SPECIALISME"][0] = 320  # not a string: reported as its text, never silently matched
    unknown = model.unknown_categories({k: container(v) for k, v in columns.items()})
    assert unknown == {"SPECIALISME": ["320"], "ROAZ_REGIO": ["Atlantis", "Zeeland"]}
    assert list(unknown) == [f for f in FEATURES if f in unknown]  # in feature order


def test_masking_for_oov_touches_only_the_given_features_at_about_the_fraction():
    from models.wachttijden.model import OOV_TOKEN, mask_for_oov

    frame = pd.DataFrame({name: [values[0]] * 10_000 for name, values in CATEGORIES.items()})
    masked = mask_for_oov(frame, ["SPECIALISME"], 0.05, seed=1)
    share = (masked["SPECIALISME"] == OOV_TOKEN).mean()
    assert 0.04 < share < 0.06
    assert OOV_TOKEN not in CATEGORIES["SPECIALISME"]
    for name in FEATURES:
        if name != "SPECIALISME":
            assert masked[name].equals(frame[name])
    assert (frame["SPECIALISME"] != OOV_TOKEN).all()  # the input is left as it was


def test_open_features_and_background_travel_with_the_model_files(model, tmp_path):
    from models.wachttijden.model import WachttijdenModel, save_model_files

    background = known_columns(6)
    save_model_files(tmp_path / "new", model.keras_model, CATEGORIES, open_features=["SPECIALISME"],
                     background=background)
    loaded = WachttijdenModel.load(tmp_path / "new")
    assert loaded.open_features == ("SPECIALISME",)
    assert loaded.background == {name: background[name] for name in FEATURES}

    # A model saved without them (as every model before them was) is closed and cannot be explained.
    save_model_files(tmp_path / "plain", model.keras_model, CATEGORIES)
    (tmp_path / "plain" / "open_features.json").unlink()  # absent in models logged before the file existed
    plain = WachttijdenModel.load(tmp_path / "plain")
    assert plain.open_features == () and plain.background is None


def test_an_open_feature_must_be_a_feature(model, tmp_path):
    from models.wachttijden.model import save_model_files

    with pytest.raises(ValueError, match="POSTCODE"):
        save_model_files(tmp_path, model.keras_model, CATEGORIES, open_features=["POSTCODE"])
