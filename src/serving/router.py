"""Local stand-in for KServe's InferenceGraph router and Istio's traffic mirroring, driven by the same manifests."""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.wachttijden.schema import MODEL_NAME
from serving.forwarding import CallContext, Forwarder, Targets
from serving.graph_runner import GraphRunner, Mirror
from serving.graph_spec import SpecError, VirtualService
from serving.log_writer import LineWriter
from serving.prediction_log import REQUEST_ID_HEADER, ROLE_HEADER
from serving.routing_plan import RoutingPlan, load_plan, parse_resolve

logger = logging.getLogger("sluice.router")
MiB = 1024 * 1024


def build_app(plan: RoutingPlan, resolve: Mapping[str, str], args: argparse.Namespace) -> Starlette:
    log = LineWriter(
        args.prediction_log, max_bytes=args.log_max_bytes, backups=args.log_backups, label="router log"
    )
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
            if request.method != "POST":
                # The mirror forwards predictions only (it always POSTs); other methods stay unanswered.
                return JSONResponse({"error": f"{request.method} is not forwarded"}, status_code=405)
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
                # Router log lines that could not be written (the answers were still sent).
                "log_write_errors": log.errors,
            }
        )

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
            Route("/v2/health/live", healthz, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            # KServe's router readiness path.
            Route("/readyz", ready, methods=["GET"]),
            # Like KServe's router, every other path and method runs the graph (the path matters only
            # for serviceName steps and VirtualService routes here).
            Route("/{path:path}", infer, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
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
    parser.add_argument("--log-max-bytes", type=int, default=50 * MiB, help="rotate the log at this size (0 = never)")
    parser.add_argument("--log-backups", type=int, default=5, help="rotated files kept (0 = no rotation)")
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
