"""prepare_dataset and train_model run through Airflow (dag.test) against a real MLflow server and data lake."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, free_port

pytestmark = pytest.mark.slow
RAW = "wachttijden/wachttijden.csv"


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(str(REPO_ROOT / "src" / "pipelines"), bundle_path=REPO_ROOT / "src")
    assert not bag.import_errors
    return bag.dags[dag_id]


@pytest.fixture(scope="module")
def platform(airflow_db, mlflow_server, small_raw_csv, tmp_path_factory):
    """Airflow Variables (as AIRFLOW_VAR_* env) pointing at a fresh lake and the test MLflow server."""
    from tasks.data.datalake import open_datalake
    from tests.conftest import isolate_mlflow_client, reset_mlflow_client

    lake_dir = tmp_path_factory.mktemp("lake")
    open_datalake(str(lake_dir)).write_bytes("raw", RAW, small_raw_csv.read_bytes())
    env = {
        "AIRFLOW_VAR_DATALAKE_URL": str(lake_dir),
        "AIRFLOW_VAR_MLFLOW_TRACKING_URI": mlflow_server,
        "AIRFLOW_VAR_RAW_FILE": RAW,
        "AIRFLOW_VAR_TRAIN_CONFIG": json.dumps({"epochs": 2, "batch_size": 256}),
    }
    with pytest.MonkeyPatch.context() as mp:
        # The tests below read the registry through MLFLOW_TRACKING_URI; the tasks (run in this
        # process) point MLflow at the same server. Both end with this module.
        isolate_mlflow_client(mp, mlflow_server)
        for key, value in env.items():
            mp.setenv(key, value)
        try:
            yield {"lake_dir": lake_dir, "mlflow": mlflow_server}
        finally:
            reset_mlflow_client()


@pytest.fixture(scope="module")
def trained(platform):
    """One prepare_dataset run and one train_model run, shared by the assertions below."""
    prepared = load_dag("prepare_dataset").test()
    trained = load_dag("train_model").test()
    return {"prepare": prepared, "train": trained, **platform}


def test_both_dag_runs_succeed_and_write_their_own_partition(trained):
    from tasks.data.datalake import open_datalake
    from tasks.data.prepare import complete_partitions, partition_for

    assert trained["prepare"].state == "success"
    assert trained["train"].state == "success"
    lake = open_datalake(str(trained["lake_dir"]))
    assert complete_partitions(lake) == [partition_for(trained["prepare"].run_id)]


def test_the_best_candidate_is_registered_as_champion_and_challenger(trained):
    from mlflow import MlflowClient

    client = MlflowClient(trained["mlflow"])
    champion = client.get_model_version_by_alias("wachttijden", "champion")
    challenger = client.get_model_version_by_alias("wachttijden", "challenger")
    assert champion.version == challenger.version == "1"
    run = client.get_run(champion.run_id)
    assert {"validation_mae", "validation_rmse", "test_mae", "test_rmse"} <= set(run.data.metrics)
    assert 0 < run.data.metrics["validation_mae"] < 10  # weeks; a constant predictor is far worse
    artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert "training_curves.png" in artifacts
    # Both candidates were trained and logged as their own runs.
    # (Other tests log candidates into the same experiment on the session's server: only this partition's count.)
    runs = [r for r in client.search_runs([run.info.experiment_id])
            if r.data.params.get("partition") == run.data.params["partition"]]
    assert {r.data.params["name"] for r in runs} == {"compact", "wide"}


def test_the_registered_model_has_a_signature_and_an_input_example(trained):
    import mlflow

    info = mlflow.models.get_model_info("models:/wachttijden@champion")
    assert [c.name for c in info.signature.inputs] == ["TYPE_WACHTTIJD", "SPECIALISME", "ROAZ_REGIO",
                                                       "TYPE_ZORGINSTELLING"]
    assert info.saved_input_example_info is not None


def test_the_same_raw_content_again_prepares_nothing_and_emits_no_dataset_event(trained):
    from tasks.data import ledger
    from tasks.data.datalake import open_datalake
    from tasks.data.prepare import complete_partitions, partition_for

    lake = open_datalake(str(trained["lake_dir"]))
    before = complete_partitions(lake)
    # No watching: nothing new is there to wait for (the local schedule's runs watch for minutes).
    run = load_dag("prepare_dataset").test(run_conf={"watch_minutes": 0})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success"
    assert states["check_new"] == "skipped" and states["split"] == "skipped"
    assert complete_partitions(lake) == before
    entry = ledger.processed(lake, "wachttijden", ledger.content_digest(lake.read_bytes("raw", RAW)))
    assert entry["run_id"] == trained["prepare"].run_id
    assert entry["partition"] == partition_for(trained["prepare"].run_id)


def test_a_corrupt_raw_file_fails_prepare_dataset_and_leaves_preprocessed_untouched(trained):
    from tasks.data.datalake import open_datalake
    from tasks.data.prepare import partition_for

    lake = open_datalake(str(trained["lake_dir"]))
    before = {p: lake.read_bytes("preprocessed", p) for p in lake.list("preprocessed")}
    good_raw = lake.read_bytes("raw", RAW)
    lake.write_bytes("raw", "wachttijden/corrupt.csv", good_raw.replace(b";", b","))
    run = load_dag("prepare_dataset").test(run_conf={"raw_file": "wachttijden/corrupt.csv"})
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["validate"] == "failed" and states["split"] != "success"
    partition = partition_for(run.run_id)
    report = lake.read_bytes("intermediate", f"wachttijden/{partition}/validation.txt").decode()
    assert "FAILED" in report and "wrong separator" in report
    assert {p: lake.read_bytes("preprocessed", p) for p in lake.list("preprocessed")} == before
    assert lake.read_bytes("raw", RAW) == good_raw


@pytest.fixture(scope="module")
def champion_server(trained, tmp_path_factory):
    """The model server (serving venv) loading models:/wachttijden@champion from the registry."""
    from tests.conftest import SERVING_PYTHON
    from tests.support.processes import http_ok, start_process, stop_process, wait_until

    if not SERVING_PYTHON.exists():
        pytest.skip("the serving environment .venv-serving is missing: run scripts/setup.sh dev")
    port = free_port()
    log = tmp_path_factory.mktemp("serving") / "server.log"
    proc = start_process(
        [str(SERVING_PYTHON), "-m", "serving.model_server", "--model-uri", "models:/wachttijden@champion",
         "--model-name", "wachttijden", "--http-port", str(port)],
        log_path=log, env={"MLFLOW_TRACKING_URI": trained["mlflow"], "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/v2/models/wachttijden/ready"), timeout=180, what="model server",
                   proc=proc, log_path=log)
        yield url
    finally:
        stop_process(proc)


def test_the_champion_serves_v2_and_v1_predictions_over_http(champion_server):
    import requests

    body = json.loads((REPO_ROOT / "src" / "tests" / "data" / "testdata.json").read_text())
    v2 = requests.post(f"{champion_server}/v2/models/wachttijden/infer", json=body, timeout=30)
    assert v2.status_code == 200, v2.text
    output = v2.json()["outputs"][0]
    assert output["shape"] == [3] and len(output["data"]) == 3
    assert all(0 <= p < 60 for p in output["data"])  # weeks
    rows = [dict(zip([i["name"] for i in body["inputs"]], values, strict=True))
            for values in zip(*[i["data"] for i in body["inputs"]], strict=True)]
    v1 = requests.post(f"{champion_server}/v1/models/wachttijden:predict", json={"instances": rows}, timeout=30)
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == pytest.approx(output["data"], abs=1e-4)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [{"name": "TYPE_WACHTTIJD", "shape": [1], "datatype": "BYTES", "data": ["Polikliniek"]}]},
         "SPECIALISME"),
        ({"instances": [{"TYPE_WACHTTIJD": "Polikliniek", "SPECIALISME": "Cardiologie (320)",
                         "ROAZ_REGIO": "Atlantis", "TYPE_ZORGINSTELLING": "Ziekenhuis"}]}, "Atlantis"),
    ],
)
def test_bad_requests_get_a_4xx_that_names_the_problem(champion_server, body, fragment):
    import requests

    path = "/v2/models/wachttijden/infer" if "inputs" in body else "/v1/models/wachttijden:predict"
    response = requests.post(f"{champion_server}{path}", json=body, timeout=30)
    assert 400 <= response.status_code < 500
    assert fragment in response.text
    assert requests.get(f"{champion_server}/v2/health/ready", timeout=10).ok


def _prediction_line(request_id: str, role: str, version: str, output: float, status: str = "ok") -> str:
    return json.dumps({
        "timestamp": "2026-11-23T12:00:00.000Z", "request_id": request_id, "role": role,
        "model_name": "wachttijden", "model_version": version, "inputs": {"TYPE_WACHTTIJD": ["Polikliniek"]},
        "outputs": [output] if status == "ok" else None, "latency_ms": 5.0, "status": status,
        "error": None if status == "ok" else "boom",
    })


def test_compare_shadow_publishes_the_report_to_mlflow_and_beside_the_logs(platform, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    lines = [
        _prediction_line("a", "champion", "1", 5.0), _prediction_line("a", "shadow", "2", 5.5),
        _prediction_line("b", "champion", "1", 8.0), _prediction_line("b", "shadow", "2", 11.0),
        _prediction_line("c", "champion", "1", 3.0), _prediction_line("c", "shadow", "2", 0, status="error"),
    ]
    (tmp_path / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("AIRFLOW_VAR_LOCAL_RUN_DIR", str(tmp_path))
    run = load_dag("compare_shadow").test()
    assert run.state == "success"
    markdown = (tmp_path / "shadow_report.md").read_text()
    assert markdown.startswith("# Shadow comparison") and "| 1 | boom |" in markdown
    client = MlflowClient(platform["mlflow"])
    experiment = client.get_experiment_by_name("wachttijden-shadow")
    (shadow_run,) = client.search_runs([experiment.experiment_id])
    assert {"shadow_report.md", "shadow_report.html", "shadow_report.json"} <= {
        a.path for a in client.list_artifacts(shadow_run.info.run_id)}
    (tmp_path / "dl").mkdir()
    downloaded = client.download_artifacts(shadow_run.info.run_id, "shadow_report.json", str(tmp_path / "dl"))
    report = json.loads(Path(downloaded).read_text())
    assert report["shadow_failures"] == 1
    assert report["mean_abs_diff"] == pytest.approx((0.5 + 3.0) / 2)


def test_compare_shadow_fails_without_retry_when_there_are_no_logs(platform, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_LOCAL_RUN_DIR", str(tmp_path))
    run = load_dag("compare_shadow").test()
    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert ti.try_number == 1


def test_train_model_fails_at_once_without_retry_when_mlflow_is_down(
    airflow_db, mlflow_client_env, tmp_path, monkeypatch, capfd
):
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_VAR_MLFLOW_TRACKING_URI", down)
    monkeypatch.setenv("AIRFLOW_VAR_DATALAKE_URL", str(tmp_path / "lake"))
    dag = load_dag("train_model")
    start = time.monotonic()
    run = dag.test(run_conf={"partition": "run=absent"})
    seconds = time.monotonic() - start
    assert run.state == "failed"
    trained = [ti for ti in run.get_task_instances() if ti.task_id == "train_candidate"]
    assert len(trained) == 2
    assert {(ti.state, ti.try_number) for ti in trained} == {("failed", 1)}  # no Airflow retry either
    # Two candidates, scheduling and task start-up included; the retry delay alone would be 30 s.
    assert seconds < 30, f"train_model took {seconds:.0f} s to fail with MLflow down"
    assert f"AirflowFailException: the MLflow tracking server at {down} is unreachable" in capfd.readouterr().out
