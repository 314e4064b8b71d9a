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
    "assets": {d.dag_id: {
        "schedule": sorted(a.name for a in getattr(getattr(d.timetable, "asset_condition", None), "objects", ())),
        "outlets": {t.task_id: sorted(o.name for o in t.outlets) for t in d.tasks if t.outlets},
    } for d in bag.dags.values()},
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


def test_train_model_trains_candidates_registers_the_best_then_evaluates_and_promotes(parsed):
    tasks = parsed["dags"]["train_model"]
    assert set(tasks) == {"choose_partition", "collect_lineage", "plan_candidates", "train_candidate",
                          "register_best", "evaluate", "promote"}
    assert tasks["collect_lineage"]["upstream"] == ["choose_partition"]
    assert tasks["train_candidate"]["upstream"] == ["choose_partition", "collect_lineage", "plan_candidates"]
    assert tasks["register_best"]["upstream"] == ["collect_lineage", "train_candidate"]
    assert tasks["evaluate"]["upstream"] == ["choose_partition", "register_best"]
    assert tasks["promote"]["upstream"] == ["evaluate"]


def test_train_images_is_train_model_with_the_xray_plan_and_training(parsed):
    tasks = parsed["dags"]["train_images"]
    assert set(tasks) == {"choose_partition", "collect_lineage", "plan_architectures", "train_architecture",
                          "register_best", "evaluate", "promote"}
    assert tasks["train_architecture"]["upstream"] == ["choose_partition", "collect_lineage", "plan_architectures"]
    assert tasks["register_best"]["upstream"] == ["collect_lineage", "train_architecture"]
    assert tasks["evaluate"]["upstream"] == ["choose_partition", "register_best"]
    assert tasks["promote"]["upstream"] == ["evaluate"]


def test_the_image_pipeline_runs_on_its_own_assets(parsed):
    assets = parsed["assets"]
    assert parsed["dags"]["prepare_images"]["prepare"]["upstream"] == ["wait_for_new_images"]
    assert assets["prepare_images"]["outlets"] == {"prepare": ["xray_preprocessed"]}
    assert assets["train_images"]["schedule"] == ["xray_preprocessed"]
    assert assets["train_images"]["outlets"] == {"promote": ["xray_champion"]}
    assert assets["deploy_xray"]["schedule"] == ["xray_champion"]


def test_promote_model_chooses_then_promotes(parsed):
    tasks = parsed["dags"]["promote_model"]
    assert set(tasks) == {"choose", "promote"}
    assert tasks["promote"]["upstream"] == ["choose"]


def test_a_new_champion_is_what_schedules_deploy_model(parsed):
    # Both DAGs that move the champion announce it; deploy_model runs on that announcement.
    assets = parsed["assets"]
    assert assets["deploy_model"]["schedule"] == ["wachttijden_champion"]
    assert assets["train_model"]["outlets"] == {"promote": ["wachttijden_champion"]}
    assert assets["promote_model"]["outlets"] == {"promote": ["wachttijden_champion"]}
    assert assets["train_model"]["schedule"] == ["wachttijden_preprocessed"]


def test_every_task_retries(parsed):
    no_retries = [f"{d}.{t}" for d, tasks in parsed["dags"].items() for t, v in tasks.items() if v["retries"] < 1]
    assert no_retries == []
