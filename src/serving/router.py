"""Local stand-in for KServe's InferenceGraph router and Istio's traffic mirroring, driven by the same manifests."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.wachttijden.schema import MODEL_NAME
from serving.graph_spec import (
    ROOT,
    HttpRoute,
    InferenceGraph,
    RoutingPlan,
    SpecError,
    Step,
    VirtualService,
    load_plan,
    parse_resolve,
    service_key,
)
from serving.prediction_log import (
    KNOWN_ROLES,
    REQUEST_ID_HEADER,
    ROLE_HEADER,
    JsonLinesWriter,
    forward_record,
)

logger = logging.getLogger("sluice.router")

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

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _error_answer(status: int, message: str) -> Answer:
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

    def __init__(self, client: httpx.AsyncClient, log: JsonLinesWriter, default_timeout_s: float):
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
                answer.error = _error_message(answer.body) or f"HTTP {answer.status}"
        except httpx.HTTPError as exc:
            # No HTTP answer at all (refused, reset, timeout): the caller sees 502 Bad Gateway.
            answer = _error_answer(502, f"{target} at {url} did not answer: {type(exc).__name__} {exc}".strip())
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


def _error_message(body: bytes) -> str | None:
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


# Graph steps named like this tell the model servers their role, so their logs join into a shadow report.
_STEP_ROLES = {**{role: role for role in KNOWN_ROLES}, "challenger": "shadow"}


def _step_role(step: Step, ctx: CallContext) -> str | None:
    return _STEP_ROLES.get((step.name or "").lower(), ctx.client_role)


def _map_predictions_to_instances(body: bytes) -> bytes:
    try:
        decoded = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body
    if isinstance(decoded, dict) and decoded.get("predictions"):
        decoded["instances"] = decoded.pop("predictions")
        return json.dumps(decoded).encode()
    return body


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


class GraphRunner:
    """Executes an InferenceGraph the way KServe's router does (see the README for the differences)."""

    def __init__(self, plan: RoutingPlan, forwarder: Forwarder, targets: Targets):
        self.plan = plan
        self.forwarder = forwarder
        self.targets = targets

    async def run(self, graph: InferenceGraph, body: bytes, ctx: CallContext) -> Answer:
        return await self._node(graph, ROOT, body, ctx)

    async def _step(self, graph: InferenceGraph, step: Step, body: bytes, ctx: CallContext) -> Answer:
        if step.node_name:
            return await self._node(graph, step.node_name, body, ctx)
        if step.service_name and step.service_name not in self.targets.resolve:
            return await self.run(self.plan.graphs[step.service_name], body, ctx)  # a graph calling a graph
        if step.service_name:
            url = self.targets.for_step(step.service_name, ctx)
        else:
            url = self.targets.for_service_url(step.service_url)
        return await self.forwarder.post(
            step.service_name or step.service_url,
            url,
            body,
            ctx,
            _step_role(step, ctx),
            graph.service_client_timeout_s,
        )

    async def _node(self, graph: InferenceGraph, name: str, body: bytes, ctx: CallContext) -> Answer:
        node = graph.nodes[name]
        if node.router_type == "Sequence":
            return await self._sequence(graph, node.steps, body, ctx)
        if node.router_type == "Switch":
            document = _parse_json(body)
            chosen = next((s for s in node.steps if s.condition.exists_in(document)), None)
            if chosen is None:
                return _error_answer(404, f"no step of Switch node {name!r} matched the request")
            return await self._step(graph, chosen, body, ctx)
        if node.router_type == "Splitter":
            point = random.randrange(100)
            end = 0
            for step in node.steps:
                end += step.weight
                if point < end:
                    return await self._step(graph, step, body, ctx)
            return _error_answer(500, f"Splitter node {name!r} picked no step")
        return await self._ensemble(graph, node.steps, body, ctx)

    async def _sequence(self, graph: InferenceGraph, steps: tuple[Step, ...], body: bytes, ctx: CallContext) -> Answer:
        previous: Answer | None = None
        for i, step in enumerate(steps):
            request = previous.body if (step.data == "$response" and i > 0) else body
            if step.map_predictions_to_instances:
                request = _map_predictions_to_instances(request)
            if step.condition is not None and previous is not None:
                # KServe: a step whose condition does not hold on the previous response ends the sequence.
                if not step.condition.exists_in(_parse_json(previous.body)):
                    return Answer(200, previous.body, previous.content_type)
            answer = await self._step(graph, step, request, ctx)
            if not answer.ok:
                if step.hard:
                    return answer
                logger.warning("soft step %s failed (%s): %s; continuing", step.label, answer.status, answer.error)
            previous = answer
        return previous

    async def _ensemble(self, graph: InferenceGraph, steps: tuple[Step, ...], body: bytes, ctx: CallContext) -> Answer:
        answers = await asyncio.gather(*(self._step(graph, step, body, ctx) for step in steps))
        combined: dict[str, Any] = {}
        for step, answer in zip(steps, answers, strict=True):
            if not answer.ok and step.hard:
                return answer  # the first failed Hard step decides, as in KServe
            parsed = _parse_json(answer.body)
            combined[step.label] = (
                parsed if isinstance(parsed, dict) else {"error": answer.error or "not a JSON object"}
            )
        return Answer(200, json.dumps(combined).encode())


class Mirror:
    """Istio-style mirroring: answer from the routed destination, copy to the mirror without waiting."""

    def __init__(
        self,
        forwarder: Forwarder,
        targets: Targets,
        graphs: GraphRunner,
        *,
        timeout_s: float,
        max_inflight: int,
    ):
        self.forwarder = forwarder
        self.targets = targets
        self.graphs = graphs
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self.inflight = 0
        self.stats = {"mirrored": 0, "mirror_dropped": 0, "mirror_failed": 0}
        self._tasks: set[asyncio.Task] = set()

    async def handle(self, vs: VirtualService, body: bytes, ctx: CallContext) -> Answer:
        route = next((r for r in vs.routes if r.matches_path(ctx.path)), None)
        if route is None:
            return _error_answer(404, f"no http route of VirtualService {vs.name!r} matches {ctx.path}")
        destination = self._pick(route)
        role = "champion" if route.mirror else ctx.client_role
        if destination in self.graphs.plan.graphs:
            answer = await self.graphs.run(self.graphs.plan.graphs[destination], body, ctx)
        else:
            url = self.targets.for_destination(destination, ctx)
            answer = await self.forwarder.post(destination, url, body, ctx, role, route.timeout_s)
        if route.mirror and random.random() * 100 < route.mirror_percentage:
            # Sent once the champion's answer is on its way (a background task), so the copy's own
            # work never sits in front of the response.
            async def send_copy() -> None:
                self._send_copy(route.mirror, body, ctx)

            answer.after = send_copy
        return answer

    @staticmethod
    def _pick(route: HttpRoute) -> str:
        if len(route.destinations) == 1:
            return route.destinations[0].service
        point, end = random.randrange(100), 0
        for destination in route.destinations:
            end += destination.weight
            if point < end:
                return destination.service
        return route.destinations[-1].service

    def _send_copy(self, service: str, body: bytes, ctx: CallContext) -> None:
        if self.inflight >= self.max_inflight:
            # Never queue behind a slow shadow: drop the copy, count it, and say so in the log.
            self.stats["mirror_dropped"] += 1
            self.forwarder.log.write(
                forward_record(
                    request_id=ctx.request_id,
                    role="shadow",
                    target=service,
                    url="",
                    status_code=None,
                    latency_ms=0.0,
                    error=f"dropped: {self.max_inflight} mirror calls already in flight",
                )
            )
            return
        self.inflight += 1
        self.stats["mirrored"] += 1
        task = asyncio.get_running_loop().create_task(self._copy(service, body, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _copy(self, service: str, body: bytes, ctx: CallContext) -> None:
        try:
            answer = await self.forwarder.post(
                service, self.targets.for_destination(service, ctx), body, ctx, "shadow", self.timeout_s
            )
            if not answer.ok:
                self.stats["mirror_failed"] += 1
        finally:
            self.inflight -= 1


def build_app(plan: RoutingPlan, resolve: Mapping[str, str], args: argparse.Namespace) -> Starlette:
    log = JsonLinesWriter(args.prediction_log)
    state: dict[str, Any] = {"requests": 0}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=64)

    @asynccontextmanager
    async def lifespan(_: Starlette):
        # Separate pools: a slow or dead shadow can never take the champion's connections.
        async with (
            httpx.AsyncClient(limits=limits) as client,
            httpx.AsyncClient(limits=limits) as shadow_client,
        ):
            targets = Targets(resolve, args.target_model_name)
            forwarder = Forwarder(client, log, args.timeout_s)
            graphs = GraphRunner(plan, forwarder, targets)
            state["graphs"] = graphs
            state["mirror"] = Mirror(
                Forwarder(shadow_client, log, args.mirror_timeout_s),
                targets,
                graphs,
                timeout_s=args.mirror_timeout_s,
                max_inflight=args.mirror_max_inflight,
            )
            yield
        log.close()

    async def infer(request: Request) -> Response:
        state["requests"] += 1
        headers = {k.lower(): v for k, v in request.headers.items()}
        ctx = CallContext(
            request_id=headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex,
            client_role=headers.get(ROLE_HEADER),
            path=request.url.path,
            headers=headers,
        )
        body = await request.body()
        entry = plan.entry
        if isinstance(entry, VirtualService):
            answer = await state["mirror"].handle(entry, body, ctx)
        else:
            answer = await state["graphs"].run(entry, body, ctx)
        return Response(
            answer.body,
            status_code=answer.status,
            media_type=answer.content_type,
            headers={REQUEST_ID_HEADER: ctx.request_id},
            background=BackgroundTask(answer.after) if answer.after else None,
        )

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def stats(_: Request) -> JSONResponse:
        mirror = state.get("mirror")
        return JSONResponse(
            {
                "requests": state["requests"],
                **(mirror.stats if mirror else {}),
                "mirror_inflight": mirror.inflight if mirror else 0,
            }
        )

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
            Route("/v2/health/live", healthz, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/{path:path}", infer, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", action="append", required=True, help="InferenceGraph or VirtualService YAML")
    parser.add_argument("--resolve", action="append", default=[], help="SERVICE=http://127.0.0.1:PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--prediction-log", default=None, help="JSON lines, one per forwarded call (- = stdout)")
    parser.add_argument("--target-model-name", default=MODEL_NAME, help="model name the local servers answer to")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per call to a step or destination")
    parser.add_argument("--mirror-timeout-s", type=float, default=5.0)
    parser.add_argument("--mirror-max-inflight", type=int, default=64, help="more concurrent copies are dropped")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        resolve = parse_resolve(args.resolve)
        plan = load_plan(args.spec, resolve)
    except SpecError as exc:
        print(f"router: invalid spec: {exc}", file=sys.stderr)
        sys.exit(2)
    for graph in plan.graphs.values():
        for warning in graph.warnings:
            logger.warning(warning)
    entry = plan.entry
    logger.info("Serving %s %r on %s:%s", type(entry).__name__, entry.name, args.host, args.port)
    config = uvicorn.Config(
        build_app(plan, resolve, args),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
