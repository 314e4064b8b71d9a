"""The ASGI guard in front of KServe's app: request ids, body limits, JSON default, error answers, prediction log."""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput

from serving.deadlines import ReadDeadlines
from serving.log_metrics import count_unseen_rows
from serving.log_writer import LineWriter
from serving.prediction_log import REQUEST_ID_HEADER, ROLE_HEADER, prediction_record, role_from_header


class LoggedModel(Protocol):
    """What the guard needs of the served model (serving.model.LoggedModel; named by shape so
    the model, which imports the guard's logging, is not imported back)."""

    name: str
    model_version: str
    prediction_log: PredictionLogger

INFERENCE_HEADER = b"inference-header-content-length"
DEGRADED_HEADER = b"x-sluice-degraded"
_REQUEST_ID = REQUEST_ID_HEADER.encode()
_ROLE = ROLE_HEADER.encode()
# Methods whose body the guard reads (bounded in size and time) before any app sees the request.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
UNPARSED = object()  # the body has not been parsed as JSON yet
# KServe 0.21's V1 :explain handler answers with the request's own headers (Host, User-Agent,
# Transfer-Encoding, ...) as response headers; of what it sends only these belong to the answer.
_EXPLAIN_RESPONSE_HEADERS = frozenset({b"content-type", b"content-length"})


class RequestContext:
    """What one request's prediction-log line needs, filled in as the request is served."""

    __slots__ = ("request_id", "role", "start", "inputs", "outputs", "unseen")

    def __init__(self, request_id: str, role: str):
        self.request_id = request_id
        self.role = role
        self.start = time.perf_counter()
        self.inputs: Mapping[str, Sequence[str]] | None = None
        self.outputs: np.ndarray | None = None
        # Values of open features the model never saw, answered through its out-of-vocabulary bucket.
        self.unseen: Mapping[str, Sequence[str]] | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RequestContext:
        return cls(headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex, role_from_header(headers.get(ROLE_HEADER)))


# Shared between the guard (which logs) and the model (which knows inputs and outputs): the guard
# sets a fresh context per inference request; gRPC calls have none and log in the model instead.
CURRENT_REQUEST: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "sluice_request", default=None
)


class ClientError(InvalidInput):
    """InvalidInput (400) with a status of its own, so 413 travels the same path as other input errors."""

    def __init__(self, reason: str, status_code: int = 400):
        super().__init__(reason)
        self.status_code = status_code


class Unsupported(NotImplementedError):
    """What was asked is beyond the served model (:explain without a background sample): answered 501,
    the status KServe gives a model without an explainer, with the reason and without a traceback."""


class PredictionLogger:
    """Writes one prediction-log line per request, inputs bounded by `max_input_rows`; never raises."""

    def __init__(self, writer: LineWriter | None = None, *, max_input_rows: int | None = 100):
        self.writer = writer or LineWriter(None)
        self.max_input_rows = max_input_rows

    def write(self, model: LoggedModel, context: RequestContext, error: str | None = None) -> None:
        outputs, unseen = context.outputs, context.unseen
        if unseen and error is None and context.inputs is not None:
            count_unseen_rows(model.name, context.inputs, unseen)
        self.writer.write(
            prediction_record(
                request_id=context.request_id,
                role=context.role,
                model_name=model.name,
                model_version=model.model_version,
                inputs=context.inputs,
                outputs=None if error is not None or outputs is None else outputs.tolist(),
                latency_ms=(time.perf_counter() - context.start) * 1000,
                error=error,
                max_input_rows=self.max_input_rows,
                unseen_categories=unseen,
            )
        )


@dataclass(frozen=True)
class Limits:
    """Per-request bounds the guard enforces before any parsing."""

    max_body_bytes: int = 8 * 1024 * 1024
    # From the first body byte awaited to the last: 8 MiB in 10 s needs a client at ~0.8 MB/s.
    body_read_timeout_s: float = 10.0


class FastAnswer(Protocol):
    """The fast path as the guard uses it (serving.fast_path.FastPath)."""

    def version_of(self, path: str) -> bool | None: ...

    async def answer(self, v2: bool, body: bytes, parsed: Any, context: RequestContext, send: Any) -> bool: ...


def is_inference_path(path: str) -> bool:
    return path.startswith(("/v1/models/", "/v2/models/")) and (path.endswith(":predict") or path.endswith("/infer"))


def is_explain_path(path: str) -> bool:
    return path.startswith("/v1/models/") and path.endswith(":explain")


def no_special_headers(headers: Mapping[bytes, bytes]) -> bool:
    """No binary-tensor or CloudEvent headers: those requests take KServe's path."""
    return INFERENCE_HEADER not in headers and not any(name.startswith(b"ce-") for name in headers)


class RequestGuard:
    """ASGI app in front of KServe's FastAPI app: request ids, body limits, Content-Type default, prediction log.

    It reads request bodies in full (they are capped in size and time) so that an empty, oversized
    or trickling body is answered before any parsing, and so that a JSON body without Content-Type
    (tritonclient sends none; FastAPI then leaves it unparsed and KServe answers 400) is given
    `application/json`. Plain inference requests to our model may then be answered by the fast
    path (serving.fast_path); everything else, and every error, goes to KServe's app with the body
    already read.
    """

    def __init__(self, app: Any, model: LoggedModel, limits: Limits, fast_path: FastAnswer | None = None):
        self.app = app
        self.model = model
        self.limits = limits
        self.fast_path = fast_path
        self.log = model.prediction_log
        self.deadlines = ReadDeadlines(limits.body_read_timeout_s)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        request_id = headers.get(_REQUEST_ID, b"").decode("latin-1") or uuid.uuid4().hex
        extra_headers: list[tuple[bytes, bytes]] = []
        if _REQUEST_ID not in headers:
            extra_headers.append((_REQUEST_ID, request_id.encode()))
        context = None
        path = scope["path"]
        explain = scope["method"] == "POST" and is_explain_path(path)
        if scope["method"] == "POST" and (explain or is_inference_path(path)):
            # :explain gets :predict's checks and answers; it is no prediction, so it writes no log line.
            if not explain:
                context = RequestContext(request_id, role_from_header(headers.get(_ROLE, b"").decode("latin-1")))
            body, problem = await self._read_body(receive, headers, inference=True)
            if problem is not None:
                status, message = problem
                await send_json(send, status, {"error": message}, request_id, close=status == 408)
                self._log_refusal(context, message)
                return
            content_type = headers.get(b"content-type")
            if content_type is None and INFERENCE_HEADER not in headers:
                extra_headers.append((b"content-type", b"application/json"))
            parsed: Any = UNPARSED
            if path.endswith((":predict", ":explain")) and (content_type or b"application/json").startswith(
                b"application/json"
            ):
                # KServe's V1 parser reports bad JSON as "Unrecognized request format"; say what it is.
                try:
                    parsed = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    message = f"malformed JSON: {exc}"
                    await send_json(send, 400, {"error": message}, request_id)
                    self._log_refusal(context, message)
                    return
            v2 = self.fast_path.version_of(path) if self.fast_path is not None else None
            if (
                v2 is not None
                and content_type in (None, b"application/json")
                and no_special_headers(headers)
                and await self.fast_path.answer(v2, body, parsed, context, send)
            ):
                return
            receive = replay(body, receive)
        elif scope["method"] in _BODY_METHODS:
            body, problem = await self._read_body(receive, headers, inference=False)
            if problem is not None:
                await send_json(send, problem[0], {"error": problem[1]}, request_id, close=problem[0] == 408)
                return
            receive = replay(body, receive)
        if extra_headers:
            scope = {**scope, "headers": [*scope["headers"], *extra_headers]}
        await self._call_app(scope, receive, send, request_id, context, explain=explain)

    def _log_refusal(self, context: RequestContext | None, message: str) -> None:
        if context is not None:
            self.log.write(self.model, context, error=message)

    async def _call_app(
        self, scope: dict, receive: Any, send: Any, request_id: str, context: RequestContext | None,
        *, explain: bool = False,
    ) -> None:
        captured: dict[str, Any] = {"status": 0, "body": b""}
        # Readiness stays 200 while the prediction log is failing (the answers are still right);
        # the header says what is degraded (see serving.log_writer.DEGRADED_AFTER).
        flag_degraded = scope["path"].endswith("/ready") and self.log.writer.degraded

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                added = [(b"x-request-id", request_id.encode())]
                if flag_degraded:
                    added.append((DEGRADED_HEADER, b"prediction-log"))
                sent = message.get("headers", [])
                if explain:
                    sent = [(name, value) for name, value in sent if name.lower() in _EXPLAIN_RESPONSE_HEADERS]
                message = {**message, "headers": [*sent, *added]}
            elif message["type"] == "http.response.body" and captured["status"] >= 400:
                if len(captured["body"]) < 4096:
                    captured["body"] += message.get("body", b"")
            await send(message)

        token = CURRENT_REQUEST.set(context)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            CURRENT_REQUEST.reset(token)
            if context is not None:
                status = captured["status"]
                error = None if status < 400 else error_text(status, captured["body"])
                self.log.write(self.model, context, error=error)

    async def _read_body(
        self, receive: Any, headers: Mapping[bytes, bytes], *, inference: bool
    ) -> tuple[bytes, tuple[int, str] | None]:
        limit = self.limits.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return b"", (413, f"request body is {int(declared)} bytes; this server accepts at most {limit}")
        chunks, size = [], 0
        # A client trickling its body would otherwise hold the connection (and its memory) as long as it likes.
        task = asyncio.current_task()
        self.deadlines.start(task)
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return b"", (413, f"request body exceeds {limit} bytes, the most this server accepts")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not self.deadlines.expired(task):
                raise
            timeout = self.limits.body_read_timeout_s
            return b"", (408, f"request body not received within {timeout:g} s; send the whole body at once")
        finally:
            self.deadlines.finish(task)
        body = b"".join(chunks)
        if inference and not body.strip():
            return body, (400, "request body is empty; send a V1 or V2 JSON inference request")
        return body, None


def replay(body: bytes, original: Any) -> Any:
    """A receive() that hands the already-read body to the app, then passes through (disconnect notices)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


async def send_json(send: Any, status: int, content: dict, request_id: str, *, close: bool = False) -> None:
    """A complete JSON response; `close` ends the connection after it (a client we gave up on)."""
    body = orjson.dumps(content)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_text(status: int, body: bytes) -> str:
    """The message of an error answer, for the prediction log."""
    try:
        content = orjson.loads(body)
        if isinstance(content, dict):
            return str(content.get("error") or content.get("detail") or content)
    except orjson.JSONDecodeError:
        pass
    return body.decode("utf-8", errors="replace") or f"HTTP {status}"


def describe_validation_errors(exc: RequestValidationError) -> str:
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


async def _unsupported_handler(_: Request, exc: Unsupported) -> JSONResponse:
    return JSONResponse(status_code=501, content={"error": str(exc)})


async def _validation_error_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    # KServe leaves these as FastAPI's 422 with a nested detail list; answer 400 like every other input error.
    return JSONResponse(status_code=400, content={"error": describe_validation_errors(exc)})


def install_guards(
    app: FastAPI, model: LoggedModel, limits: Limits, fast_path: FastAnswer | None = None
) -> RequestGuard:
    """Our error handlers on KServe's app, and the RequestGuard app that wraps it (serve that one).

    The guard wraps the whole FastAPI app rather than being added as Starlette middleware, so the
    fast path skips Starlette's middleware stack (KServe's TimingMiddleware included) as well.
    """
    app.add_exception_handler(ClientError, _client_error_handler)
    app.add_exception_handler(Unsupported, _unsupported_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    return RequestGuard(app, model, limits, fast_path)
