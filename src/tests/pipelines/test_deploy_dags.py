"""The deploy DAGs: they parse cheaply, wire resolve -> serve -> wait -> smoke, and validate their params."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.processes import REPO_ROOT

DAG_MODULES = ("pipelines.deploy_model", "pipelines.deploy_xray", "pipelines.deploy_traffic_mirroring")
HEAVY = ("tensorflow", "keras", "mlflow", "kserve", "kubernetes", "yaml", "tasks.deploy", "tasks.deploy.kubernetes")

# A fresh interpreter, so the modules loaded are the DAG files' own and not the test session's.
_IMPORT = """
import json, sys, time, importlib
sys.path.insert(0, sys.argv[1])
import airflow.sdk  # the DAG files' one legitimate import
before = set(sys.modules)
start = time.perf_counter()
for name in sys.argv[2].split(","):
    importlib.import_module(name)
print(json.dumps({"seconds": time.perf_counter() - start, "loaded": sorted(set(sys.modules) - before)}))
"""


@pytest.fixture(scope="module")
def parse_report() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT, str(REPO_ROOT / "src"), ",".join(DAG_MODULES)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dags(airflow_db) -> dict:
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(
        str(REPO_ROOT / "src" / "pipelines"), bundle_path=REPO_ROOT / "src", bundle_name="dags-folder"
    )
    assert not {k: v for k, v in bag.import_errors.items() if "deploy_" in k}
    return {d: bag.dags[d] for d in ("deploy_model", "deploy_xray", "deploy_traffic_mirroring")}


class TestParseTime:
    def test_should_import_no_heavy_library(self, parse_report):
        heavy = [m for m in parse_report["loaded"] if m.startswith(HEAVY)]
        assert heavy == [], f"imported at parse time: {heavy}"

    def test_should_parse_fast(self, parse_report):
        assert parse_report["seconds"] < 2.0

    def test_should_not_read_variables_at_parse_time(self):
        for module in DAG_MODULES:
            source = (REPO_ROOT / "src" / (module.replace(".", "/") + ".py")).read_text()
            assert "Variable.get" not in source and "load_settings()" not in source.split("def ")[0]


class TestDeployModelDag:
    def test_should_wire_resolve_serve_wait_smoke(self, dags):
        dag = dags["deploy_model"]
        # Scheduled on the new-champion asset (a promotion deploys by itself); triggering by hand still works.
        assert [a.name for a in dag.timetable.asset_condition.objects] == ["wachttijden_champion"]
        assert {"sluice", "deploy"} <= set(dag.tags)
        assert dag.max_active_runs == 1
        upstream = {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
        assert upstream == {
            "resolve": [],
            "serve": ["resolve"],
            "wait_ready": ["serve"],
            "smoke_test": ["wait_ready"],
        }
        assert all(t.retries >= 1 for t in dag.tasks)

    def test_should_default_to_the_champion_alias(self, dags):
        params = dags["deploy_model"].params
        assert params["model_ref"] == "champion"

    @pytest.mark.parametrize("value", ["champion", "challenger", "3", "my_alias-2"])
    def test_should_accept_an_alias_or_a_version(self, dags, value):
        param = dags["deploy_model"].params.get_param("model_ref")
        assert param.resolve(value) == value

    @pytest.mark.parametrize("value", ["", "models:/x/1", "a b", 3])
    def test_should_reject_anything_else(self, dags, value):
        from airflow.sdk.exceptions import ParamValidationError

        param = dags["deploy_model"].params.get_param("model_ref")
        with pytest.raises(ParamValidationError):
            param.resolve(value)


class TestDeployXrayDag:
    def test_should_be_the_same_deploy_for_the_xray_champion(self, dags):
        xray, tabular = dags["deploy_xray"], dags["deploy_model"]
        assert [a.name for a in xray.timetable.asset_condition.objects] == ["xray_champion"]
        assert {"sluice", "deploy", "xray"} <= set(xray.tags) and xray.max_active_runs == 1
        wiring = [{t.task_id: sorted(t.upstream_task_ids) for t in d.tasks} for d in (xray, tabular)]
        assert wiring[0] == wiring[1]
        assert xray.params["model_ref"] == "champion"
        assert all(t.retries >= 1 for t in xray.tasks)

    def test_should_pass_its_use_case_to_every_step(self):
        # The DAG file is one call of the shared factory; the use case is what differs.
        source = (REPO_ROOT / "src" / "pipelines" / "deploy_xray.py").read_text()
        assert 'deploy_dag(dag_id="deploy_xray", use_case="xray", champion=CHAMPION_XRAY' in source
        assert "@task" not in source


class TestDeployTrafficMirroringDag:
    def test_should_resolve_both_then_serve_wait_smoke(self, dags):
        dag = dags["deploy_traffic_mirroring"]
        assert {"sluice", "deploy", "mirroring"} <= set(dag.tags)
        upstream = {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
        assert upstream == {
            "resolve_champion": [],
            "resolve_challenger": [],
            "serve": ["resolve_challenger", "resolve_champion"],
            "wait_ready": ["serve"],
            "smoke_test": ["wait_ready"],
        }

    def test_should_mirror_either_use_case(self, dags):
        from airflow.sdk.exceptions import ParamValidationError

        assert dags["deploy_traffic_mirroring"].params["use_case"] == "wachttijden"
        param = dags["deploy_traffic_mirroring"].params.get_param("use_case")
        assert param.resolve("xray") == "xray"
        with pytest.raises(ParamValidationError):
            param.resolve("cats")

    def test_should_default_to_the_aliases_and_full_mirroring(self, dags):
        params = dags["deploy_traffic_mirroring"].params
        assert (params["champion_ref"], params["challenger_ref"], params["mirror_percent"]) == (
            "champion",
            "challenger",
            100.0,
        )

    @pytest.mark.parametrize("value,ok", [(0, True), (12.5, True), (100, True), (-1, False), (100.1, False)])
    def test_should_bound_the_mirrored_share(self, dags, value, ok):
        from airflow.sdk.exceptions import ParamValidationError

        param = dags["deploy_traffic_mirroring"].params.get_param("mirror_percent")
        if ok:
            assert param.resolve(value) == value
        else:
            with pytest.raises(ParamValidationError):
                param.resolve(value)
