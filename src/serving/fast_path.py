"""The fast path: plain JSON `/infer` and `:predict` requests answered without KServe's app, with identical answers."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import orjson

from serving.guard import UNPARSED, ClientError, RequestContext
from serving.kserve_compat import is_structured_cloudevent, latency_histograms
from serving.model import OUTPUT_NAME, WachttijdenServer
from serving.request_columns import RequestError, columns_from_v1, columns_from_v2, plain_v2_tensors

logger = logging.getLogger("sluice.model_server")


def set_cork(sock: socket.socket, on: bool) -> bool:
    """Set or clear TCP_CORK; False where the socket or platform has none."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))
    except (OSError, AttributeError):
        return False
    return True


def corked_socket(send: Any) -> socket.socket | None:
    """The connection's TCP socket with TCP_CORK set, or None where that is not possible.

    uvicorn writes the status line and headers, then the body, as two socket writes: two TCP
    segments on loopback, each waking the client. Corking while both are written and uncorking
    after sends them as one segment (measured: ~0.1-0.2 ms less per request at concurrency 1 on
    this 2-core VM). uvicorn's `send` is a bound method of its request cycle, which holds the
    transport; anything else (another server, a Unix socket, no TCP_CORK) just skips this.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or not set_cork(sock, True):
        return None
    return sock


class FastPath:
    """Answers plain inference requests for `model`: same checks, batcher, metrics and log line as KServe's path.

    Why: through KServe's stack (uvicorn -> Starlette middleware incl. KServe's TimingMiddleware,
    whose metric namer matches the routes again -> FastAPI routing and body parsing -> pydantic
    InferenceRequest -> dataplane decode/encode -> Model.__call__ -> ORJSONResponse) a 32-row V1
    request at concurrency 1 took 6.2 ms p50 (151 req/s, 4,835 rows/s) around a model call of
    ~2.2 ms: 0.33x the in-process rows/s (bench/serving.py, 2 cores) against a goal of 0.5x.
    py-spy showed the event-loop thread busy in that routing, middleware and JSON handling, plus an
    uvicorn access line per request and the model's array-building unknown-category check. So
    `POST /v2/models/<name>/infer` and `POST /v1/models/<name>:predict` for our model with a plain
    JSON body are answered here: orjson parse, the same `request_columns` checks, the same model
    instance's batcher, orjson response (one TCP segment, see `corked_socket`), the same
    prediction-log line, headers and KServe latency histograms. Side by side on the same machine
    (both without the access line): 32 rows c1 9,467 vs 6,651 rows/s (p50 3.33 vs 4.70 ms), 1 row
    c1 298 vs 241 req/s, 1 row c16 1,889 vs 790 req/s. Whatever it does not handle exactly like
    KServe (other paths, versioned paths, Content-Types other than application/json, binary-tensor
    or CloudEvent headers, V2 parameters/outputs or values pydantic would coerce, any client
    error, a model failure) goes to KServe's app unchanged with the body already read, so every
    status and message stays as it was; `--no-fast-path` sends everything that way, and the
    tests compare the two answer for answer.
    """

    def __init__(self, model: WachttijdenServer):
        self.model = model
        # path -> is V2; only exact paths for our model (versioned V2 paths, other models: KServe).
        self._paths = {f"/v2/models/{model.name}/infer": True, f"/v1/models/{model.name}:predict": False}
        self._pre_hist, self._predict_hist, self._post_hist = latency_histograms(model.name)

    def version_of(self, path: str) -> bool | None:
        """True for our V2 infer path, False for our V1 predict path, None for anything else."""
        return self._paths.get(path)

    async def answer(self, v2: bool, body: bytes, parsed: Any, context: RequestContext, send: Any) -> bool:
        """Answer the request; False (nothing sent yet) hands it to KServe's app."""
        model = self.model
        if not model.ready or model.batcher is None:
            return False
        start = time.perf_counter()
        try:
            if parsed is UNPARSED:
                parsed = orjson.loads(body)
            if v2:
                tensors = plain_v2_tensors(parsed)
                if tensors is None:
                    return False
                columns = columns_from_v2(tensors, max_rows=model.max_rows)
            else:
                if type(parsed) is not dict or is_structured_cloudevent(parsed):
                    return False
                columns = columns_from_v1(parsed, max_rows=model.max_rows)
        except (orjson.JSONDecodeError, RequestError):
            # KServe's path answers (and logs) client errors with the messages it always gave.
            return False
        # The model server's one category check: unseen values of open features are answered (and
        # flagged); an unknown value of a closed feature goes to KServe's path, which words the error.
        try:
            unseen = model.unseen_categories(columns)
        except ClientError:
            return False
        predicted = time.perf_counter()
        self._pre_hist.observe(predicted - start)
        try:
            predictions = await model.batcher.predict(columns)
        except Exception:  # noqa: BLE001 - KServe's path retries once and answers with its usual 500
            logger.exception("fast path prediction failed; handing the request to KServe")
            return False
        done = time.perf_counter()
        self._predict_hist.observe(done - predicted)
        context.inputs = columns
        context.outputs = predictions
        context.unseen = unseen
        payload = orjson.dumps(self._content(v2, parsed, predictions.tolist(), context.request_id))
        self._post_hist.observe(time.perf_counter() - done)
        sock = corked_socket(send)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-length", str(len(payload)).encode()),
                        (b"content-type", b"application/json"),
                        (b"x-request-id", context.request_id.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
        finally:
            if sock is not None:
                set_cork(sock, False)
        model.prediction_log.write(model, context)
        return True

    def _content(self, v2: bool, parsed: Any, data: list[float], request_id: str) -> dict:
        # Python floats, as KServe's path sends them (orjson then writes float64 digits for both protocols).
        if not v2:
            return {"predictions": data}
        model = self.model
        return {
            "model_name": model.name,
            "model_version": model.model_version,
            "id": parsed.get("id") or request_id,
            "parameters": None,
            "outputs": [
                {"name": OUTPUT_NAME, "shape": [len(data)], "datatype": "FP32", "parameters": None, "data": data}
            ],
        }
