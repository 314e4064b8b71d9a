"""KServe V1 `:explain` for the served model: exact Shapley values per row against the model's background sample."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np

from models.wachttijden.schema import FEATURES
from models.wachttijden.shapley import ShapleyPlan
from serving.guard import ClientError, Unsupported

METHOD = "exact_shapley"
# Composite rows per model call: each call goes through the batcher like a prediction, so a long
# explanation takes turns with the predictions queued meanwhile instead of holding the model.
CHUNK_ROWS = 8192


def background_of(model: Any) -> Mapping[str, Sequence[str]] | None:
    """The model's background sample, None for models logged without one (or loaded by older model code)."""
    return getattr(model, "background", None)


async def explain_columns(
    columns: Mapping[str, Sequence[str]],
    *,
    model: Any,
    predict: Callable[[dict[str, list[str]]], Awaitable[np.ndarray]],
    max_rows: int,
    described_as: str,
) -> dict[str, Any]:
    """The :explain answer for checked request columns: per row the prediction, the base value and an
    attribution per feature, base value + attributions = prediction.

    Raises Unsupported (501) when the model has no background sample, ClientError (413) above `max_rows`.
    """
    background = background_of(model)
    if not background:
        raise Unsupported(
            f"{described_as} has no background sample to measure explanations against (it was logged before "
            "models carried one); :predict still works, and a model trained now can be explained"
        )
    rows = len(columns[FEATURES[0]])
    if rows > max_rows:
        raise ClientError(
            f"request has {rows} rows; :explain takes at most {max_rows} per request (each row costs "
            f"one model evaluation per coalition and background row); send fewer rows per request",
            413,
        )
    plan = ShapleyPlan(columns, background, FEATURES)
    predictions = [await predict(chunk) for chunk in plan.chunks(CHUNK_ROWS)]
    explanation = plan.combine(np.concatenate(predictions))
    return {
        "method": METHOD,
        "background_rows": len(background[FEATURES[0]]),
        "explanations": explanation.rows(),
    }
