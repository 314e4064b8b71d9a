"""The model lifecycle through Airflow (dag.test) against its own MLflow server, a local lake and local serving:
train -> evaluate -> promote -> deploy, a weak model that is kept out, a rollback, and lineage on every version.

One story, run once by the module fixture:
1. prepare_dataset, then train_model with a modest `train_config` -> version 1, promoted (no champion yet);
2. train_model with a deliberately weak `train_config` -> version 2, kept out by the gate;
3. train_model with a better `train_config` -> version 3, promoted; version 1 becomes previous-champion;
4. deploy_model (local target) serves version 3; promote_model rollback=true; deploy_model serves version 1.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.pipelines.test_end_to_end import RAW, load_dag
from tests.support.processes import REPO_ROOT, free_port

pytestmark = pytest.mark.slow
MODEL = "wachttijden"


def candidate(name: str, **settings) -> dict:
    return {"candidates": [{"name": name, "batch_size": 128, **settings}]}


MODEST = candidate("modest", hidden_units=[8], learning_rate=0.003, epochs=2)
WEAK = candidate("weak", hidden_units=[1], learning_rate=1e-6, epochs=1, oov_fraction=0)
BETTER = candidate("better", hidden_units=[64, 32], learning_rate=0.003, epochs=8)


@pytest.fixture(scope="module")
def own_mlflow(tmp_path_factory):
    """An MLflow server for this module only: its registry starts empty whatever other modules registered."""
    from tests.conftest import running_mlflow_server

    with running_mlflow_server(tmp_path_factory.mktemp("lifecycle-mlflow")) as url:
        yield url


def aliases(client) -> dict[str, str | None]:
    from tasks.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, alias_version

    return {alias: alias_version(client, MODEL, alias) for alias in (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)}


def served_version(run_dir) -> str:
    """The version the local model server answers with (from its own V2 response)."""
    import requests

    from tasks.deploy import processes

    service = processes.running(run_dir, "model")
    assert service is not None, "no local model server is running"
    body = json.loads((REPO_ROOT / "src" / "tests" / "data" / "testdata.json").read_text())
    response = requests.post(f"{service.url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == service.meta["version"]
    return response.json()["model_version"]


@pytest.fixture(scope="module")
def lifecycle(airflow_db, own_mlflow, small_raw_csv, tmp_path_factory):
    from mlflow import MlflowClient

    from tasks.data.datalake import open_datalake
    from tasks.deploy import processes
    from tests.conftest import SERVING_PYTHON, isolate_mlflow_client, reset_mlflow_client

    if not SERVING_PYTHON.exists():
        pytest.skip("the serving environment .venv-serving is missing: run scripts/setup.sh dev")
    lake_dir, run_dir = tmp_path_factory.mktemp("lake"), tmp_path_factory.mktemp("run")
    open_datalake(str(lake_dir)).write_bytes("raw", RAW, small_raw_csv.read_bytes())
    env = {
        "AIRFLOW_VAR_DATALAKE_URL": str(lake_dir),
        "AIRFLOW_VAR_MLFLOW_TRACKING_URI": own_mlflow,
        "AIRFLOW_VAR_RAW_FILE": RAW,
        "AIRFLOW_VAR_DRIFT_MODE": "off",
        # The Variable would train two candidates; each run below names its own in the train_config param.
        "AIRFLOW_VAR_TRAIN_CONFIG": json.dumps({"epochs": 1}),
        # 300 test rows: slices of 60+ rows (Polikliniek, Behandeling) take part in the decision.
        "AIRFLOW_VAR_PROMOTION_MIN_SLICE_ROWS": "60",
        "AIRFLOW_VAR_DEPLOY_TARGET": "local",
        "AIRFLOW_VAR_LOCAL_RUN_DIR": str(run_dir),
        "AIRFLOW_VAR_LOCAL_SERVING_PYTHON": str(SERVING_PYTHON),
        "AIRFLOW_VAR_LOCAL_INFERENCE_PORT": str(free_port()),
        "AIRFLOW_VAR_LOCAL_ROUTER_PORT": str(free_port()),
    }
    story: dict = {"lake_dir": lake_dir, "run_dir": run_dir, "mlflow": own_mlflow, "head_before": git_head()}
    with pytest.MonkeyPatch.context() as mp:
        isolate_mlflow_client(mp, own_mlflow)
        for key, value in env.items():
            mp.setenv(key, value)
        client = MlflowClient(own_mlflow)
        try:
            story["prepare"] = load_dag("prepare_dataset").test()
            for name, config in (("modest", MODEST), ("weak", WEAK), ("better", BETTER)):
                story[name] = load_dag("train_model").test(run_conf={"train_config": config})
                story[f"aliases_after_{name}"] = aliases(client)
            story["deploy_better"] = load_dag("deploy_model").test()
            story["served_after_better"] = served_version(run_dir)
            story["rollback"] = load_dag("promote_model").test(run_conf={"rollback": True})
            story["aliases_after_rollback"] = aliases(client)
            story["deploy_rollback"] = load_dag("deploy_model").test()
            story["served_after_rollback"] = served_version(run_dir)
            yield story
        finally:
            processes.stop_all(run_dir)
            reset_mlflow_client()


def git_head() -> str:
    return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def is_ancestor(older: str, newer: str) -> bool:
    return subprocess.run(["git", "-C", str(REPO_ROOT), "merge-base", "--is-ancestor", older, newer],
                          capture_output=True, check=False).returncode == 0


def states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def version_tags(story, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return MlflowClient(story["mlflow"]).get_model_version(MODEL, version).tags


def champion_events(dag_id: str) -> dict[str, dict]:
    """source run id -> extra of the wachttijden_champion asset events a DAG emitted."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.source_run_id, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == "wachttijden_champion", AssetEvent.source_dag_id == dag_id)
        ).all()
    return {run_id: dict(extra) for run_id, extra in rows}


def test_every_run_succeeds(lifecycle):
    for name in ("prepare", "modest", "weak", "better", "deploy_better", "rollback", "deploy_rollback"):
        assert lifecycle[name].state == "success", (name, states(lifecycle[name]))
    for version in ("1", "2", "3"):  # in the test log, for whoever tunes the configurations above
        print(version, version_tags(lifecycle, version)["sluice.gate.reason"])


def test_the_first_model_is_promoted_because_there_is_no_champion(lifecycle):
    assert lifecycle["aliases_after_modest"] == {"champion": "1", "challenger": "1", "previous-champion": None}
    tags = version_tags(lifecycle, "1")
    assert tags["sluice.gate.decision"] == "promote" and "no champion" in tags["sluice.gate.reason"]
    assert tags["sluice.gate.champion_version"] == "none"
    assert champion_events("train_model")[lifecycle["modest"].run_id]["version"] == "1"


def test_a_weak_train_config_never_moves_champion_and_says_why(lifecycle, tmp_path):
    from mlflow import MlflowClient

    weak = lifecycle["weak"]
    assert states(weak)["promote"] == "skipped" and states(weak)["evaluate"] == "success"
    assert lifecycle["aliases_after_weak"] == {"champion": "1", "challenger": "2", "previous-champion": None}
    tags = version_tags(lifecycle, "2")
    assert tags["candidate"] == "weak"  # the param's candidate, not the Variable's
    assert tags["sluice.gate.decision"] == "keep"
    assert "is not lower by the margin of 1.0%" in tags["sluice.gate.reason"]
    assert float(tags["sluice.gate.challenger_mae"]) > float(tags["sluice.gate.champion_mae"]) * 0.99
    assert (tags["sluice.gate.champion_version"], tags["sluice.gate.margin"]) == ("1", "0.01")
    assert tags["sluice.gate.blocking_slice"] == "none"
    assert tags["sluice.gate.airflow_run"] == f"train_model/{weak.run_id}"
    # The report beside the version's run, and no asset event: nothing was deployed for it.
    client = MlflowClient(lifecycle["mlflow"])
    run_id = client.get_model_version(MODEL, "2").run_id
    assert tags["sluice.gate.report"] == f"runs:/{run_id}/gate/report.md"
    assert {"gate/report.md", "gate/report.html", "gate/report.json"} <= {
        a.path for a in client.list_artifacts(run_id, "gate")}
    report = json.loads(Path(client.download_artifacts(run_id, "gate/report.json", str(tmp_path))).read_text())
    assert report["decision"] == "keep" and report["context"]["champion_version"] == "1"
    assert weak.run_id not in champion_events("train_model")


def test_a_better_model_moves_champion_and_the_old_one_becomes_previous_champion(lifecycle):
    assert lifecycle["aliases_after_better"] == {"champion": "3", "challenger": "3", "previous-champion": "1"}
    tags = version_tags(lifecycle, "3")
    assert tags["sluice.gate.decision"] == "promote", tags["sluice.gate.reason"]
    assert float(tags["sluice.gate.challenger_mae"]) < float(tags["sluice.gate.champion_mae"]) * 0.99
    assert "slices with at least 60 rows" in tags["sluice.gate.reason"]
    assert tags["sluice.promotion.by"] == f"train_model/{lifecycle['better'].run_id}"
    assert champion_events("train_model")[lifecycle["better"].run_id] == {
        "model_name": MODEL, "version": "3", "previous_version": "1", "moved": True,
        "reason": f"evaluation gate: {tags['sluice.gate.reason']}"}


def test_rollback_restores_the_previous_champion_and_deploy_model_serves_it(lifecycle):
    assert lifecycle["served_after_better"] == "3"
    assert lifecycle["aliases_after_rollback"] == {"champion": "1", "challenger": "3", "previous-champion": "3"}
    assert champion_events("promote_model")[lifecycle["rollback"].run_id]["version"] == "1"
    assert lifecycle["served_after_rollback"] == "1"


def test_every_registered_version_carries_its_lineage(lifecycle):
    from mlflow import MlflowClient

    from tasks.data.prepare import partition_for

    client = MlflowClient(lifecycle["mlflow"])
    from tasks.data.datalake import open_datalake


    raw_sha256 = hashlib.sha256(open_datalake(str(lifecycle["lake_dir"])).read_bytes("raw", RAW)).hexdigest()
    versions = sorted(client.search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version))
    assert [v.version for v in versions] == ["1", "2", "3"]
    for version, story in zip(versions, ("modest", "weak", "better"), strict=True):
        expected = {
            "sluice.data.partition": partition_for(lifecycle["prepare"].run_id),
            "sluice.data.raw_sha256": raw_sha256,
            "sluice.airflow.dag_id": "train_model",
            "sluice.airflow.run_id": lifecycle[story].run_id,
            "sluice.airflow.prepare_run_id": lifecycle["prepare"].run_id,
        }
        assert {k: version.tags.get(k) for k in expected} == expected, version.version
        run_tags = client.get_run(version.run_id).data.tags
        assert {k: run_tags.get(k) for k in expected} == expected  # the training run carries them too
        # The checkout's HEAD when the run trained (others may commit while this module runs).
        commit = version.tags["sluice.git_commit"]
        assert run_tags["sluice.git_commit"] == commit
        assert is_ancestor(lifecycle["head_before"], commit) and is_ancestor(commit, git_head()), commit
