"""KServe model server for the project's MLflow models (tabular wachttijden, image xray: see serving.use_cases):
V1/V2 REST, V1 :explain, strict input checks, batching, prediction log."""

from __future__ import annotations

import argparse
import logging
import os
import sys

logger = logging.getLogger("sluice.model_server")
MiB = 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    """Our flags on top of KServe's own parser, so every KServe model-server flag is accepted as well."""
    from serving.kserve_compat import kserve_parser

    # "resolve": our spellings replace KServe's --model_name, --http_port and --grpc_port (other defaults).
    parser = argparse.ArgumentParser(description=__doc__, parents=[kserve_parser()], conflict_handler="resolve")
    add = parser.add_argument
    # Underscore spellings are accepted too: KServe ServingRuntimes conventionally pass --model_name etc.
    add("--model-uri", "--model_dir", dest="model_uri", default=os.environ.get("MODEL_URI"),
        help="models:/name@alias, models:/name/3, runs:/id/path or a folder (/mnt/models)")
    add("--model-name", "--model_name", dest="model_name", default=None, help="default: the use case's name")
    add("--use-case", choices=("auto", "wachttijden", "xray"), default="auto",
        help="which server serves the model; auto: the use case package the model carries")
    add("--model-version", default=None, help="version label to record instead of resolving it")
    add("--http-port", "--http_port", dest="http_port", type=int, default=8080)
    add("--host", default="127.0.0.1", help="REST bind address (0.0.0.0 in a container)")
    add("--grpc-port", "--grpc_port", dest="grpc_port", type=int, default=0, help="enable gRPC on this port (0 = off)")
    add("--prediction-log", default=None, help="JSON-lines file to append to, or - for stdout")
    add("--log-max-bytes", type=int, default=50 * MiB, help="rotate the log file at this size (0 = never)")
    add("--log-backups", type=int, default=5, help="rotated files kept: predictions.1.jsonl ... (0 = no rotation)")
    add("--log-max-input-rows", type=int, default=100,
        help="log inputs of larger requests as their row count and sha256 instead of their values")
    add("--max-batch-size", type=int, default=256, help="rows per coalesced model call")
    add("--max-batch-wait-ms", type=float, default=2.0, help="longest wait to fill a batch")
    add("--access-log", action="store_true", help="also log every HTTP request (uvicorn)")
    add("--no-fast-path", dest="fast_path", action="store_false",
        help="send every request through KServe's FastAPI app (for comparison and debugging)")
    add("--max-rows", type=int, default=10_000, help="rows per request (more: 413)")
    add("--max-explain-rows", type=int, default=100, help="rows per :explain request (more: 413)")
    add("--max-images", type=int, default=64, help="xray: images per request (more: 413)")
    add("--max-batch-images", type=int, default=32, help="xray: images per coalesced model call")
    add("--max-explain-images", type=int, default=4, help="xray: images per :explain request (more: 413)")
    add("--max-body-bytes", type=int, default=8 * MiB, help="request body size (more: 413)")
    add("--body-read-timeout-s", type=float, default=10.0, help="time to receive a whole request body (else 408)")
    add("--max-connections", type=int, default=1000, help="open connections; requests beyond get 503")
    # KServe's defaults that we change: no per-request latency line, gRPC only with a port, one process.
    parser.set_defaults(enable_latency_logging=False, enable_grpc=None)
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """(parsed flags, ignored unknown arguments); exits with a usage message on invalid ones."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if not args.model_uri:
        parser.error("--model-uri (or MODEL_URI) is required")
    if args.workers != 1:
        parser.error("--workers: this server runs one process (its batcher and fast path are per process)")
    return args, unknown


def main(argv: list[str] | None = None) -> None:
    args, unknown = parse_args(argv)
    from models.registry import TrackingServerUnavailable
    from serving.fast_path import FastPath
    from serving.guard import Limits, PredictionLogger, install_guards
    from serving.kserve_compat import KSERVE_APP, SluiceModelServer, apply_kserve_args, configure_server_logging
    from serving.log_metrics import register_batcher_metrics, register_log_metrics
    from serving.log_writer import LineWriter
    from serving.model import WachttijdenServer
    from serving.use_cases import build_server

    apply_kserve_args(args)
    if args.configure_logging:
        configure_server_logging(args.prediction_log == "-", args.log_config_file)
    if unknown:
        logger.warning("Ignoring arguments this server does not know: %s", " ".join(unknown))
    writer = LineWriter(args.prediction_log, max_bytes=args.log_max_bytes, backups=args.log_backups)
    try:
        model = build_server(args, PredictionLogger(writer, max_input_rows=args.log_max_input_rows))
        model.load()
    except TrackingServerUnavailable as exc:
        # Said once and at once, without a traceback; EX_CONFIG (78) tells a supervisor not to restart.
        print(f"model server: cannot load {args.model_uri}: {exc}", file=sys.stderr)
        sys.exit(os.EX_CONFIG)
    register_log_metrics(writer)
    register_batcher_metrics(model.name, model.batcher)
    limits = Limits(max_body_bytes=args.max_body_bytes, body_read_timeout_s=args.body_read_timeout_s)
    # The fast path answers small tabular JSON bodies, where KServe's routing dominated; an image request's
    # time is its decode and convolutions, so the image server takes KServe's path (one code path to keep).
    fast = FastPath(model) if args.fast_path and isinstance(model, WachttijdenServer) else None
    SluiceModelServer(
        host=args.host,
        access_log=args.access_log,
        asgi_app=install_guards(KSERVE_APP, model, limits, fast),
        max_connections=args.max_connections or None,
        http_port=args.http_port,
        grpc_port=args.grpc_port or 8081,
        enable_grpc=args.grpc_port > 0 and args.enable_grpc is not False,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    ).start([model])


if __name__ == "__main__":
    main()
