"""Which server class serves a model: one model server runtime (and one KServe ServingRuntime) for every use case.

A logged model carries exactly one use case's package as code (`code/models/<use case>/`, see
models.packaging), so the model itself says what it is: `--use-case auto` (the default) looks there with one
artifact listing, before anything heavy is loaded. Models logged before the code folder existed are tabular.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import PurePosixPath

from serving.guard import PredictionLogger
from serving.served import TRACKED_SCHEMES, LoggedServer

logger = logging.getLogger("sluice.model_server")

TABULAR = "wachttijden"
IMAGE = "xray"
USE_CASES = (TABULAR, IMAGE)


def use_case_of(model_uri: str) -> str:
    """The use case whose package the model at `model_uri` carries (TABULAR when it carries none we serve).

    For models:/ and runs:/ URIs the caller has checked the tracking server already (no minutes of retries).
    """
    import mlflow.artifacts

    if not model_uri.startswith(TRACKED_SCHEMES) and "://" not in model_uri and not os.path.isdir(model_uri):
        return TABULAR  # let the loader say what is wrong with the path
    try:
        entries = mlflow.artifacts.list_artifacts(artifact_uri=f"{model_uri.rstrip('/')}/code/models")
    except Exception as exc:  # noqa: BLE001 - an unlistable model is left to the loader, which names the problem
        logger.warning("Could not list %s/code/models (%s); serving it as %s", model_uri, exc, TABULAR)
        return TABULAR
    found = [name for name in (PurePosixPath(e.path).name for e in entries if e.is_dir) if name in USE_CASES]
    return found[0] if len(found) == 1 else TABULAR


def build_server(args: argparse.Namespace, prediction_log: PredictionLogger) -> LoggedServer:
    """The (not yet loaded) kserve.Model for the parsed flags; --use-case auto asks the model."""
    use_case = args.use_case
    if use_case == "auto":
        if args.model_uri.startswith(TRACKED_SCHEMES):
            from models.registry import require_tracking_server

            require_tracking_server(None)
        use_case = use_case_of(args.model_uri)
    name = args.model_name or use_case
    common = {"model_version": args.model_version, "prediction_log": prediction_log}
    logger.info("Serving %s as the %s use case", args.model_uri, use_case)
    if use_case == IMAGE:
        from serving.image_model import XrayServer

        return XrayServer(
            name, args.model_uri, max_images=args.max_images, max_batch_images=args.max_batch_images,
            max_batch_wait_ms=args.max_batch_wait_ms, max_explain_images=args.max_explain_images, **common,
        )
    from serving.model import WachttijdenServer

    return WachttijdenServer(
        name, args.model_uri, max_rows=args.max_rows, max_batch_rows=args.max_batch_size,
        max_batch_wait_ms=args.max_batch_wait_ms, max_explain_rows=args.max_explain_rows, **common,
    )
