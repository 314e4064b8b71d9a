"""The xray image model server's V1 API as the X-ray page uses it: one scan's class probabilities (:predict) and
its occlusion heat map (:explain). The scan's bytes go as they are (base64): the server decodes and checks them,
and its 4xx message (not an image, size bounds, colour) is what the page shows."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import requests

from app.backends import BackendError, call
from app.config import XRAY_START_HINT

# The X-ray page's sample scans: seeds of the training data's own generator (models.xray.generate) giving one
# clear scan per class. Drawn on demand, never downloaded.
SAMPLES: dict[str, tuple[int, bool]] = {"Generated sample: normal": (11, False),
                                        "Generated sample: pneumonia-like": (12, True)}


@dataclass(frozen=True)
class ScanPrediction:
    predicted_class: str
    probabilities: dict[str, float]  # in the model's class order


@dataclass(frozen=True)
class ScanExplanation:
    predicted_class: str
    probabilities: dict[str, float]
    explained_class: str
    heat_map_png: bytes  # the scan at the model's input size in grey, the occlusion map over it (RGB PNG)
    method: str
    patch: int
    stride: int
    model_version: str


class XrayServer:
    def __init__(self, url: str, model_name: str = "xray", *, what: str = "xray model server",
                 timeout_s: float = 30.0, session: requests.Session | None = None):
        self.url, self.model_name, self.what, self.timeout_s = url, model_name, what, timeout_s
        self.session = session or requests.Session()

    def ready(self) -> bool:
        """True when the server answers and has its model loaded. Raises BackendUnavailable (with how to
        start it) when nothing answers at all, so a page can say so before anything is uploaded."""
        try:
            call(self.session, self.what, "GET", f"{self.url}/v2/models/{self.model_name}/ready",
                 timeout=min(self.timeout_s, 5), hint=XRAY_START_HINT)
        except BackendError:
            return False
        return True

    def predict(self, scan: bytes) -> ScanPrediction:
        (first,) = self._post("predict", scan)["predictions"]
        return ScanPrediction(str(first["class"]), _probabilities(first))

    def explain(self, scan: bytes) -> ScanExplanation:
        body = self._post("explain", scan)
        (first,) = body["explanations"]
        return ScanExplanation(
            predicted_class=str(first["class"]),
            probabilities=_probabilities(first),
            explained_class=str(first["explained_class"]),
            heat_map_png=base64.b64decode(first["heat_map_png"]),
            method=str(body.get("method") or "occlusion"),
            patch=int(body.get("patch") or 0),
            stride=int(body.get("stride") or 0),
            model_version=str(body.get("model_version") or "?"),
        )

    def _post(self, verb: str, scan: bytes) -> dict[str, Any]:
        url = f"{self.url}/v1/models/{self.model_name}:{verb}"
        body = {"instances": [{"b64": base64.b64encode(scan).decode("ascii")}]}
        return call(self.session, self.what, "POST", url, json=body, timeout=self.timeout_s,
                    hint=XRAY_START_HINT).json()


def sample_scan(seed: int, pneumonia: bool) -> bytes:
    """One generated scan as PNG bytes, the same for the same seed on every machine."""
    import numpy as np

    from models.xray.generate import draw_scan, encode_png

    return encode_png(draw_scan(np.random.default_rng(seed), pneumonia))


def _probabilities(answer: dict[str, Any]) -> dict[str, float]:
    return {str(name): float(p) for name, p in answer["probabilities"].items()}

