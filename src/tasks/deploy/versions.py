"""The one reader of deploy/versions.env, the file that pins every version (the serving image included)."""

from __future__ import annotations

import os
from pathlib import Path

VERSIONS_FILE = Path(__file__).resolve().parents[3] / "deploy" / "versions.env"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=VALUE lines of a versions.env file (comments and blank lines skipped, quotes removed)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {raw!r}")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def serving_image(path: Path = VERSIONS_FILE) -> str:
    """The serving image reference: SLUICE_SERVING_IMAGE from the environment, else the pinned one."""
    override = os.environ.get("SLUICE_SERVING_IMAGE")
    if override:
        return override
    if not path.exists():
        # In the cluster only src/ arrives by git-sync: the worker needs the reference given.
        raise RuntimeError(
            f"{path} not found: set the `serving_image` Airflow Variable or SLUICE_SERVING_IMAGE "
            "to the model-serving image reference"
        )
    versions = read_versions(path)
    return f"{versions['SERVING_IMAGE_REPOSITORY']}:{versions['SERVING_IMAGE_TAG']}"
