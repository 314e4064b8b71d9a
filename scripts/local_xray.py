"""`./deploy-local.sh --with-xray`: the image use case on the local platform, after the tabular chain.

Writes the synthetic scans into the local lake (once), then follows the chain the image set's content
starts: the prepare_images run the ledger names for that snapshot (triggering one only when no run is
looking), the train_images run its dataset event started, and the deploy_xray run of the new-champion
event (or a deploy_xray run for the champion when the gate kept it). Converges like the tabular chain:
a snapshot the ledger knows, with its champion served, runs nothing.
"""

from __future__ import annotations

import os
import time
from datetime import date

import local_platform as platform

from tasks.deploy import processes

# The day folder the generated set lands in (raw/xray/2024/05/01/<class>/*.png); seed as the generator's CLI.
GENERATED_DAY = date(2024, 5, 1)
SEED = 42
SERVICE = "xray"  # tasks.deploy.use_cases: the xray champion's local service
DAGS = ("prepare_images", "train_images", "deploy_xray")


def image_count() -> int:
    return int(os.environ.get("SLUICE_XRAY_IMAGES", "3000"))


def ensure_images(lake) -> None:
    from tasks.data.generate_images import write_scans
    from tasks.data.prepare_images import snapshot

    if snapshot(lake) is not None:
        platform.say("xray images present under raw/xray/")
        return
    count = image_count()
    platform.say(f"generating {count} synthetic xray scans into raw/xray/{GENERATED_DAY:%Y/%m/%d}/ (seed {SEED})")
    write_scans(lake, count=count, seed=SEED, day=GENERATED_DAY)


def champion_version() -> str | None:
    from mlflow.exceptions import MlflowException

    from tasks.registry import resolve

    try:
        return resolve(platform.XRAY_MODEL_NAME, "champion", tracking_uri=platform.MLFLOW_URL).version
    except MlflowException:  # no champion yet: the pipelines make it
        return None


def served_version() -> str | None:
    service = processes.running(platform.RUN_DIR, SERVICE)
    return None if service is None else str(service.meta.get("version"))


def wait_prepared(airflow, lake, digest: str, timeout: float = 1800) -> str:
    """The prepare_images run that prepared the snapshot `digest` (the ledger names it); one run is
    triggered when none is queued or running twice in a row, as for the tabular raw file."""
    from tasks.data import ledger
    from tasks.data.prepare_images import DATASET

    platform.say(f"xray image set (snapshot {digest[:12]}) is new: waiting for prepare_images to take it")
    triggered, idle, deadline = None, 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = ledger.processed(lake, DATASET, digest)
        if entry is not None:
            airflow.follow("prepare_images", entry["run_id"], timeout=600)
            platform.say(f"prepared by prepare_images {entry['run_id']} into {entry['partition']}")
            return entry["run_id"]
        rejected = ledger.rejected_path(DATASET, digest)
        if lake.exists(ledger.LEDGER_CONTAINER, rejected):
            raise SystemExit(f"the xray image set was refused: see {ledger.LEDGER_CONTAINER}/{rejected}")
        active = [r for r in airflow.runs("prepare_images", limit=5) if r["state"] in platform.ACTIVE]
        idle = 0 if active else idle + 1
        if triggered is None and idle >= 2:
            triggered = airflow.trigger("prepare_images")
        time.sleep(3)
    raise SystemExit(f"the xray image set was not prepared within {timeout:.0f}s (see prepare_images in Airflow)")


def run(airflow) -> None:
    """Images, then prepare -> train -> deploy of the image model, unless all of it is done already."""
    from tasks.data import ledger
    from tasks.data.prepare_images import DATASET, snapshot

    lake = platform.open_lake()
    ensure_images(lake)
    digest = snapshot(lake).sha256
    entry = ledger.processed(lake, DATASET, digest)
    champion = champion_version()
    if entry is not None and champion is not None and served_version() == champion:
        platform.say(f"xray image set already prepared by {entry['run_id']} and its champion (version "
                     f"{champion}) is served: nothing to run")
        return
    airflow.wait_for_dags(DAGS)
    for dag_id in DAGS:
        airflow.unpause(dag_id)
    prepare = wait_prepared(airflow, lake, digest) if entry is None else entry["run_id"]
    train = airflow.run_started_by("train_images", "prepare_images", prepare, timeout=300 if entry is None else 0)
    if train is not None and (entry is None or train["state"] in platform.ACTIVE):
        platform.say(f"train_images {train['dag_run_id']}, started by the dataset event of prepare_images {prepare}")
        airflow.follow("train_images", train["dag_run_id"], timeout=5400)
    else:
        train = None
    if train is not None and platform.promoted_by(airflow, "train_images", train["dag_run_id"]):
        deploy = airflow.run_started_by("deploy_xray", "train_images", train["dag_run_id"])["dag_run_id"]
        platform.say(f"deploy_xray {deploy}, started by the new-champion event of train_images")
    else:
        deploy = airflow.trigger("deploy_xray", {"model_ref": "champion"})
    airflow.follow("deploy_xray", deploy, timeout=600)


def summary() -> str:
    """The lines `up` prints for the image model."""
    port = platform.PORTS.xray
    env = f"SLUICE_XRAY_PORT={port} " if port != 8084 else ""
    name = platform.XRAY_MODEL_NAME
    return (f"  Xray (V2)       http://127.0.0.1:{port}/v2/models/{name}/infer\n"
            f"  Xray (explain)  http://127.0.0.1:{port}/v1/models/{name}:explain\n"
            f"  Try it:         {env}./scripts/perform-prediction.sh --model xray [--explain] scan.png")
