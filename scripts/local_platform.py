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
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
PIPELINE_DAGS = ("prepare_dataset", "train_model", "deploy_model", "deploy_traffic_mirroring", "promote_model")


@dataclass(frozen=True)
class Ports:
    airflow: int = int(os.environ.get("SLUICE_AIRFLOW_PORT", "8080"))
    mlflow: int = int(os.environ.get("SLUICE_MLFLOW_PORT", "5000"))
    inference: int = int(os.environ.get("SLUICE_INFERENCE_PORT", "8081"))
    router: int = int(os.environ.get("SLUICE_ROUTER_PORT", "8082"))


PORTS = Ports()
AIRFLOW_URL = f"http://127.0.0.1:{PORTS.airflow}"
MLFLOW_URL = f"http://127.0.0.1:{PORTS.mlflow}"


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
        }
    )
    if os.environ.get("SLUICE_EPOCHS"):
        values["train_config"] = {**values.get("train_config", {}), "epochs": int(os.environ["SLUICE_EPOCHS"])}
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

    def asset_triggered_run(self, dag_id: str, after: str, timeout: float = 120) -> str:
        """The run that the asset event of an upstream run started (created after `after`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.call("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 5})
            for run in runs["dag_runs"]:
                if run["run_type"] == "asset_triggered" and _when(run["run_after"]) >= _when(after):
                    say(f"{dag_id} started by an asset event ({run['dag_run_id']})")
                    return run["dag_run_id"]
            time.sleep(2)
        raise SystemExit(f"{dag_id} was not triggered by the asset within {timeout:.0f}s")


def _when(timestamp: str):
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _index(ti: dict) -> str:
    return f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else ""


def prepared_before() -> dict | None:
    """The ledger entry of the raw file's content when prepare_dataset already prepared it."""
    from tasks.data import ledger
    from tasks.data.datalake import open_datalake
    from tasks.data.prepare import DATASET

    lake = open_datalake(str(LOCAL / "datalake"))
    return ledger.processed(lake, DATASET, ledger.content_digest(lake.read_bytes("raw", RAW_FILE)))


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
    started = airflow.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["start_date"]
    airflow.follow("deploy_model", airflow.asset_triggered_run("deploy_model", after=started), timeout=600)


def run_pipelines(mirror: bool) -> None:
    if already_converged(mirror):
        return
    airflow = Airflow()
    airflow.wait_for_dags(PIPELINE_DAGS)
    # A promotion's asset event starts deploy_model by itself; a paused DAG would only queue it.
    airflow.unpause("deploy_model")
    prepare = airflow.trigger("prepare_dataset")
    airflow.follow("prepare_dataset", prepare, timeout=1200)
    split = airflow.call("GET", f"/dags/prepare_dataset/dagRuns/{prepare}/taskInstances/split")
    train = None
    if split["state"] == "success":
        # The dataset event is emitted by the split task, before the prepare run itself ends.
        started = airflow.call("GET", f"/dags/prepare_dataset/dagRuns/{prepare}")["start_date"]
        train = airflow.asset_triggered_run("train_model", after=started)
        airflow.follow("train_model", train, timeout=3600)
    else:
        # prepare_dataset skips raw content it prepared before: no new partition, no dataset
        # event, so train_model does not run and the registered champion stays.
        say("the raw data was prepared before: no new partition, train_model is not run again")
    if train is not None and promoted_by(airflow, "train_model", train):
        # The gate promoted: that run's asset event started deploy_model. Following it, instead of
        # triggering one more, leaves exactly one deploy of the new champion.
        follow_asset_deploy(airflow, "train_model", train)
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
    model = MODEL_NAME
    # The prediction scripts default to the default ports; spell out any other.
    overrides = {"SLUICE_INFERENCE_PORT": (PORTS.inference, 8081), "SLUICE_ROUTER_PORT": (PORTS.router, 8082)}
    port_env = "".join(f"{k}={v} " for k, (v, default) in overrides.items() if v != default)
    print(
        f"""
Sluice is up.
  Airflow UI      {AIRFLOW_URL}   (login: admin, password in {PASSWORDS_FILE})
  MLflow UI       {MLFLOW_URL}
  Inference (V2)  http://127.0.0.1:{PORTS.inference}/v2/models/{model}/infer
  Inference (V1)  http://127.0.0.1:{PORTS.inference}/v1/models/{model}:predict"""
        + (f"\n  Mirror router   http://127.0.0.1:{PORTS.router}/v2/models/{model}/infer" if args.mirror else "")
        + f"""

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
