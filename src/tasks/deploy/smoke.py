"""The smoke test of a deployment: sample rows through its entry point (and the challenger), checked for sense."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from tasks.deploy.deployment import Deployment
from tasks.deploy.use_cases import SMOKE_REQUEST, use_case
from tasks.deploy.use_cases import tabular_smoke_body as smoke_body

__all__ = ["SMOKE_REQUEST", "infer_path", "smoke_body", "smoke_predict", "smoke_test"]


def infer_path(model_name: str) -> str:
    """Open Inference Protocol V2 path of a model."""
    return f"/v2/models/{model_name}/infer"


def smoke_test(deployment: Deployment, body: Mapping[str, Any] | None = None) -> dict[str, list[float]]:
    """Predict the use case's sample request through the entry point (and the challenger directly, if any)."""
    case = use_case(deployment.use_case)
    body = body or case.smoke_body()
    check = {"output": case.smoke_output, "values_per_row": case.smoke_values_per_row}
    urls, entry = deployment.urls, deployment.entry
    results = {entry: smoke_predict(urls[entry] + deployment.entry_path, body, **check)}
    if deployment.challenger:
        # A challenger that cannot predict would make the mirrored comparison meaningless,
        # and the mirror hides its failures from callers: check it directly.
        url = urls[deployment.challenger] + infer_path(deployment.model_name)
        results[deployment.challenger] = smoke_predict(url, body, **check)
    return results


def smoke_predict(
    url: str,
    body: Mapping[str, Any],
    *,
    output: str = "predictions",
    values_per_row: int = 1,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> list[float]:
    """POST a V2 infer request and check the answer has `values_per_row` finite numbers per input row
    (shape [n] or [n, 1] for one, [n, values_per_row] for more)."""
    rows = _row_count(body)
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own endpoint
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise RuntimeError(f"smoke test POST {url} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise RuntimeError(f"smoke test POST {url} failed: {getattr(exc, 'reason', exc)}") from exc

    outputs = payload.get("outputs") if isinstance(payload, dict) else None
    if not outputs:
        raise RuntimeError(f"smoke test {url}: no 'outputs' in the answer: {str(payload)[:300]}")
    chosen = next((o for o in outputs if o.get("name") == output), outputs[0] if len(outputs) == 1 else None)
    if chosen is None:
        raise RuntimeError(f"smoke test {url}: no output {output!r} among {[o.get('name') for o in outputs]}")
    shape, data = chosen.get("shape") or [], _flatten(chosen.get("data"))
    # [n] or [n, 1] are both one prediction per row.
    wanted = rows * values_per_row
    if not shape or shape[0] != rows or math.prod(shape) != wanted or len(data) != wanted:
        raise RuntimeError(
            f"smoke test {url}: expected {rows} predictions"
            + (f" of {values_per_row} values each" if values_per_row != 1 else "")
            + f", got shape {shape} with {len(data)} values"
        )
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in data):
        raise RuntimeError(f"smoke test {url}: non-numeric or non-finite predictions {data}")
    return [float(v) for v in data]


def _row_count(body: Mapping[str, Any]) -> int:
    inputs = body.get("inputs") or []
    if not inputs:
        raise ValueError("a V2 request body needs 'inputs'")
    counts = {int(i["shape"][0]) for i in inputs}
    if len(counts) != 1:
        raise ValueError(f"inputs disagree on the row count: {sorted(counts)}")
    return counts.pop()


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [] if data is None else [data]
