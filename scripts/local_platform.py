"""Bring the local platform up, report its status and take it down: MLflow, Airflow, data, pipelines, serving.

Run through ./deploy-local.sh. Everything lives under .local/ (git-ignored); every service is a
detached process recorded in .local/run/ by tasks.deploy.processes, so `down` stops exactly what
`up` started, and a second `up` reuses what is already running instead of failing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tasks.deploy import processes  # noqa: E402 - after the path setup above

# SLUICE_LOCAL_DIR lets a test run a second, throw-away platform beside a developer's own.
LOCAL = Path(os.environ.get("SLUICE_LOCAL_DIR", ROOT / ".local")).resolve()
RUN_DIR = LOCAL / "run"
AIRFLOW_HOME = LOCAL / "airflow"
# Airflow's simple auth manager writes the generated admin password here; it is never printed.
PASSWORDS_FILE = AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated"
VENV_BIN = ROOT / ".venv" / "bin"
RAW_FILE = "wachttijden/wachttijden.csv"
MODEL_NAME = "wachttijden"
XRAY_MODEL_NAME = "xray"  # the xray_model_name Variable's default
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
PIPELINE_DAGS = ("prepare_dataset", "train_model", "deploy_model", "deploy_traffic_mirroring", "promote_model")


@dataclass(frozen=True)
class Ports:
    airflow: int = int(os.environ.get("SLUICE_AIRFLOW_PORT", "8080"))
    mlflow: int = int(os.environ.get("SLUICE_MLFLOW_PORT", "5000"))
    inference: int = int(os.environ.get("SLUICE_INFERENCE_PORT", "8081"))
    router: int = int(os.environ.get("SLUICE_ROUTER_PORT", "8082"))
    ui: int = int(os.environ.get("SLUICE_UI_PORT", "8501"))
    xray: int = int(os.environ.get("SLUICE_XRAY_PORT", "8084"))  # --with-xray (8083: the challenger's)


PORTS = Ports()
AIRFLOW_URL = f"http://127.0.0.1:{PORTS.airflow}"
MLFLOW_URL = f"http://127.0.0.1:{PORTS.mlflow}"
APP_URL = f"http://127.0.0.1:{PORTS.ui}"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


# --------------------------------------------------------------------------- configuration


def airflow_env() -> dict[str, str]:
    """The environment every Airflow component runs with: project-local, loopback-only, lean."""
    secrets_file = AIRFLOW_HOME / "secrets.json"
    if not secrets_file.exists():
        # Generated once per machine and kept out of git: all components must share them.
        AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
        from cryptography.fernet import Fernet

        secrets_file.write_text(json.dumps({"jwt": secrets.token_urlsafe(32), "fernet": Fernet.generate_key().decode(),
                                            "api": secrets.token_urlsafe(32)}))
        secrets_file.chmod(0o600)
    keys = json.loads(secrets_file.read_text())
    return {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "src"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # 32 worker processes by default (~1.2 GB PSS measured); 4 (~0.95 GB) is plenty for these DAGs.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{AIRFLOW_URL}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(PORTS.airflow),
        "AIRFLOW__API__SECRET_KEY": keys["api"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "20",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GIT_PYTHON_REFRESH": "quiet",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def variables() -> dict[str, object]:
    """variables/local/all.json with this machine's ports and absolute paths."""
    values = json.loads((ROOT / "variables" / "local" / "all.json").read_text())
    values.update(
        {
            "datalake_url": str(LOCAL / "datalake"),
            "local_run_dir": str(RUN_DIR),
            "mlflow_tracking_uri": MLFLOW_URL,
            "local_inference_port": str(PORTS.inference),
            "local_router_port": str(PORTS.router),
            "local_xray_port": str(PORTS.xray),
        }
    )
    if os.environ.get("SLUICE_EPOCHS"):
        values["train_config"] = {**values.get("train_config", {}), "epochs": int(os.environ["SLUICE_EPOCHS"])}
    if os.environ.get("SLUICE_XRAY_EPOCHS"):  # --with-xray: the image models' epochs
        values["xray_train_config"] = {**values.get("xray_train_config", {}),
                                       "epochs": int(os.environ["SLUICE_XRAY_EPOCHS"])}
    return values


# --------------------------------------------------------------------------- services


def ensure_service(name: str, cmd: list[str], *, port: int | None, env: dict[str, str], ready_url: str | None,
                   timeout: float = 180) -> None:
    """Start a platform service unless it already runs with the same command; wait for its ready URL."""
    service, started = processes.ensure(RUN_DIR, name, cmd, port=port, env=env, cwd=ROOT, role=processes.Role(name))
    say(f"started {name}" if started else f"{name} already running (pid {service.pid})")
    if ready_url:
        # Any 2xx/3xx: MLflow's /health and Airflow's monitor endpoint answer 200 once they serve.
        processes.wait_until_ready(service, ready_url, timeout=timeout,
                                   ready=lambda code: code is not None and 200 <= code < 400)


def start_mlflow() -> None:
    data = LOCAL / "mlflow"
    data.mkdir(parents=True, exist_ok=True)
    ensure_service(
        "mlflow",
        [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(PORTS.mlflow), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{data}/mlflow.db", "--artifacts-destination", str(data / "artifacts")],
        port=PORTS.mlflow,
        # One web worker and no job consumers: ~430 MB and ~13 s to ready instead of ~2.25 GB and ~33 s.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        ready_url=f"{MLFLOW_URL}/health",
    )


def start_airflow() -> None:
    env = airflow_env()
    if all(processes.running(RUN_DIR, f"airflow-{name}") for name in AIRFLOW_COMPONENTS):
        # Running components have a migrated database; migrating again costs ~11 s of a re-run.
        say("airflow is running: database already migrated")
    else:
        say("airflow db migrate")
        run([str(VENV_BIN / "airflow"), "db", "migrate"], env)
    variables_file = AIRFLOW_HOME / "variables.json"
    variables_file.write_text(json.dumps({k: v if isinstance(v, str) else json.dumps(v)
                                          for k, v in variables().items()}, indent=1))
    run([str(VENV_BIN / "airflow"), "variables", "import", str(variables_file),
         "--action-on-existing-key", "overwrite"], env)
    commands = {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(PORTS.airflow)],
        # The log servers bind every interface and are not needed on one machine: the API
        # server reads the task log files directly.
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }
    for name in AIRFLOW_COMPONENTS:
        ensure_service(
            f"airflow-{name}", [str(VENV_BIN / "airflow"), *commands[name]], port=PORTS.airflow
            if name == "api-server" else None, env=env,
            ready_url=f"{AIRFLOW_URL}/api/v2/monitor/health" if name == "api-server" else None, timeout=240,
        )


def start_app() -> None:
    """The web app (src/app) in its own .venv-app, pointed at this platform's services."""
    from app import launch
    from tasks.deploy.local import CHALLENGER_PORT_OFFSET

    env = {
        **launch.ENV,
        "SLUICE_APP_MODEL_URL": f"http://127.0.0.1:{PORTS.inference}",
        # Configured always: the Predict page shows the challenger only while one answers (--mirror).
        "SLUICE_APP_CHALLENGER_URL": f"http://127.0.0.1:{PORTS.inference + CHALLENGER_PORT_OFFSET}",
        "SLUICE_APP_ROUTER_URL": f"http://127.0.0.1:{PORTS.router}",
        "SLUICE_APP_MLFLOW_URL": MLFLOW_URL,
        "SLUICE_APP_DATALAKE_DIR": str(LOCAL / "datalake"),
        # Configured always: the X-ray page says how to start it (--with-xray) while nothing answers there.
        "SLUICE_APP_XRAY_URL": f"http://127.0.0.1:{PORTS.xray}",
    }
    ensure_service("app", launch.command(ROOT / ".venv-app" / "bin" / "python", PORTS.ui), port=PORTS.ui, env=env,
                   ready_url=f"{APP_URL}{launch.HEALTH_PATH}", timeout=120)


def run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


def ensure_raw_data(rows: int) -> None:
    target = LOCAL / "datalake" / "raw" / RAW_FILE
    if target.exists():
        say(f"raw data present: {target}")
        return
    say(f"generating the reference data set ({rows} rows) into {target}")
    from tasks.data.generate import generate, write_csv

    write_csv(generate(rows), target)


# --------------------------------------------------------------------------- pipelines


class Airflow:
    """The few REST calls needed to trigger DAG runs and follow them."""

    def __init__(self) -> None:
        password = json.loads(PASSWORDS_FILE.read_text())["admin"]
        token = requests.post(f"{AIRFLOW_URL}/auth/token", json={"username": "admin", "password": password},
                              timeout=30)
        token.raise_for_status()
        self.session = requests.Session()
        # The local Airflow keeps its metadata in SQLite: a write that meets the scheduler's write
        # answers 500 "Database error" (database is locked) after SQLite's busy timeout. Idempotent
        # calls (reads, unpausing) are retried; a run is never triggered twice by a retry.
        retries = Retry(total=4, backoff_factor=1, status_forcelist=(500, 503), allowed_methods={"GET", "PATCH"},
                        raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retries))
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.session.request(method, f"{AIRFLOW_URL}/api/v2{path}", timeout=30, **kwargs)
        if not response.ok:
            raise SystemExit(f"Airflow API {method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else {}

    def wait_for_dags(self, dag_ids, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            known = {d["dag_id"] for d in self.call("GET", "/dags", params={"limit": 100})["dags"]}
            if set(dag_ids) <= known:
                errors = self.call("GET", "/importErrors")
                if errors.get("import_errors"):
                    raise SystemExit(f"DAG import errors: {json.dumps(errors['import_errors'], indent=1)[:3000]}")
                return
            time.sleep(2)
        raise SystemExit(f"DAGs {sorted(set(dag_ids) - known)} were not parsed within {timeout:.0f}s")

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        self.unpause(dag_id)
        run = self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        say(f"triggered {dag_id} ({run['dag_run_id']})")
        return run["dag_run_id"]

    def follow(self, dag_id: str, run_id: str, timeout: float) -> None:
        """Print task states as they change; fail with the failed task's log tail."""
        deadline, shown = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            run = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            tis = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
            states = " ".join(f"{ti['task_id']}{_index(ti)}={ti['state'] or 'waiting'}" for ti in tis)
            if states != shown:
                print(f"    [{dag_id}] {states}", flush=True)
                shown = states
            if run["state"] == "success":
                return
            if run["state"] == "failed":
                failed = [ti for ti in tis if ti["state"] in ("failed", "upstream_failed")]
                self.explain(dag_id, run_id, failed[0] if failed else None)
            time.sleep(3)
        raise SystemExit(f"{dag_id} run {run_id} did not finish within {timeout:.0f}s (see the Airflow UI)")

    def explain(self, dag_id: str, run_id: str, ti: dict | None) -> None:
        log = ""
        if ti is not None:
            path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{max(ti['try_number'], 1)}"
            params = {"full_content": "true", "map_index": ti.get("map_index", -1)}
            response = self.session.get(f"{AIRFLOW_URL}/api/v2{path}", params=params, timeout=30,
                                        headers={"Accept": "text/plain"})
            log = "\n".join(response.text.splitlines()[-25:])
        raise SystemExit(f"{dag_id} run {run_id} failed at task {ti and ti['task_id']}:\n{log}")

    def find(self, path: str, **params) -> dict | None:
        """GET, with None for 404 (an XCom not written yet)."""
        response = self.session.get(f"{AIRFLOW_URL}/api/v2{path}", params=params, timeout=30)
        if response.status_code == 404:
            return None
        if not response.ok:
            raise SystemExit(f"Airflow API GET {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def runs(self, dag_id: str, **params) -> list[dict]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 20,
                                                                   **params})["dag_runs"]

    def run_started_by(self, dag_id: str, source_dag_id: str, source_run_id: str, *,
                       timeout: float = 300) -> dict | None:
        """The asset-triggered run of `dag_id` that consumed an asset event of `source_dag_id`'s run.

        Matched by the events each run consumed (their source_run_id), not by time: scheduled runs
        of other raw files start chains of their own at any moment. timeout=0: look once, None
        when there is none.
        """
        deadline, checked = time.monotonic() + timeout, set()
        while True:
            for run in self.runs(dag_id, run_type="asset_triggered"):
                # Not yet started: Airflow 3.3 answers 500 for the events of a run whose start_date
                # is null (apache/airflow#71360); it is matched once it starts.
                if run["dag_run_id"] in checked or not run.get("start_date"):
                    continue
                # A run's consumed events are fixed when the scheduler creates it.
                checked.add(run["dag_run_id"])
                path = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
                if any(event.get("source_dag_id") == source_dag_id and event.get("source_run_id") == source_run_id
                       for event in self.call("GET", path)["asset_events"]):
                    return run
            if time.monotonic() >= deadline:
                if timeout <= 0:
                    return None
                raise SystemExit(f"no {dag_id} run consumed the asset event of {source_dag_id} {source_run_id} "
                                 f"within {timeout:.0f}s (is {dag_id} paused? see the Airflow UI)")
            time.sleep(2)


def _when(timestamp: str):
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _index(ti: dict) -> str:
    return f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else ""


def open_lake():
    from tasks.data.datalake import open_datalake

    return open_datalake(str(LOCAL / "datalake"))


def raw_digest(lake) -> str:
    """sha256 of the reference raw file: what the ledger records once it is prepared."""
    from tasks.data import ledger

    return ledger.content_digest(lake.read_bytes("raw", RAW_FILE))


def prepared_before() -> dict | None:
    """The ledger entry of the raw file's content when prepare_dataset already prepared it."""
    from tasks.data import ledger
    from tasks.data.prepare import DATASET

    lake = open_lake()
    return ledger.processed(lake, DATASET, raw_digest(lake))


def served_versions() -> dict[str, str]:
    """Role -> registered version that the local model servers (running) serve."""
    served = {}
    for role in ("model", "challenger"):
        service = processes.running(RUN_DIR, role)
        if service is not None:
            served[role] = str(service.meta.get("version"))
    return served


def already_converged(mirror: bool) -> bool:
    """True when the raw data was prepared before and the registry's aliases are what is served.

    Then a re-run has nothing to do: no pipeline runs, nothing is trained or registered, and
    the running servers keep their processes.
    """
    entry = prepared_before()
    if entry is None:
        return False
    from mlflow.exceptions import MlflowException

    from tasks.registry import resolve

    try:
        wanted = {"model": resolve(MODEL_NAME, "champion", tracking_uri=MLFLOW_URL).version}
        if mirror:
            wanted["challenger"] = resolve(MODEL_NAME, "challenger", tracking_uri=MLFLOW_URL).version
    except MlflowException:  # no such alias yet: the pipelines make it
        return False
    served = served_versions()
    if mirror and processes.running(RUN_DIR, "router") is None:
        return False
    if any(served.get(role) != version for role, version in wanted.items()):
        return False
    say(f"raw data already prepared by {entry['run_id']} (sha256 {entry['sha256'][:12]}), and the "
        f"champion (version {wanted['model']}) is served: nothing to run")
    return True


def promoted_by(airflow: Airflow, dag_id: str, run_id: str) -> bool:
    """Whether the run's promote task moved the champion (and so emitted the event deploy_model runs on)."""
    promote = airflow.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/promote")
    return promote["state"] == "success"


def follow_asset_deploy(airflow: Airflow, dag_id: str, run_id: str) -> None:
    """Follow the deploy_model run that the new-champion event of `dag_id`'s run started."""
    deploy = airflow.run_started_by("deploy_model", dag_id, run_id)
    say(f"deploy_model {deploy['dag_run_id']}, started by the new-champion event of {dag_id} {run_id}")
    airflow.follow("deploy_model", deploy["dag_run_id"], timeout=600)


ACTIVE = ("queued", "running")


def prepare_schedule():
    """prepare_dataset's schedule here, from the same schedules file the DAG reads (SLUICE_SCHEDULES_FILE or
    variables/local/schedules.json)."""
    from pipelines._schedules import dag_schedule

    return dag_schedule("prepare_dataset")


def describe_schedule(schedule) -> str:
    if schedule.schedule is None:
        return "no schedule"
    watching = (f"watching {schedule.watch_minutes} min, looking once a minute" if schedule.watch_minutes
                else "looking once")
    return f"a run on '{schedule.schedule}', each {watching}"


def file_taken_by(airflow: Airflow, run_id: str) -> str | None:
    """The raw file a prepare_dataset run's sensor took (its XCom), None while it is still looking."""
    xcom = airflow.find(f"/dags/prepare_dataset/dagRuns/{run_id}/taskInstances/wait_for_raw_file"
                        "/xcomEntries/return_value")
    value = xcom and xcom.get("value")
    if isinstance(value, str) and value.startswith('"'):
        value = json.loads(value)  # stored JSON-serialized
    return value if isinstance(value, str) else None


def prepare_raw_file(airflow: Airflow, lake, digest: str, timeout: float = 1200) -> str:
    """Wait until the ledger records the reference file's content; return the prepare_dataset run it names.

    Whichever run takes the file prepares it: a scheduled run (the schedule starts one as soon as
    the DAG appears, and a watching run looks once a minute) or the one triggered here when no run
    is queued or running. Runs that take it are followed with their task states, so a failure is
    reported with its log; refused content ends the wait with the ledger's reason.
    """
    from datetime import UTC, datetime

    from tasks.data import ledger
    from tasks.data.prepare import DATASET

    say(f"raw/{RAW_FILE} (sha256 {digest[:12]}) is new: waiting for a prepare_dataset run to take it "
        f"({describe_schedule(prepare_schedule())})")
    since, followed, passed, triggered, idle = datetime.now(UTC), set(), set(), None, 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = ledger.processed(lake, DATASET, digest)
        if entry is not None:
            if entry["run_id"] not in followed:
                airflow.follow("prepare_dataset", entry["run_id"], timeout=60)
            say(f"prepared by prepare_dataset {entry['run_id']} into {entry['partition']}")
            return entry["run_id"]
        if lake.exists(ledger.LEDGER_CONTAINER, ledger.rejected_path(DATASET, digest)):
            rejected = json.loads(lake.read_bytes(ledger.LEDGER_CONTAINER, ledger.rejected_path(DATASET, digest)))
            raise SystemExit(f"raw/{RAW_FILE} was refused: {rejected['reason']}")
        runs = airflow.runs("prepare_dataset", limit=10)
        for run in runs:
            # Runs going on, and runs that ended since this wait began (one may fail between looks).
            run_id, active = run["dag_run_id"], run["state"] in ACTIVE
            recent = active or (run.get("end_date") and _when(run["end_date"]) >= since)
            if run_id in followed | passed or not recent:
                continue
            if file_taken_by(airflow, run_id) != RAW_FILE:
                if not active:  # ended without taking it: never will
                    passed.add(run_id)
                continue
            followed.add(run_id)
            say(f"prepare_dataset {run_id} ({run['run_type']}) took raw/{RAW_FILE}")
            airflow.follow("prepare_dataset", run_id, timeout=max(deadline - time.monotonic(), 60))
        idle = 0 if any(run["state"] in ACTIVE for run in runs) else idle + 1
        if triggered is None and idle >= 2:
            # No run is looking, twice in a row (so not a DAG the scheduler is about to start a run
            # of): between two scheduled runs, or no schedule. Start one for this file; should a
            # scheduled run take the file first, this one finds it prepared and skips.
            triggered = airflow.trigger("prepare_dataset", {"raw_file": RAW_FILE})
        time.sleep(3)
    raise SystemExit(f"raw/{RAW_FILE} was not prepared within {timeout:.0f}s (see prepare_dataset in the Airflow UI)")


def run_pipelines(mirror: bool) -> None:
    if already_converged(mirror):
        return
    airflow = Airflow()
    airflow.wait_for_dags(PIPELINE_DAGS)
    # The schedule and the asset events start these by themselves; paused, they would only queue.
    for dag_id in ("prepare_dataset", "train_model", "deploy_model"):
        airflow.unpause(dag_id)
    lake = open_lake()
    entry = prepared_before()
    if entry is None:
        # Not "the run triggered here": prepare_dataset runs on its schedule too, and whichever run
        # takes the file, the ledger names it, and its dataset event is what starts train_model.
        prepare = prepare_raw_file(airflow, lake, raw_digest(lake))
        train = airflow.run_started_by("train_model", "prepare_dataset", prepare)
        say(f"train_model {train['dag_run_id']}, started by the dataset event of prepare_dataset {prepare}")
    else:
        # Unless an earlier `up` left that chain running (interrupted): then it is followed to its end.
        train = airflow.run_started_by("train_model", "prepare_dataset", entry["run_id"], timeout=0)
        if train is not None and train["state"] in ACTIVE:
            say(f"raw/{RAW_FILE} was prepared by {entry['run_id']} (sha256 {entry['sha256'][:12]}) and "
                f"train_model {train['dag_run_id']} is still running on it: following it")
        else:
            train = None
            say(f"raw/{RAW_FILE} was prepared before by {entry['run_id']} (sha256 {entry['sha256'][:12]}): "
                "no new partition, train_model is not run again")
    if train is not None:
        airflow.follow("train_model", train["dag_run_id"], timeout=3600)
    if train is not None and promoted_by(airflow, "train_model", train["dag_run_id"]):
        # The gate promoted: that run's asset event started deploy_model. Following it, instead of
        # triggering one more, leaves exactly one deploy of the new champion.
        follow_asset_deploy(airflow, "train_model", train["dag_run_id"])
    else:
        # Nothing was promoted (the gate kept the champion, or nothing trained): serve the champion,
        # which may not be running (after `down`).
        deploy = airflow.trigger("deploy_model", {"model_ref": "champion"})
        airflow.follow("deploy_model", deploy, timeout=600)
    if mirror:
        run_id = airflow.trigger("deploy_traffic_mirroring", {"champion_ref": "champion",
                                                             "challenger_ref": "challenger", "mirror_percent": 100})
        airflow.follow("deploy_traffic_mirroring", run_id, timeout=600)


# --------------------------------------------------------------------------- commands


def up(args: argparse.Namespace) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    start_mlflow()
    start_airflow()
    ensure_raw_data(args.rows)
    run_pipelines(args.mirror)
    start_app()
    xray_lines = ""
    if args.with_xray:
        import local_xray  # scripts/local_xray.py: the image use case's chain (imports this module)

        local_xray.run(Airflow())
        xray_lines = "\n" + local_xray.summary()
    model = MODEL_NAME
    schedule = prepare_schedule()
    drop = LOCAL / "datalake" / "raw" / RAW_FILE.split("/")[0] / "YYYY" / "MM" / "DD" / "wachttijden.csv"
    if schedule.schedule:
        new_data = (f"  drop a file at {drop}\n  (write it elsewhere, then move it there): prepare_dataset takes it "
                    f"and runs the chain\n  ({describe_schedule(schedule)}).\n"
                    "  In the Airflow UI: Dags -> prepare_dataset, train_model, deploy_model -> Runs.")
    else:
        new_data = (f"  put a file at {drop}, then trigger prepare_dataset in the Airflow UI\n"
                    "  (prepare_dataset has no schedule here).")
    # The prediction scripts default to the default ports; spell out any other.
    overrides = {"SLUICE_INFERENCE_PORT": (PORTS.inference, 8081), "SLUICE_ROUTER_PORT": (PORTS.router, 8082)}
    port_env = "".join(f"{k}={v} " for k, (v, default) in overrides.items() if v != default)
    print(
        f"""
Sluice is up.
  Airflow UI      {AIRFLOW_URL}   (login: admin, password in {PASSWORDS_FILE})
  MLflow UI       {MLFLOW_URL}
  Web app         {APP_URL}   (predict with explanations, models, shadow and data reports)
  Inference (V2)  http://127.0.0.1:{PORTS.inference}/v2/models/{model}/infer
  Inference (V1)  http://127.0.0.1:{PORTS.inference}/v1/models/{model}:predict"""
        + (f"\n  Mirror router   http://127.0.0.1:{PORTS.router}/v2/models/{model}/infer" if args.mirror else "")
        + xray_lines
        + f"""

New raw data:
{new_data}

Try a prediction:
  {port_env}./scripts/perform-prediction.sh"""
        + (f"\n  {port_env}./scripts/perform-prediction-sequence.sh" if args.mirror else "")
        + """
Status / stop:
  ./deploy-local.sh status
  ./deploy-local.sh down
"""
    )


def promote(args: argparse.Namespace) -> None:
    """Move champion through the promote_model DAG (rollback or a version) and follow the deploy it starts."""
    airflow = Airflow()
    airflow.wait_for_dags(("promote_model", "deploy_model"))
    airflow.unpause("deploy_model")
    conf = {"rollback": True} if args.rollback else {"version": str(args.version)}
    run_id = airflow.trigger("promote_model", conf)
    airflow.follow("promote_model", run_id, timeout=300)
    follow_asset_deploy(airflow, "promote_model", run_id)
    say(f"champion: version {served_versions().get('model', '?')} is served")


def down(_: argparse.Namespace) -> None:
    stopped = processes.stop_all(RUN_DIR)
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def status(_: argparse.Namespace) -> None:
    states = processes.status(RUN_DIR)
    if not states:
        print("nothing is running (./deploy-local.sh starts the platform)")
    for state in states:
        print(state.describe())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="deploy-local.sh", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    up_parser = sub.add_parser("up", help="start everything and run the pipelines (default)")
    up_parser.add_argument("--mirror", action="store_true", help="also deploy champion + challenger behind the "
                                                                  "mirroring router")
    up_parser.add_argument("--with-xray", action="store_true", default=os.environ.get("SLUICE_WITH_XRAY") == "1",
                           help="also the image use case: synthetic scans, prepare_images -> train_images -> "
                                "deploy_xray, its model server on SLUICE_XRAY_PORT (8084); or SLUICE_WITH_XRAY=1")
    up_parser.add_argument("--rows", type=int, default=int(os.environ.get("SLUICE_ROWS", "200000")),
                           help="rows of generated reference data (only when no raw file exists yet)")
    promote_parser = sub.add_parser("promote", help="make another version champion (promote_model) and serve it")
    which = promote_parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--rollback", action="store_true", help="back to the previous-champion alias")
    which.add_argument("--version", type=int, help="this registered version number")
    sub.add_parser("down", help="stop every process that up started")
    sub.add_parser("status", help="say what is running")
    args = parser.parse_args(argv or ["up"])
    try:
        {"up": up, "down": down, "status": status, "promote": promote, None: up}[args.command](args)
    except processes.PortTaken as exc:
        raise SystemExit(f"{exc} (see README: SLUICE_*_PORT)") from None
    except (processes.ServiceExited, TimeoutError) as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main(sys.argv[1:])
