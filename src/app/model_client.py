"""The model server's V1 API as the app uses it: predict rows, explain rows, check readiness."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from app.backends import BackendError, BackendUnavailable, call

# Rows per :predict call on the Batch page: well under the server's --max-rows (10,000 by default),
# so a large upload becomes several requests instead of one refused one.
BATCH_CHUNK_ROWS = 1000

Row = Mapping[str, str]


@dataclass(frozen=True)
class Explanation:
    """One row's :explain answer: base value + sum(attributions) = prediction."""

    prediction: float
    base_value: float
    attributions: dict[str, float]
    model_version: str


class ModelServer:
    def __init__(self, url: str, model_name: str, *, what: str = "model server", timeout_s: float = 30.0,
                 session: requests.Session | None = None):
        self.url, self.model_name, self.what, self.timeout_s = url, model_name, what, timeout_s
        self.session = session or requests.Session()

    def ready(self) -> bool:
        """True when the server answers and has its model loaded; False when it does not answer."""
        try:
            call(self.session, self.what, "GET", f"{self.url}/v2/models/{self.model_name}/ready",
                 timeout=min(self.timeout_s, 5))
        except (BackendUnavailable, BackendError):
            return False
        return True

    def predict(self, rows: Sequence[Row]) -> list[float]:
        """Predicted waiting time in weeks per row, in chunks of BATCH_CHUNK_ROWS rows."""
        predictions: list[float] = []
        for start in range(0, len(rows), BATCH_CHUNK_ROWS):
            chunk = [dict(r) for r in rows[start : start + BATCH_CHUNK_ROWS]]
            body = self._post("predict", {"instances": chunk})
            predictions += [float(p) for p in body["predictions"]]
        return predictions

    def explain(self, row: Row) -> Explanation:
        body = self._post("explain", {"instances": [dict(row)]})
        (first,) = body["explanations"]
        return Explanation(
            prediction=float(first["prediction"]),
            base_value=float(first["base_value"]),
            attributions={name: float(value) for name, value in first["attributions"].items()},
            model_version=str(body.get("model_version") or "?"),
        )

    def _post(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.url}/v1/models/{self.model_name}:{verb}"
        return call(self.session, self.what, "POST", url, json=body, timeout=self.timeout_s).json()


def answers(url: str, timeout_s: float = 3.0) -> bool:
    """True when GET `url` answers 2xx (a health endpoint)."""
    try:
        return requests.get(url, timeout=timeout_s).ok
    except requests.RequestException:
        return False
