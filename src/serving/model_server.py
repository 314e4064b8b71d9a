"""KServe model server for the wachttijden MLflow model: V1/V2 REST, strict input checks, batching, prediction log."""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import copy
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput
from kserve.logging import KSERVE_LOG_CONFIG, configure_logging
from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME, get_labels
from kserve.model_server import app as kserve_app
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest.server import RESTServer
from kserve.utils.utils import is_structured_cloudevent

from models.wachttijden.schema import FEATURES, MODEL_NAME
from serving.batcher import AdaptiveBatcher
from serving.prediction_log import (
    REQUEST_ID_HEADER,
    ROLE_HEADER,
    JsonLinesWriter,
    prediction_record,
    role_from_header,
)
from serving.request_columns import (
    RequestError,
    Tensor,
    columns_from_v1,
    columns_from_v2,
    plain_v2_tensors,
    unknown_category_message,
)

logger = logging.getLogger("sluice.model_server")

OUTPUT_NAME = "predictions"
INFERENCE_HEADER = b"inference-header-content-length"

# Per-request facts shared between the ASGI middleware (which logs) and the model (which knows
# inputs and outputs). The middleware sets a fresh dict per request; gRPC calls have none.
_REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "sluice_request", default=None
)


class ClientError(InvalidInput):
    """InvalidInput (400) with a status of its own, so 413 travels the same path as other input errors."""

    def __init__(self, reason: str, status_code: int = 400):
        super().__init__(reason)
        self.status_code = status_code


@dataclass
class _Prepared:
    columns: dict[str, list[str]]
    v2: bool
    response_id: str
    predictions: np.ndarray | None = None


def resolve_model_version(model_uri: str, override: str | None = None) -> tuple[str, str]:
    """(URI to load, version label); aliases become a fixed version first, so an alias move cannot race the load."""
    if override:
        return model_uri, override
    if model_uri.startswith("models:/"):
        from mlflow import MlflowClient

        ref = model_uri.removeprefix("models:/").strip("/")
        client = MlflowClient()
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias).version
            return f"models:/{name}/{version}", str(version)
        name, _, version = ref.partition("/")
        if version.isdigit():
            return model_uri, version
        if version in ("", "latest"):
            versions = client.search_model_versions(f"name='{name}'")
            newest = max(int(v.version) for v in versions)
            return f"models:/{name}/{newest}", str(newest)
        return model_uri, version  # a stage name; MLflow resolves it at load time
    if model_uri.startswith("runs:/"):
        return model_uri, "run:" + model_uri.removeprefix("runs:/").split("/", 1)[0]
    # A folder (KServe mounts the model at /mnt/models): the deploy step may leave a VERSION file.
    version_file = Path(model_uri.removeprefix("file://")) / "VERSION"
    if version_file.is_file():
        return model_uri, version_file.read_text(encoding="utf-8").strip() or "local"
    return model_uri, "local"


def _tensor(infer_input: Any, from_grpc: bool) -> Tensor:
    if from_grpc:
        # gRPC binary contents are not in .data (as_dataframe() ignores them): decode per input.
        try:
            values = [
                v.decode("utf-8") if isinstance(v, bytes) else v for v in infer_input.as_numpy().reshape(-1)
            ]
        except (ValueError, InvalidInput) as exc:
            raise ClientError(f"input {infer_input.name!r}: cannot decode tensor data: {exc}") from None
        return Tensor(infer_input.name, infer_input.datatype, list(infer_input.shape), values)
    return Tensor(infer_input.name, infer_input.datatype, infer_input.shape, infer_input.data)


class WachttijdenServer(kserve.Model):
    """Serves `models.wachttijden.model.WachttijdenModel` through its traced fast path, batching concurrent requests."""

    def __init__(
        self,
        name: str,
        model_uri: str,
        *,
        model_version: str | None = None,
        max_rows: int = 10_000,
        max_batch_rows: int = 256,
        max_batch_wait_ms: float = 2.0,
        prediction_log: JsonLinesWriter | None = None,
    ):
        super().__init__(name)
        self.model_uri = model_uri
        self.model_version = model_version or ""
        self._version_override = model_version
        self.max_rows = max_rows
        self.max_batch_rows = max_batch_rows
        self.max_batch_wait_s = max_batch_wait_ms / 1000
        self.prediction_log = prediction_log or JsonLinesWriter(None)
        self.model = None
        self.known_values: dict[str, frozenset[str]] = {}
        self.batcher: AdaptiveBatcher | None = None

    def load(self) -> bool:
        from models.wachttijden.model import load_served_model

        uri, self.model_version = resolve_model_version(self.model_uri, self._version_override)
        self.model, _ = load_served_model(uri)
        # The first call traces the tf.function; do it now rather than on the first request.
        self.model.predict_columns({name: [values[0]] for name, values in self.model.vocabularies.items()})
        self.known_values = {name: frozenset(values) for name, values in self.model.vocabularies.items()}
        self.batcher = AdaptiveBatcher(
            self.model.predict_columns, max_batch_rows=self.max_batch_rows, max_wait_s=self.max_batch_wait_s
        )
        logger.info("Loaded %s version %s from %s", self.name, self.model_version, uri)
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [{"name": name, "datatype": "BYTES", "shape": [-1]} for name in FEATURES]

    def get_output_types(self) -> list[dict]:
        return [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1]}]

    def validate(self, payload: Any) -> Any:
        # preprocess() already checked everything; KServe's own check assumes a dict or InferRequest.
        return payload

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> _Prepared:
        headers = headers or {}
        request_id = headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        context = _REQUEST.get()
        try:
            if isinstance(payload, InferRequest):
                tensors = [_tensor(i, payload.from_grpc) for i in payload.inputs]
                columns = columns_from_v2(tensors, max_rows=self.max_rows)
                prepared = _Prepared(columns, True, payload.id or request_id)
            elif isinstance(payload, bytes | str):
                raise RequestError(
                    f"request body is not JSON (Content-Type: {headers.get('content-type')}); send application/json"
                )
            else:
                prepared = _Prepared(columns_from_v1(payload, max_rows=self.max_rows), False, request_id)
        except RequestError as exc:
            raise ClientError(str(exc), exc.status_code) from None
        if context is not None:
            context["inputs"] = prepared.columns
        unknown = self.model.unknown_categories(prepared.columns)
        if unknown:
            raise ClientError(unknown_category_message(unknown, self.model.vocabularies))
        return prepared

    async def predict(self, payload: _Prepared, headers: dict[str, str] | None = None) -> _Prepared:
        payload.predictions = await self.batcher.predict(payload.columns)
        return payload

    async def postprocess(
        self, result: _Prepared, headers: dict[str, str] | None = None, response_headers: dict | None = None
    ) -> dict | InferResponse:
        context = _REQUEST.get()
        if context is not None:
            context["outputs"] = result.predictions
        if not result.v2:
            return {"predictions": result.predictions.tolist()}
        output = InferOutput(name=OUTPUT_NAME, shape=[len(result.predictions)], datatype="FP32")
        output.set_data_from_numpy(result.predictions, binary_data=False)
        return InferResponse(
            response_id=result.response_id,
            model_name=self.name,
            model_version=self.model_version,
            infer_outputs=[output],
        )

    async def __call__(self, body: Any, headers: dict[str, str] | None = None, verb: Any = None) -> Any:
        if _REQUEST.get() is not None:
            return await super().__call__(body, headers=headers)
        # gRPC requests skip the HTTP middleware: log them here instead.
        context = {"start": time.perf_counter(), **_ids_from(headers or {})}
        token = _REQUEST.set(context)
        try:
            response = await super().__call__(body, headers=headers)
        except Exception as exc:
            self.write_log(context, error=str(exc))
            raise
        finally:
            _REQUEST.reset(token)
        self.write_log(context)
        return response

    def write_log(self, context: dict[str, Any], error: str | None = None) -> None:
        outputs = context.get("outputs")
        self.prediction_log.write(
            prediction_record(
                request_id=context["request_id"],
                role=context["role"],
                model_name=self.name,
                model_version=self.model_version,
                inputs=context.get("inputs"),
                outputs=None if error is not None or outputs is None else outputs.tolist(),
                latency_ms=(time.perf_counter() - context["start"]) * 1000,
                error=error,
            )
        )


def _ids_from(headers: dict[str, str]) -> dict[str, str]:
    return {
        "request_id": headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex,
        "role": role_from_header(headers.get(ROLE_HEADER)),
    }


def _is_inference_path(path: str) -> bool:
    return path.startswith(("/v1/models/", "/v2/models/")) and (
        path.endswith(":predict") or path.endswith("/infer")
    )


_UNPARSED = object()


def _no_special_headers(headers: dict[bytes, bytes]) -> bool:
    """No binary-tensor or CloudEvent headers: those requests take KServe's path."""
    return INFERENCE_HEADER not in headers and not any(name.startswith(b"ce-") for name in headers)


def _set_cork(sock: Any, on: bool) -> bool:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))
    except (OSError, AttributeError):
        return False
    return True


def _corked_socket(send: Any) -> Any:
    """The connection's TCP socket with TCP_CORK set, or None where that is not possible.

    uvicorn writes the status line and headers, then the body, as two socket writes: two TCP
    segments on loopback, each waking the client. Corking while both are written and uncorking
    after sends them as one segment (measured: ~0.1-0.2 ms less per request at concurrency 1 on
    this 2-core VM). uvicorn's `send` is a bound method of its request cycle, which holds the
    transport; anything else (another server, a Unix socket, no TCP_CORK) just skips this.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or not _set_cork(sock, True):
        return None
    return sock


class RequestGuard:
    """ASGI app in front of KServe's FastAPI app: request ids, body limits, Content-Type default, prediction log,
    and a fast path for plain inference requests to our model.

    It reads inference bodies in full (they are capped) so that an empty or oversized body is
    answered before any parsing, and so that a JSON body without Content-Type (tritonclient sends
    none; FastAPI then leaves it unparsed and KServe answers 400) is given `application/json`.

    Why the fast path: through KServe's stack (uvicorn -> Starlette middleware incl. KServe's
    TimingMiddleware, whose metric namer matches the routes again -> FastAPI routing and body
    parsing -> pydantic InferenceRequest -> dataplane decode/encode -> Model.__call__ -> ORJSONResponse)
    a 32-row V1 request at concurrency 1 took 6.2 ms p50 (151 req/s, 4,835 rows/s) around a model
    call of ~2.2 ms: 0.33x the in-process rows/s (bench/serving.py, 2 cores) against a goal of 0.5x.
    py-spy showed the event-loop thread busy in that routing, middleware and JSON handling, plus an
    uvicorn access line per request (see LoopbackRESTServer) and the model's array-building
    unknown-category check. So `POST /v2/models/<name>/infer` and `POST /v1/models/<name>:predict`
    for our model with a plain JSON body are answered here: orjson parse, the same `request_columns`
    checks, the same model instance's batcher, orjson response (one TCP segment, see
    `_corked_socket`), the same prediction-log line, headers and KServe latency histograms.
    Side by side on the same machine (both without the access line): 32 rows c1 9,467 vs 6,651
    rows/s (p50 3.33 vs 4.70 ms), 1 row c1 298 vs 241 req/s, 1 row c16 1,889 vs 790 req/s.
    Whatever the fast path does not handle exactly like KServe (other paths, versioned paths,
    Content-Types other than application/json, binary-tensor or CloudEvent headers, V2
    parameters/outputs or values pydantic would coerce, any client error, a model failure) goes to
    KServe's app unchanged with the body already read, so every status and message stays as it was;
    `--no-fast-path` sends everything that way, and the tests compare the two answer for answer.
    """

    def __init__(self, app: Any, model: WachttijdenServer, max_body_bytes: int, fast_path: bool = True):
        self.app = app
        self.model = model
        self.max_body_bytes = max_body_bytes
        # path -> is V2; only exact paths for our model (versioned V2 paths, other models: KServe).
        self._fast_paths: dict[str, bool] = (
            {f"/v2/models/{model.name}/infer": True, f"/v1/models/{model.name}:predict": False} if fast_path else {}
        )
        labels = get_labels(model.name)
        self._pre_hist = PRE_HIST_TIME.labels(**labels)
        self._predict_hist = PREDICT_HIST_TIME.labels(**labels)
        self._post_hist = POST_HIST_TIME.labels(**labels)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        request_id = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1") or uuid.uuid4().hex
        extra_headers: list[tuple[bytes, bytes]] = []
        if REQUEST_ID_HEADER.encode() not in headers:
            extra_headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
        context = None
        path = scope["path"]
        if scope["method"] == "POST" and _is_inference_path(path):
            context = {
                "start": time.perf_counter(),
                "request_id": request_id,
                "role": role_from_header(headers.get(ROLE_HEADER.encode(), b"").decode("latin-1")),
            }
            body, problem = await self._read_body(receive, headers)
            if problem is not None:
                status, message = problem
                await _send_json(send, status, {"error": message}, request_id)
                self.model.write_log(context, error=message)
                return
            content_type = headers.get(b"content-type")
            if content_type is None and INFERENCE_HEADER not in headers:
                extra_headers.append((b"content-type", b"application/json"))
            parsed: Any = _UNPARSED
            if path.endswith(":predict") and (content_type or b"application/json").startswith(b"application/json"):
                # KServe's V1 parser reports bad JSON as "Unrecognized request format"; say what it is.
                try:
                    parsed = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    message = f"malformed JSON: {exc}"
                    await _send_json(send, 400, {"error": message}, request_id)
                    self.model.write_log(context, error=message)
                    return
            v2 = self._fast_paths.get(path)
            if (
                v2 is not None
                and content_type in (None, b"application/json")
                and _no_special_headers(headers)
                and await self._answer_fast(v2, body, parsed, context, send)
            ):
                return
            receive = _replay(body, receive)
        if extra_headers:
            scope = {**scope, "headers": [*scope["headers"], *extra_headers]}
        captured: dict[str, Any] = {"status": 0, "body": b""}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                }
            elif (
                message["type"] == "http.response.body"
                and captured["status"] >= 400
                and len(captured["body"]) < 4096
            ):
                captured["body"] += message.get("body", b"")
            await send(message)

        token = _REQUEST.set(context)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _REQUEST.reset(token)
            if context is not None:
                error = (
                    None if captured["status"] < 400 else _error_text(captured["status"], captured["body"])
                )
                self.model.write_log(context, error=error)

    async def _answer_fast(self, v2: bool, body: bytes, parsed: Any, context: dict, send: Any) -> bool:
        """Answer a plain inference request without KServe's app; False (nothing sent yet) hands it to KServe."""
        model = self.model
        if not model.ready or model.batcher is None:
            return False
        start = time.perf_counter()
        try:
            if parsed is _UNPARSED:
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
        # Checked columns hold only str, so a subset test against the vocabularies says "no unknown
        # category" exactly when the model's own (array-building) check would; if not, KServe's path words it.
        known = model.known_values
        if not all(known[name].issuperset(values) for name, values in columns.items()):
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
        context["inputs"] = columns
        context["outputs"] = predictions
        # Python floats, as KServe's path sends them (orjson then writes float64 digits for both protocols).
        data = predictions.tolist()
        if v2:
            content = {
                "model_name": model.name,
                "model_version": model.model_version,
                "id": parsed.get("id") or context["request_id"],
                "parameters": None,
                "outputs": [
                    {
                        "name": OUTPUT_NAME,
                        "shape": [len(predictions)],
                        "datatype": "FP32",
                        "parameters": None,
                        "data": data,
                    }
                ],
            }
        else:
            content = {"predictions": data}
        payload = orjson.dumps(content)
        self._post_hist.observe(time.perf_counter() - done)
        sock = _corked_socket(send)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-length", str(len(payload)).encode()),
                        (b"content-type", b"application/json"),
                        (b"x-request-id", context["request_id"].encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
        finally:
            if sock is not None:
                _set_cork(sock, False)
        model.write_log(context)
        return True

    async def _read_body(
        self, receive: Any, headers: dict[bytes, bytes]
    ) -> tuple[bytes, tuple[int, str] | None]:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return b"", (
                413,
                f"request body is {int(declared)} bytes; this server accepts at most {self.max_body_bytes}",
            )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", (
                    413,
                    f"request body exceeds {self.max_body_bytes} bytes, the most this server accepts",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not body.strip():
            return body, (400, "request body is empty; send a V1 or V2 JSON inference request")
        return body, None


def _replay(body: bytes, original: Any) -> Any:
    """A receive() that hands the already-read body to the app, then passes through (disconnect notices)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


async def _send_json(send: Any, status: int, content: dict, request_id: str) -> None:
    body = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error_text(status: int, body: bytes) -> str:
    try:
        content = orjson.loads(body)
        if isinstance(content, dict):
            return str(content.get("error") or content.get("detail") or content)
    except orjson.JSONDecodeError:
        pass
    return body.decode("utf-8", errors="replace") or f"HTTP {status}"


def _describe_validation_errors(exc: RequestValidationError) -> str:
    """FastAPI's 422 details as one sentence naming the field and the problem."""
    errors = exc.errors()
    # The route accepts InferenceRequest | bytes; the bytes alternative's complaint is noise.
    errors = [e for e in errors if tuple(e.get("loc", ()))[:2] != ("body", "bytes")] or errors
    parts = []
    for error in errors:
        location = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "InferenceRequest"))
        kind = error.get("type", "")
        if kind == "json_invalid":
            parts.append(f"malformed JSON: {error.get('ctx', {}).get('error', error.get('msg'))}")
        elif kind == "missing" and not location:
            parts.append("request body is empty")
        elif kind == "missing":
            parts.append(f"'{location}' is required")
        else:
            parts.append(f"'{location or 'body'}': {error.get('msg')}")
    return "invalid V2 inference request: " + "; ".join(parts)


async def _client_error_handler(_: Request, exc: ClientError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"error": str(exc)})


async def _validation_error_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    # KServe leaves these as FastAPI's 422 with a nested detail list; answer 400 like every other input error.
    return JSONResponse(status_code=400, content={"error": _describe_validation_errors(exc)})


def install_guards(app: FastAPI, model: WachttijdenServer, max_body_bytes: int, fast_path: bool = True) -> RequestGuard:
    """Our error handlers on KServe's app, and the RequestGuard app that wraps it (serve that one).

    The guard wraps the whole FastAPI app rather than being added as Starlette middleware, so the
    fast path skips Starlette's middleware stack (KServe's TimingMiddleware included) as well.
    """
    app.add_exception_handler(ClientError, _client_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    return RequestGuard(app, model=model, max_body_bytes=max_body_bytes, fast_path=fast_path)


class LoopbackRESTServer(RESTServer):
    """KServe's REST server bound to a chosen host.

    KServe 0.21's RESTServer hard-codes host 0.0.0.0 in its uvicorn.Config and has no option
    for it. Changing that one Config field after construction (uvicorn reads it when serving
    starts) keeps every KServe route, handler and middleware and binds a local server to
    loopback only; in the cluster we pass --host 0.0.0.0.
    """

    def __init__(self, *args: Any, host: str, access_log: bool, asgi_app: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.config.host = host
        if asgi_app is not None:
            # Serve this app (which wraps KServe's) instead of the import string; KServe still
            # registers its routes, handlers and middleware on its own app object in start().
            self.config.app = asgi_app
        # Every inference request is already one prediction-log line; an access line per request
        # as well costs ~10% of single-row throughput. uvicorn.Config applies access_log=False only
        # in its __init__ (it empties the uvicorn.access logger there) and each connection logs
        # whenever that logger has handlers, so setting the field now is not enough: do what
        # Config does. (Before this, every request was logged despite access_log=False.)
        self.config.access_log = access_log
        if not access_log:
            access_logger = logging.getLogger("uvicorn.access")
            access_logger.handlers = []
            access_logger.propagate = False


class SluiceModelServer(kserve.ModelServer):
    """kserve.ModelServer whose REST server binds `host` (start() mirrors KServe's single-process path)."""

    def __init__(self, *, host: str, access_log: bool = False, asgi_app: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.host = host
        self.access_log = access_log
        self.asgi_app = asgi_app

    def start(self, models: list[kserve.Model]) -> None:
        from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
        from kserve.model_server import args as kserve_args
        from kserve.protocol.grpc.server import GRPCServer

        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = LoopbackRESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            host=self.host,
            access_log=self.access_log,
            asgi_app=self.asgi_app,
            access_log_format=self.access_log_format,
            workers=1,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = GRPCServer(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(kserve_args),
                grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def _configure_logging(prediction_log_to_stdout: bool) -> None:
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    if prediction_log_to_stdout:
        # stdout then carries only prediction JSON lines for the log shipper; access lines go to stderr.
        config["handlers"]["uvicorn_access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["sluice"] = {"handlers": ["kserve"], "level": "INFO", "propagate": False}
    # One trace line per request duplicates the prediction log's latency and costs throughput.
    config["loggers"]["kserve.trace"]["level"] = "WARNING"
    configure_logging(config)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    # Underscore spellings are accepted too: KServe ServingRuntimes conventionally pass --model_name etc.
    parser.add_argument(
        "--model-uri",
        "--model_dir",
        dest="model_uri",
        default=os.environ.get("MODEL_URI"),
        help="models:/name@alias, models:/name/3, runs:/id/path or a folder (/mnt/models)",
    )
    parser.add_argument("--model-name", "--model_name", dest="model_name", default=MODEL_NAME)
    parser.add_argument(
        "--model-version", default=None, help="version label to record instead of resolving it"
    )
    parser.add_argument("--http-port", "--http_port", dest="http_port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1", help="REST bind address (0.0.0.0 in a container)")
    parser.add_argument("--grpc-port", type=int, default=0, help="enable gRPC on this port (0 = off)")
    parser.add_argument(
        "--prediction-log", default=None, help="JSON-lines file to append to, or - for stdout"
    )
    parser.add_argument("--max-batch-size", type=int, default=256, help="rows per coalesced model call")
    parser.add_argument("--max-batch-wait-ms", type=float, default=2.0, help="longest wait to fill a batch")
    parser.add_argument("--access-log", action="store_true", help="also log every HTTP request (uvicorn)")
    parser.add_argument(
        "--no-fast-path",
        dest="fast_path",
        action="store_false",
        help="send every request through KServe's FastAPI app (for comparison and debugging)",
    )
    parser.add_argument("--max-rows", type=int, default=10_000, help="rows per request (more: 413)")
    parser.add_argument(
        "--max-body-bytes", type=int, default=8 * 1024 * 1024, help="request body size (more: 413)"
    )
    args, _ = parser.parse_known_args(argv)
    if not args.model_uri:
        parser.error("--model-uri (or MODEL_URI) is required")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _configure_logging(args.prediction_log == "-")
    model = WachttijdenServer(
        args.model_name,
        args.model_uri,
        model_version=args.model_version,
        max_rows=args.max_rows,
        max_batch_rows=args.max_batch_size,
        max_batch_wait_ms=args.max_batch_wait_ms,
        prediction_log=JsonLinesWriter(args.prediction_log),
    )
    model.load()
    guarded_app = install_guards(kserve_app, model, args.max_body_bytes, fast_path=args.fast_path)
    SluiceModelServer(
        host=args.host,
        access_log=args.access_log,
        asgi_app=guarded_app,
        http_port=args.http_port,
        grpc_port=args.grpc_port or 8081,
        enable_grpc=args.grpc_port > 0,
        enable_latency_logging=False,
    ).start([model])


if __name__ == "__main__":
    main()
