"""Everything that depends on KServe internals, tied to kserve==0.21.0: parser, app, server start, logging, metrics.

On a KServe upgrade re-check, in kserve/model_server.py, kserve/protocol/rest/server.py,
kserve/logging.py and kserve/metrics.py:
- `kserve.model_server` still parses sys.argv at import (parse_known_args) and exposes `parser`,
  `args` and `app`; its flags still do not clash with ours (see kserve_parser).
- `RESTServer.__init__` still builds `self.config` (a uvicorn.Config) with host "0.0.0.0" and no
  host, access-log or concurrency option, and serves `self.config.app`; `create_application()`
  still registers routes, handlers and middleware on the imported `kserve.model_server:app`.
- `ModelServer.start` still does only what SluiceModelServer.start repeats (register ready
  models, start them and their engines, REST + optional gRPC, event loop, signals), and
  `ModelServer.stop` still reads `self._grpc_server`.
- KSERVE_LOG_CONFIG still has the `kserve`, `kserve.trace`, `uvicorn_access` entries we edit.
- PRE/PREDICT/POST_HIST_TIME and get_labels keep their names and labels.
- serving.fast_path copies KServe's V1/V2 response bodies: the side-by-side tests in
  src/tests/serving/test_model_server.py must still pass unchanged.
- The V1 `:explain` route still calls `Model.__call__(..., verb=InferenceVerb.EXPLAIN)` (serving.model
  passes the verb on) and still answers with the request's headers, which serving.guard drops
  (src/tests/serving/test_explain.py).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
from collections.abc import Mapping
from typing import Any

import kserve
import kserve.model_server as kserve_model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import NoModelReady
from kserve.logging import KSERVE_LOG_CONFIG, configure_logging
from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME, get_labels
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.rest.server import RESTServer
from kserve.utils.utils import is_structured_cloudevent

__all__ = [
    "KSERVE_APP",
    "LoopbackRESTServer",
    "SluiceModelServer",
    "apply_kserve_args",
    "configure_server_logging",
    "is_structured_cloudevent",
    "kserve_parser",
    "latency_histograms",
]

# KServe's FastAPI app: RESTServer registers its routes on this object (by import string).
KSERVE_APP = kserve_model_server.app


def kserve_parser() -> argparse.ArgumentParser:
    """A copy of KServe's own argument parser, to be a parent of ours.

    A copy, because a parent's option actions are shared objects and we replace some of them
    (--model_name, --http_port, --grpc_port: our defaults differ). KServe's module already parsed
    sys.argv at import with parse_known_args, so under `python -m serving.model_server` both
    parsers read the same flags; apply_kserve_args makes KServe's copy agree when main() is
    given another argv.
    """
    return copy.deepcopy(kserve_model_server.parser)


def apply_kserve_args(args: argparse.Namespace) -> None:
    """Write our parsed values of KServe's flags into KServe's module-level `args`, which it reads at run time."""
    shared = vars(kserve_model_server.args)
    shared.update({name: value for name, value in vars(args).items() if name in shared})


def latency_histograms(model_name: str) -> tuple[Any, Any, Any]:
    """KServe's preprocess, predict and postprocess latency histograms for `model_name` (on /metrics)."""
    labels = get_labels(model_name)
    return PRE_HIST_TIME.labels(**labels), PREDICT_HIST_TIME.labels(**labels), POST_HIST_TIME.labels(**labels)


def configure_server_logging(prediction_log_to_stdout: bool, log_config_file: str | None = None) -> None:
    """KServe's logging, with our `sluice.*` loggers and no per-request trace line."""
    if log_config_file:
        configure_logging(log_config_file)
        return
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    if prediction_log_to_stdout:
        # stdout then carries only prediction JSON lines for the log shipper; access lines go to stderr.
        config["handlers"]["uvicorn_access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["sluice"] = {"handlers": ["kserve"], "level": "INFO", "propagate": False}
    # One trace line per request duplicates the prediction log's latency and costs throughput.
    config["loggers"]["kserve.trace"]["level"] = "WARNING"
    configure_logging(config)


class LoopbackRESTServer(RESTServer):
    """KServe's REST server bound to a chosen host, serving our app, with a connection cap.

    KServe 0.21's RESTServer hard-codes host 0.0.0.0 in its uvicorn.Config and has no option
    for it. Changing Config fields after construction (uvicorn reads them when serving starts)
    keeps every KServe route, handler and middleware and binds a local server to loopback only;
    in the cluster we pass --host 0.0.0.0.
    """

    def __init__(
        self,
        *args: Any,
        host: str,
        access_log: bool,
        asgi_app: Any = None,
        limit_concurrency: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.config.host = host
        # uvicorn answers 503 to requests on connections beyond this many (idle ones included).
        self.config.limit_concurrency = limit_concurrency
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
    """kserve.ModelServer whose REST server is a LoopbackRESTServer; start() repeats KServe's single-process path.

    It is built from KServe's public pieces (register_model, Model.start, RESTServer, GRPCServer,
    setup_event_loop, register_signal_handler) instead of calling the private
    `_register_and_check_atleast_one_model_is_ready`.
    """

    def __init__(
        self,
        *,
        host: str,
        access_log: bool = False,
        asgi_app: Any = None,
        max_connections: int | None = None,
        grpc_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.host = host
        self.access_log = access_log
        self.asgi_app = asgi_app
        self.max_connections = max_connections
        self.grpc_options = dict(grpc_options or vars(kserve_model_server.args))

    def start(self, models: list[kserve.Model]) -> None:
        if not any(model.ready for model in models):
            raise NoModelReady(models)
        for model in models:
            if model.ready:
                self.register_model(model)
                model.enable_latency_logging = self.enable_latency_logging
            model.start()
            if model.engine:
                self.servers.append(model.start_engine())
        rest = LoopbackRESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            host=self.host,
            access_log=self.access_log,
            asgi_app=self.asgi_app,
            limit_concurrency=self.max_connections,
            access_log_format=self.access_log_format,
            workers=1,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )
        self.servers.append(rest.start())
        if self.enable_grpc:
            # ModelServer.stop() stops the gRPC server it finds in this attribute.
            self._grpc_server = GRPCServer(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=self.grpc_options,
                grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve_all())

    async def _serve_all(self) -> None:
        await asyncio.gather(*self.servers)
