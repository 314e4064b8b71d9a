"""The README's main command, for real: ./deploy-local.sh up twice (it converges), a prediction, a raw file
dropped into the lake running the whole chain by itself (and the same content again running nothing),
status, down."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.data import ledger
from tasks.data.datalake import open_datalake
from tasks.data.generate import generate
from tasks.data.prepare import DATASET
from tests.support.browser import chromium_context
from tests.support.netwatch import ConnectionWatch
from tests.support.processes import REPO_ROOT, free_port
from tests.tasks.drift_data import shifted, to_csv_bytes

pytestmark = pytest.mark.slow

ROWS = 3000
# prepare_dataset in this platform starts a run every minute that looks once (watch_minutes 0): the
# shortest cycle a cron allows, so "picked up" and "looked at and left alone" each take about a minute.
# The shipped local schedule (variables/local/schedules.json) is every 5 minutes, watching 4.
TEST_SCHEDULE = {"prepare_dataset": {"schedule": "* * * * *", "watch_minutes": 0}}
CHAIN_DAGS = ("prepare_dataset", "train_model", "deploy_model")


@pytest.fixture(scope="module")
def local_env(tmp_path_factory):
    """A throw-away platform on free ports, beside any developer platform on the default ones."""
    schedules = tmp_path_factory.mktemp("schedules") / "schedules.json"
    schedules.write_text(json.dumps(TEST_SCHEDULE))
    env = {
        **os.environ,
        "SLUICE_LOCAL_DIR": str(tmp_path_factory.mktemp("platform")),
        "SLUICE_ROWS": str(ROWS),
        "SLUICE_EPOCHS": "1",
        "SLUICE_AIRFLOW_PORT": str(free_port()),
        "SLUICE_MLFLOW_PORT": str(free_port()),
        "SLUICE_INFERENCE_PORT": str(free_port()),
        "SLUICE_ROUTER_PORT": str(free_port()),
        "SLUICE_UI_PORT": str(free_port()),
        # Read by the DAG file in the platform's dag-processor and task processes (they inherit it).
        "SLUICE_SCHEDULES_FILE": str(schedules),
    }
    # The test process's own Airflow settings must not leak into the platform's.
    for key in [k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_VAR_")) or k == "AIRFLOW_HOME"]:
        del env[key]
    yield env
    subprocess.run([str(REPO_ROOT / "deploy-local.sh"), "down"], env=env, timeout=120, check=False)


@pytest.fixture(scope="module")
def first_up(local_env) -> subprocess.CompletedProcess:
    """The first ./deploy-local.sh: everything started, the reference data prepared, trained and served.

    prepare_dataset's schedule starts a run as soon as the DAG appears, so this `up` races the
    scheduled runs for its own raw file: whichever run takes it, `up` must follow that chain.
    """
    first = run(local_env, "deploy-local.sh")
    print(first.stdout)  # shown with a failing test's report (and with -rP)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return first


def run(env, *args, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO_ROOT / args[0]), *args[1:]], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def service_pids(env) -> dict[str, int]:
    run_dir = os.path.join(env["SLUICE_LOCAL_DIR"], "run")
    return {name[:-5]: json.load(open(os.path.join(run_dir, name)))["pid"]
            for name in os.listdir(run_dir) if name.endswith(".json")}


def test_deploy_local_up_predict_rerun_promote_restart_status(local_env, first_up):
    first = first_up
    assert "Sluice is up." in first.stdout
    assert "New raw data:" in first.stdout and "YYYY/MM/DD/wachttijden.csv" in first.stdout
    passwords = os.path.join(local_env["SLUICE_LOCAL_DIR"], "airflow", "simple_auth_manager_passwords.json.generated")
    password = json.load(open(passwords))["admin"]
    assert password not in first.stdout + first.stderr, "the Airflow password must never be printed"
    for dag_id in ("prepare_dataset", "train_model", "deploy_model"):
        assert f"[{dag_id}]" in first.stdout
    pids = service_pids(local_env)
    assert {"mlflow", "airflow-api-server", "airflow-scheduler", "model", "app"} <= set(pids)
    # Whichever run prepared the reference file (scheduled, or triggered by `up` when none was
    # looking), `up` followed that one and the train_model run its dataset event started.
    lake = Path(local_env["SLUICE_LOCAL_DIR"]) / "datalake"
    reference = ledger.processed(open_datalake(str(lake)), DATASET,
                                 ledger.content_digest((lake / "raw" / "wachttijden" / "wachttijden.csv").read_bytes()))
    assert reference is not None, "the reference file's content is not in the ledger"
    assert f"prepared by prepare_dataset {reference['run_id']}" in first.stdout
    (train,) = dag_runs(local_env, "train_model")
    assert consumed_from(local_env, "train_model", train["dag_run_id"]) == [("prepare_dataset", reference["run_id"])]
    assert f"train_model {train['dag_run_id']}, started by the dataset event of prepare_dataset " \
           f"{reference['run_id']}" in first.stdout
    # The first model is promoted by the gate; its asset event deploys it, and deploy-local follows
    # that run instead of triggering a second one.
    assert [run["run_type"] for run in dag_runs(local_env, "deploy_model")] == ["asset_triggered"]

    prediction = run(local_env, "scripts/perform-prediction.sh", timeout=60)
    assert prediction.returncode == 0, prediction.stderr
    assert '"predictions"' in prediction.stdout

    second = run(local_env, "deploy-local.sh")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "mlflow already running" in second.stdout
    # Unchanged raw data: nothing is prepared, trained or registered again, and the model
    # server keeps serving the same champion without a restart.
    assert "nothing to run" in second.stdout and "[train_model]" not in second.stdout
    assert service_pids(local_env) == pids
    assert registered_versions(local_env) == ["1"]
    assert len(dag_runs(local_env, "deploy_model")) == 1

    # The documented promote/rollback command: promote_model, then the deploy its asset event starts
    # (the same version again here, so the served process stays).
    promoted = run(local_env, ".venv/bin/python", "scripts/local_platform.py", "promote", "--version", "1",
                   timeout=600)
    assert promoted.returncode == 0, promoted.stdout[-3000:] + promoted.stderr[-3000:]
    assert "[promote_model]" in promoted.stdout and "champion: version 1 is served" in promoted.stdout
    assert [r["run_type"] for r in dag_runs(local_env, "deploy_model")] == ["asset_triggered"] * 2
    assert service_pids(local_env) == pids
    preprocessed = os.path.join(local_env["SLUICE_LOCAL_DIR"], "datalake", "preprocessed", "wachttijden")
    assert len(os.listdir(preprocessed)) == 1

    # A crashed model server comes back by itself (its supervisor restarts it), no re-run needed.
    supervisor = os.path.join(local_env["SLUICE_LOCAL_DIR"], "run", "model.supervisor")
    crashed = json.load(open(supervisor))["child_pid"]
    os.kill(crashed, signal.SIGKILL)
    deadline, again = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        if json.load(open(supervisor))["child_pid"] != crashed:
            again = run(local_env, "scripts/perform-prediction.sh", timeout=60)
            if again.returncode == 0:
                break
        time.sleep(1)
    assert again is not None and again.returncode == 0 and '"predictions"' in again.stdout, again

    status = run(local_env, "deploy-local.sh", "status", timeout=60)
    assert status.returncode == 0 and "model" in status.stdout and "running" in status.stdout
    assert "restarts=1 (last: killed by SIGKILL)" in status.stdout



def test_a_browser_sees_the_runs_succeed_the_champion_alias_and_a_prediction_with_its_explanation(local_env, first_up):
    """Issue 12: after ./deploy-local.sh, Chromium logs into the Airflow UI with the generated password and
    sees the chain's runs succeed, finds the champion alias in the MLflow UI, and gets a prediction with its
    explanation from the web app at the URL deploy-local printed. Nothing leaves 127.0.0.1."""
    from app.mlflow_client import Mlflow
    from app.registry import form_choices

    airflow = f"http://127.0.0.1:{local_env['SLUICE_AIRFLOW_PORT']}"
    mlflow = f"http://127.0.0.1:{local_env['SLUICE_MLFLOW_PORT']}"
    app = f"http://127.0.0.1:{local_env['SLUICE_UI_PORT']}"
    assert f"Web app         {app}" in first_up.stdout
    passwords = Path(local_env["SLUICE_LOCAL_DIR"]) / "airflow" / "simple_auth_manager_passwords.json.generated"
    shots = REPO_ROOT / ".local" / "test-artifacts" / "deploy-local"
    shots.mkdir(parents=True, exist_ok=True)
    (train,) = [r for r in dag_runs(local_env, "train_model") if r["run_type"] == "asset_triggered"][:1]
    with ConnectionWatch(lambda: [os.getpid()]) as watch, chromium_context() as browser:
        page = browser.new_page()
        page.goto(f"{airflow}/", timeout=120_000)
        page.locator('input[name="username"]').fill("admin")
        page.locator('input[name="password"]').fill(json.loads(passwords.read_text())["admin"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/" not in url, timeout=120_000)
        for dag_id in CHAIN_DAGS:
            page.goto(f"{airflow}/dags/{dag_id}/runs", timeout=120_000)
            page.get_by_text(re.compile("^success$", re.IGNORECASE)).first.wait_for(timeout=120_000)
            if dag_id == "train_model":
                page.get_by_text(train["dag_run_id"]).first.wait_for()
            page.screenshot(path=str(shots / f"airflow-{dag_id}-runs.png"))

        version = champion_version(local_env)
        page.goto(f"{mlflow}/#/models/wachttijden", timeout=120_000)
        page.get_by_text("champion").first.wait_for(timeout=120_000)
        page.screenshot(path=str(shots / "mlflow-model.png"))

        # The form's defaults are the first entry of each of the champion's vocabularies.
        choices = form_choices(Mlflow(mlflow), "wachttijden")
        row = {name: values[0] for name, values in choices.vocabularies.items()}
        page.goto(app, timeout=120_000)
        page.get_by_text(f"registered version {version}").wait_for(timeout=120_000)
        page.get_by_test_id("stFormSubmitButton").locator("button").click()
        page.get_by_test_id("stVegaLiteChart").first.wait_for(timeout=120_000)
        page.get_by_text(f"Model version {version}. Base value").wait_for()
        shown = page.get_by_test_id("stMetricValue").first.inner_text()
        answer = predict_locally(local_env, row)
        assert shown == f"{answer:.2f} weeks", (shown, answer, row)
        assert "Traceback" not in page.inner_text("body")
        page.screenshot(path=str(shots / "app-predict.png"), full_page=True)
    assert not watch.violations, f"connections outside loopback: {sorted(watch.violations)}"


def predict_locally(env, row: dict[str, str]) -> float:
    request = urllib.request.Request(
        f"http://127.0.0.1:{env['SLUICE_INFERENCE_PORT']}/v1/models/wachttijden:predict",
        data=json.dumps({"instances": [row]}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["predictions"][0]


def test_a_raw_file_dropped_into_the_lake_runs_the_chain_by_itself_and_the_same_content_again_nothing(
    local_env, first_up
):
    """Issue 11: a second raw file with shifted data starts prepare -> train -> evaluate (-> deploy when
    promoted) with nobody triggering anything; the same bytes dropped again under another date train nothing."""
    lake = Path(local_env["SLUICE_LOCAL_DIR"]) / "datalake"
    datalake = open_datalake(str(lake))
    # Other rows (seed 43, not the reference's 42), most waits turned into treatments and 6 weeks longer.
    data = to_csv_bytes(shifted(generate(ROWS, seed=43), seed=21))
    digest = ledger.content_digest(data)
    deploys_before = len(dag_runs(local_env, "deploy_model"))
    today = datetime.now(UTC).date()
    raw_file = drop_raw_file(lake, today, data)

    entry = wait_for(local_env, f"the ledger to record {raw_file} (sha256 {digest[:12]}) as prepared", 240,
                     lambda: not_refused(datalake, digest) and ledger.processed(datalake, DATASET, digest))
    assert entry["raw_file"] == raw_file, entry
    prepare_id = entry["run_id"]
    prepare = wait_for(local_env, f"prepare_dataset {prepare_id} to end", 120,
                       lambda: ended(local_env, "prepare_dataset", prepare_id))
    # Nobody triggered it: a run of the schedule found the file by itself.
    assert (prepare["run_type"], prepare["state"]) == ("scheduled", "success"), prepare
    assert set(task_states(local_env, "prepare_dataset", prepare_id).values()) == {"success"}
    assert len(os.listdir(lake / "preprocessed" / "wachttijden")) == 2

    train = wait_for(local_env, f"a train_model run started by the dataset event of prepare_dataset {prepare_id}",
                     120, lambda: run_started_by(local_env, "train_model", "prepare_dataset", prepare_id))
    train_id = train["dag_run_id"]
    train = wait_for(local_env, f"train_model {train_id} to end", 600,
                     lambda: ended(local_env, "train_model", train_id))
    states = task_states(local_env, "train_model", train_id)
    print(f"{raw_file}: prepared by {prepare_id}, trained by {train_id}, promote={states['promote']}")
    assert train["state"] == "success" and states["evaluate"] == "success", states
    assert states["promote"] in ("success", "skipped"), states
    if states["promote"] == "success":
        # The gate promoted: the new-champion event started deploy_model, which now serves that version.
        deploy = wait_for(local_env, f"a deploy_model run started by the champion event of train_model {train_id}",
                          120, lambda: run_started_by(local_env, "deploy_model", "train_model", train_id))
        deploy_id = deploy["dag_run_id"]
        deploy = wait_for(local_env, f"deploy_model {deploy_id} to end", 300,
                          lambda: ended(local_env, "deploy_model", deploy_id))
        assert deploy["state"] == "success", task_states(local_env, "deploy_model", deploy_id)
        (event,) = api(local_env, f"/dags/deploy_model/dagRuns/{deploy_id}/upstreamAssetEvents")["asset_events"]
        promoted = str(event["extra"]["version"])
        assert champion_version(local_env) == promoted == served_version(local_env)
        print(f"deployed version {promoted} by {deploy_id}")
    else:
        # The gate kept the champion: no champion event, so nothing was deployed.
        assert len(dag_runs(local_env, "deploy_model")) == deploys_before

    # The same content again, under the next day's date: looked at, known, nothing trains.
    trains = {r["dag_run_id"] for r in dag_runs(local_env, "train_model")}
    entries = ledger_entries(lake)
    again = drop_raw_file(lake, today + timedelta(days=1), data)
    dropped, dropped_clock = datetime.now(UTC), time.monotonic()
    # One full cycle: a prepare_dataset run that started after the file landed (so its sensor saw it) and ended.
    look = wait_for(local_env, f"a prepare_dataset run started after {again} landed to end", 240,
                    lambda: next((r for r in dag_runs(local_env, "prepare_dataset")
                                  if r["start_date"] and when(r["start_date"]) > dropped
                                  and r["state"] in ("success", "failed")), None))
    states = task_states(local_env, "prepare_dataset", look["dag_run_id"])
    print(f"{again}: looked at by {look['dag_run_id']} ({states}), {time.monotonic() - dropped_clock:.0f}s after")
    assert look["state"] == "success" and states["wait_for_raw_file"] == "skipped", (look, states)
    index = json.loads((lake / "intermediate" / "raw_index" / "wachttijden.json").read_text())
    assert index["files"][again]["sha256"] == digest, "the look did not hash the file dropped again"
    assert ledger_entries(lake) == entries
    assert {r["dag_run_id"] for r in dag_runs(local_env, "train_model")} == trains
    assert len(os.listdir(lake / "preprocessed" / "wachttijden")) == 2


def test_deploy_local_down_stops_every_process(local_env, first_up):
    pids = service_pids(local_env)
    assert {"mlflow", "airflow-api-server", "airflow-scheduler", "model"} <= set(pids)
    down = run(local_env, "deploy-local.sh", "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert service_pids(local_env) == {}
    # Nothing left of any service's process group: workers and children included.
    assert live_members_of(set(pids.values())) == []


def drop_raw_file(lake: Path, day, data: bytes) -> str:
    """Deliver a raw file the way a delivery should land: all of it at once, or nothing.

    prepare_dataset's sensor lists raw/wachttijden/ every minute and hashes each .csv it finds. A
    file written in place could be seen half-written, and that truncated content would be prepared
    (or refused) and entered in the ledger under a digest nobody meant. So the bytes go to a
    temporary name outside the raw prefix, on the same file system, and a rename (atomic there)
    makes the whole file appear under raw/ in one step.
    """
    relative = f"wachttijden/{day:%Y/%m/%d}/wachttijden.csv"
    target = lake / "raw" / relative
    incoming = lake / "incoming"
    for folder in (target.parent, incoming):
        folder.mkdir(parents=True, exist_ok=True)
    partial = incoming / f"{uuid.uuid4().hex}.csv.part"
    partial.write_bytes(data)
    os.replace(partial, target)
    return relative


def not_refused(datalake, digest: str) -> bool:
    path = ledger.rejected_path(DATASET, digest)
    if datalake.exists(ledger.LEDGER_CONTAINER, path):
        pytest.fail(f"the dropped file was refused: {json.loads(datalake.read_bytes(ledger.LEDGER_CONTAINER, path))}")
    return True


def ledger_entries(lake: Path) -> list[str]:
    return sorted(str(p.relative_to(lake)) for p in (lake / "intermediate" / "ledger").rglob("*.json"))


def wait_for(env, what: str, timeout: float, check):
    """check()'s first truthy value within `timeout` seconds; else fail naming what and listing the DAG runs."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f}s for {what}; DAG runs:\n{runs_table(env)}")
        time.sleep(3)


def runs_table(env) -> str:
    lines = []
    for dag_id in CHAIN_DAGS:
        for r in dag_runs(env, dag_id)[-12:]:
            lines.append(f"  {dag_id:16} {r['dag_run_id']:58} {r['run_type']:16} {r['state']:8} "
                         f"start={r['start_date']} end={r['end_date']}")
    return "\n".join(lines)


def ended(env, dag_id: str, run_id: str) -> dict | None:
    run = api(env, f"/dags/{dag_id}/dagRuns/{run_id}")
    return run if run["state"] in ("success", "failed") else None


def task_states(env, dag_id: str, run_id: str) -> dict[str, str | None]:
    tis = api(env, f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {ti["task_id"]: ti["state"] for ti in tis}


def consumed_from(env, dag_id: str, run_id: str) -> list[tuple[str, str]]:
    """(source DAG, source run) of each asset event that the run consumed."""
    events = api(env, f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]
    return [(e["source_dag_id"], e["source_run_id"]) for e in events]


def run_started_by(env, dag_id: str, source_dag_id: str, source_run_id: str) -> dict | None:
    for run in dag_runs(env, dag_id):
        # Only started runs: Airflow 3.3 answers 500 for the events of a run with no start_date yet
        # (apache/airflow#71360).
        if run["run_type"] == "asset_triggered" and run["start_date"] and (
            source_dag_id, source_run_id
        ) in consumed_from(env, dag_id, run["dag_run_id"]):
            return run
    return None


def when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


_TOKENS: dict[str, str] = {}


def api(env, path: str, **params) -> dict:
    """GET from the platform's Airflow REST API (v2), logged in as admin with the generated password."""
    base = f"http://127.0.0.1:{env['SLUICE_AIRFLOW_PORT']}"
    if base not in _TOKENS:
        passwords = os.path.join(env["SLUICE_LOCAL_DIR"], "airflow", "simple_auth_manager_passwords.json.generated")
        login = json.dumps({"username": "admin", "password": json.load(open(passwords))["admin"]}).encode()
        request = urllib.request.Request(f"{base}/auth/token", data=login,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            _TOKENS[base] = json.load(response)["access_token"]
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    request = urllib.request.Request(f"{base}/api/v2{path}{query}",
                                     headers={"Authorization": f"Bearer {_TOKENS[base]}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def dag_runs(env, dag_id: str) -> list[dict]:
    """The DAG's runs, oldest first, from the platform's Airflow REST API."""
    return api(env, f"/dags/{dag_id}/dagRuns", limit=100, order_by="id")["dag_runs"]


def served_version(env) -> str:
    """The registered version the local model server was started with."""
    state = json.loads((Path(env["SLUICE_LOCAL_DIR"]) / "run" / "model.json").read_text())
    return str(state["meta"]["version"])


def champion_version(env) -> str:
    url = (f"http://127.0.0.1:{env['SLUICE_MLFLOW_PORT']}/api/2.0/mlflow/registered-models/alias"
           "?name=wachttijden&alias=champion")
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(json.load(response)["model_version"]["version"])


def registered_versions(env) -> list[str]:
    url = (f"http://127.0.0.1:{env['SLUICE_MLFLOW_PORT']}/api/2.0/mlflow/model-versions/search"
           "?filter=name%3D%27wachttijden%27")
    with urllib.request.urlopen(url, timeout=30) as response:
        return sorted(v["version"] for v in json.load(response).get("model_versions", []))


def live_members_of(groups: set[int]) -> list[str]:
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) in groups and fields[0] != "Z":
            left.append(stat[: stat.rindex(")") + 1])
    return left
