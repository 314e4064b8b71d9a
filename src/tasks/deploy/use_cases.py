"""What the deploy steps need to know of a use case: which registered model, which local port and service name,
and what its smoke request is. Everything else (builders, apply order, waits, supervisor) is shared.

A use case's deploy is the tabular deploy with these values swapped in (`settings_for`), so the same
`deploy_model` steps serve `xray` on its own port beside `wachttijden`, and the same manifest builders
render its InferenceService (the one ServingRuntime serves both: the model server picks its server
class from the model, see serving.use_cases).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.config import Settings

TABULAR = "wachttijden"
IMAGE = "xray"


# The tabular smoke request: three rows of known categories (also what scripts/perform-prediction.sh sends).
SMOKE_REQUEST = Path(__file__).with_name("smoke_request.json")


def tabular_smoke_body(path: Path = SMOKE_REQUEST) -> dict[str, Any]:
    """The V2 request the tabular model is smoke-tested with."""
    return json.loads(path.read_text())


# Seeds of the smoke scans: one of each class of the synthetic generator, the same on every run.
SMOKE_SCAN_SEEDS = ((0, False), (1, True))


def image_smoke_body() -> dict[str, Any]:
    """A V2 request with two synthetic scans (one per class) as base64 PNG files."""
    import numpy as np

    from models.xray.generate import draw_scan, encode_png

    files = [encode_png(draw_scan(np.random.default_rng(seed), pneumonia)) for seed, pneumonia in SMOKE_SCAN_SEEDS]
    data = [base64.b64encode(f).decode("ascii") for f in files]
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data}]}


@dataclass(frozen=True)
class UseCase:
    """One use case as the deploy steps see it."""

    name: str
    model_setting: str  # the Settings field naming its registered model
    port_setting: str  # the Settings field with its local model server's port
    # Local state-file name of its champion's server: the tabular one keeps "model" (earlier runs'
    # state files, ./deploy-local.sh), every other is named after the use case so both can run.
    local_service: str
    smoke_body: Callable[[], dict[str, Any]]
    smoke_output: str  # the V2 output the smoke test checks
    smoke_values_per_row: int  # 1 (a prediction) or the number of classes (probabilities)


USE_CASES: dict[str, UseCase] = {
    TABULAR: UseCase(TABULAR, "model_name", "local_inference_port", "model", tabular_smoke_body, "predictions", 1),
    IMAGE: UseCase(IMAGE, "xray_model_name", "local_xray_port", "xray", image_smoke_body, "probabilities", 2),
}


def use_case(name: str) -> UseCase:
    try:
        return USE_CASES[name]
    except KeyError:
        raise ValueError(f"use_case must be one of {sorted(USE_CASES)}, not {name!r}") from None


def settings_for(settings: Settings, name: str) -> Settings:
    """The settings with the use case's model name and local port in the places the deploy steps read."""
    case = use_case(name)
    if case.name == TABULAR:
        return settings
    return dataclasses.replace(
        settings, model_name=getattr(settings, case.model_setting),
        local_inference_port=int(getattr(settings, case.port_setting)),
    )
