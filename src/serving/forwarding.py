"""One forwarded HTTP call to a model server and its router log line, and where each service name points locally."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from serving.graph_spec import service_key
from serving.log_writer import LineWriter
from serving.prediction_log import REQUEST_ID_HEADER, ROLE_HEADER, forward_record

# Headers a step or mirror target receives from the client's request (KServe propagates a
# configurable set; these are the ones our model servers and tracing use).
_FORWARDED_HEADERS = ("content-type", "inference-header-content-length", "traceparent", "x-b3-traceid")


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    error: str | None = None
    after: Callable[[], Awaitable[None]] | None = None  # run after the response is sent
    # False when the target gave no HTTP answer at all (refused, reset, timeout): KServe's graph
    # router fails the whole request then, whatever the step's dependency.
    reached: bool = True

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def error_answer(status: int, message: str) -> Answer:
    return Answer(status, json.dumps({"error": message}).encode(), error=message)


@dataclass
class CallContext:
    request_id: str
    client_role: str | None
    path: str
    headers: dict[str, str]

    @property
    def v1(self) -> bool:
        return self.path.endswith(":predict")


class Forwarder:
    """Makes one HTTP call to a model server and writes one router log line about it."""

    def __init__(self, client: httpx.AsyncClient, log: LineWriter, default_timeout_s: float):
        self.client = client
        self.log = log
        self.default_timeout_s = default_timeout_s

    async def post(
        self,
        target: str,
        url: str,
        body: bytes,
        ctx: CallContext,
        role: str | None,
        timeout_s: float | None = None,
    ) -> Answer:
        headers = {REQUEST_ID_HEADER: ctx.request_id, "content-type": "application/json"}
        headers.update({k: v for k, v in ctx.headers.items() if k in _FORWARDED_HEADERS})
        if role:
            headers[ROLE_HEADER] = role
        start = time.perf_counter()
        status_code: int | None = None
        try:
            response = await self.client.post(
                url, content=body, headers=headers, timeout=timeout_s or self.default_timeout_s
            )
            status_code = response.status_code
            answer = Answer(status_code, response.content, response.headers.get("content-type", "application/json"))
            if not answer.ok:
                answer.error = error_message(answer.body) or f"HTTP {answer.status}"
        except httpx.HTTPError as exc:
            # No HTTP answer at all (refused, reset, timeout): a mirror destination answers 502 Bad
            # Gateway; a graph step turns it into KServe's 500 (graph_runner).
            who = url if target == url else f"{target} at {url}"
            answer = error_answer(502, f"{who} did not answer: {type(exc).__name__} {exc}".strip())
            answer.reached = False
        self.log.write(
            forward_record(
                request_id=ctx.request_id,
                role=role or ctx.client_role or "primary",
                target=target,
                url=url,
                status_code=status_code,
                latency_ms=(time.perf_counter() - start) * 1000,
                error=answer.error,
            )
        )
        return answer


def error_message(body: bytes) -> str | None:
    try:
        content = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body[:200].decode("utf-8", errors="replace") or None
    return str(content.get("error", content)) if isinstance(content, dict) else str(content)


class Targets:
    """Where a service name or URL points locally, and which path it is called on.

    Rule for serviceName steps (KServe calls the InferenceService's predictor URL, whose path
    is the runtime's protocol path for the model): a bare --resolve base URL gets the protocol
    path of the client's request with the local model name, `/v1/models/<model>:predict` when
    the client called a V1 `:predict` path, otherwise `/v2/models/<model>/infer`; a --resolve
    URL that has a path is used as it is (like serviceUrl). VirtualService destinations keep
    the client's path unchanged, as Istio does.
    """

    def __init__(self, resolve: Mapping[str, str], model_name: str):
        self.resolve = dict(resolve)
        self.model_name = model_name

    def for_step(self, service: str, ctx: CallContext) -> str:
        base = self.resolve[service]
        if urlsplit(base).path not in ("", "/"):
            return base
        path = f"/v1/models/{self.model_name}:predict" if ctx.v1 else f"/v2/models/{self.model_name}/infer"
        return base + path

    def for_service_url(self, url: str) -> str:
        parts = urlsplit(url)
        key = service_key(parts.hostname or "")
        if key in self.resolve:
            base = urlsplit(self.resolve[key])
            return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        return url

    def for_destination(self, service: str, ctx: CallContext) -> str:
        return self.resolve[service] + ctx.path
