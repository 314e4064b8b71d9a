"""Every DAG file imports cleanly, wires the expected tasks, and keeps heavy imports out of parse time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.processes import REPO_ROOT

HEAVY_MODULES = ("tensorflow", "keras", "mlflow", "kserve", "kubernetes", "matplotlib", "azure.storage", "boto3")

# Parsed the way the dag-processor does (BundleDagBag puts the bundle root, src/, on sys.path),
# in a fresh interpreter so the modules it loads are the DAG files' own.
_PARSE = """
import json, sys, time
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
src = Path(sys.argv[1])
before = set(sys.modules)
start = time.perf_counter()
bag = BundleDagBag(str(src / "pipelines"), bundle_path=src, bundle_name="dags-folder")
seconds = time.perf_counter() - start
heavy = sorted({m.split(".")[0] if not m.startswith("azure.storage") else "azure.storage"
                for m in set(sys.modules) - before if m.startswith(tuple(sys.argv[2].split(",")))})
print(json.dumps({
    "errors": bag.import_errors, "seconds": seconds, "heavy": heavy,
    "dags": {d.dag_id: {t.task_id: {"retries": t.retries, "upstream": sorted(t.upstream_task_ids)}
                        for t in d.tasks} for d in bag.dags.values()},
}))
"""


@pytest.fixture(scope="module")
def parsed(airflow_db) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PARSE, str(REPO_ROOT / "src"), ",".join(HEAVY_MODULES)],
        capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_dag_file_imports_without_errors(parsed):
    assert parsed["errors"] == {}


def test_should_load_no_heavy_library_at_parse_time(parsed):
    assert parsed["heavy"] == [], f"imported while parsing DAG files: {parsed['heavy']}"


def test_prepare_dataset_wires_sensor_check_validate_clean_split(parsed):
    tasks = parsed["dags"]["prepare_dataset"]
    assert set(tasks) == {"wait_for_raw_file", "check_new", "validate", "clean", "split"}
    assert tasks["check_new"]["upstream"] == ["wait_for_raw_file"]
    assert tasks["validate"]["upstream"] == ["check_new"]
    assert tasks["clean"]["upstream"] == ["validate"]
    assert sorted(tasks["split"]["upstream"]) == ["clean", "validate"]


def test_train_model_trains_candidates_then_registers_the_best(parsed):
    tasks = parsed["dags"]["train_model"]
    assert set(tasks) == {"choose_partition", "plan_candidates", "train_candidate", "register_best"}
    assert tasks["train_candidate"]["upstream"] == ["choose_partition", "plan_candidates"]
    assert tasks["register_best"]["upstream"] == ["train_candidate"]


def test_every_task_retries(parsed):
    no_retries = [f"{d}.{t}" for d, tasks in parsed["dags"].items() for t, v in tasks.items() if v["retries"] < 1]
    assert no_retries == []
