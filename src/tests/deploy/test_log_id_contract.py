"""Airflow must find task logs where Filebeat ships them: same log_id, offset, host field and index."""

from __future__ import annotations

import configparser
import copy
import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import filebeat_sim
from tests.deploy.conftest import DEPLOY_DIR, REPO_ROOT, one

AIRFLOW_NAMESPACE = "airflow"  # deploy-airflow.sh installs the release there
ROUNDTRIP = Path(__file__).with_name("airflow_log_roundtrip.py")


def airflow_cfg(rendered: list[dict[str, Any]]) -> str:
    return one(rendered, "ConfigMap", "airflow-config")["data"]["airflow.cfg"]


def es_section(rendered: list[dict[str, Any]]) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(airflow_cfg(rendered))
    return dict(parser["elasticsearch"])


def beat_config(overlay: list[dict[str, Any]]) -> dict[str, Any]:
    return one(overlay, "Beat", "filebeat")["spec"]["config"]


def index_templates() -> list[dict[str, Any]]:
    folder = DEPLOY_DIR / "elasticsearch" / "index-templates"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def provider_default_log_id_template() -> str:
    """Airflow 3's own default, from the installed Elasticsearch provider."""
    handler = pytest.importorskip("airflow.providers.elasticsearch.log.es_task_handler")
    return handler.ElasticsearchRemoteLogIO.__attrs_attrs__.log_id_template.default


def roundtrip(
    tmp_path: Path, rendered: list[dict[str, Any]], cases: list[dict[str, Any]], records: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Run every case through one Airflow process configured by the rendered airflow.cfg."""
    home = tmp_path / "airflow-home"
    home.mkdir(exist_ok=True)
    (home / "airflow.cfg").write_text(airflow_cfg(rendered))
    for case in cases:
        ti = case["ti"]
        pod = f"{ti['dag_id'].replace('_', '-')}-{ti['task_id'].replace('_', '-')}-x7k2p"
        case["log_file"] = str(home / "logs" / case["name"] / "task.log")
        case["kubernetes"] = {"namespace": AIRFLOW_NAMESPACE, "pod": {"name": pod}, "container": {"name": "base"}}
        case["log_path"] = f"/var/log/containers/{pod}_{AIRFLOW_NAMESPACE}_base-0123456789abcdef.log"
    params = {"cases": cases, "records": records, "day": "2026-01-02", "index_templates": index_templates()}
    (tmp_path / "params.json").write_text(json.dumps(params))
    certifi = pytest.importorskip("certifi")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT / "src"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # The shape deploy-airflow.sh writes into Secret sluice-airflow-elasticsearch.
        "AIRFLOW__ELASTICSEARCH__HOST": "https://sluice-airflow-log-reader:x@sluice-es-http.logging.svc:9200",
        # In the cluster the CA is a mounted Secret; any readable bundle builds the client here.
        "AIRFLOW__ELASTICSEARCH_CONFIGS__CA_CERTS": certifi.where(),
    }
    result = subprocess.run(
        [sys.executable, str(ROUNDTRIP), str(tmp_path / "params.json")],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return {r["name"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])}


RECORDS = [
    {"timestamp": "2026-01-02T10:00:00.100000Z", "level": "info", "event": "Training candidate 1 of 3",
     "logger": "tasks.training.train", "chan": "stdout"},
    {"timestamp": "2026-01-02T10:00:01.200000Z", "level": "warning", "event": "val_loss stopped improving",
     "logger": "tasks.training.train"},
    {"timestamp": "2026-01-02T10:00:02.300000Z", "level": "info", "event": "Registered model wachttijden v7",
     "logger": "tasks.training.train"},
]

TASK_INSTANCES = {
    "scheduled": {"dag_id": "train_model", "task_id": "train", "run_id": "scheduled__2026-01-01T00:00:00+00:00",
                  "map_index": -1, "try_number": 1},
    "mapped-retry": {"dag_id": "train_model", "task_id": "train_candidate",
                     "run_id": "manual__2026-01-02T09:59:58.123456+00:00", "map_index": 2, "try_number": 3},
}


class TestConfigsAgree:
    """Static checks on the two configs, each naming the setting that would break the match."""

    @pytest.mark.parametrize("env", ["dev", "prod"])
    def test_log_id_template_is_airflow_3_form(self, airflow_rendered, env):
        template = es_section(airflow_rendered(env))["log_id_template"]
        assert template == provider_default_log_id_template()
        assert "execution_date" not in template

    @pytest.mark.parametrize("env", ["dev", "prod"])
    def test_task_pods_print_their_own_log_id_as_json(self, airflow_rendered, env):
        section = es_section(airflow_rendered(env))
        assert section["write_stdout"] == "True"
        assert section["json_format"] == "True"
        assert section["write_to_es"] == "False"

    @pytest.mark.parametrize("env", ["dev", "prod"])
    def test_filebeat_decodes_airflow_json_into_the_root(self, overlay_rendered, env):
        decoders = [
            p["decode_json_fields"] for p in beat_config(overlay_rendered(env, "elasticsearch"))["processors"]
            if "decode_json_fields" in p
            and filebeat_sim.condition_matches(p["decode_json_fields"]["when"],
                                               {"kubernetes": {"namespace": AIRFLOW_NAMESPACE}})
        ]
        assert len(decoders) == 1
        assert decoders[0]["target"] == "" and decoders[0]["overwrite_keys"] is True

    @pytest.mark.parametrize("env", ["dev", "prod"])
    def test_index_patterns_cover_the_index_filebeat_writes(self, airflow_rendered, overlay_rendered, env):
        output = filebeat_sim.cfg(beat_config(overlay_rendered(env, "elasticsearch")), "output.elasticsearch")
        event = {"@timestamp": "2026-01-02T10:00:00Z", "log_id": "d-t-r--1-1", "offset": 1}
        index = filebeat_sim.select_index(output, event)
        assert filebeat_sim.index_matches(index, es_section(airflow_rendered(env))["index_patterns"])

    def test_index_template_maps_log_id_as_keyword_and_offset_as_number(self, airflow_rendered):
        section = es_section(airflow_rendered("dev"))
        patterns = section["index_patterns"]
        covering = [t for t in index_templates() if any(fnmatch.fnmatch(patterns, p) for p in t["index_patterns"])]
        assert covering, f"no index template for {patterns}"
        types = filebeat_sim.mapping_types(covering[0])
        assert types["log_id"] == "keyword"
        assert types[section["offset_field"]] in {"long", "integer"}
        assert types[section["host_field"]] == "keyword"

    def test_airflow_reader_role_can_read_the_task_log_indices(self, airflow_rendered):
        roles = yaml.safe_load((DEPLOY_DIR / "base" / "elasticsearch" / "roles.yml").read_text())
        names = [n for grant in roles["sluice_airflow_log_reader"]["indices"] for n in grant["names"]]
        assert es_section(airflow_rendered("dev"))["index_patterns"] in names
        writer = [n for g in roles["sluice_filebeat_writer"]["indices"] for n in g["names"]]
        assert "airflow-logs-*" in writer


@pytest.fixture(scope="module", params=["dev", "prod"])
def roundtrips(request, tmp_path_factory, airflow_rendered, overlay_rendered):
    """All cases for one environment, plus a control whose Filebeat does not decode JSON."""
    env = request.param
    config = beat_config(overlay_rendered(env, "elasticsearch"))
    cases = [{"name": name, "ti": ti, "beat_config": config} for name, ti in TASK_INSTANCES.items()]
    undecoded = copy.deepcopy(config)
    undecoded["processors"] = [p for p in undecoded["processors"] if "decode_json_fields" not in p]
    cases.append({"name": "control-undecoded", "ti": TASK_INSTANCES["scheduled"], "beat_config": undecoded})
    return roundtrip(tmp_path_factory.mktemp(f"roundtrip-{env}"), airflow_rendered(env), cases, RECORDS)


@pytest.mark.parametrize("case", sorted(TASK_INSTANCES))
def test_airflow_reads_back_exactly_what_filebeat_shipped(roundtrips, case):
    ti = TASK_INSTANCES[case]
    result = roundtrips[case]

    expected = "{dag_id}-{task_id}-{run_id}-{map_index}-{try_number}".format(**ti)
    assert result["expected_log_id"] == expected
    shipped_ids = {doc.get("log_id") for _, doc in result["shipped"]}
    assert shipped_ids == {expected}, "Filebeat would store a different log_id than Airflow asks for"
    assert [doc["offset"] for _, doc in result["shipped"]] == [1, 2, 3]

    (search,) = result["searches"]
    assert all(filebeat_sim.index_matches(index, search["index"]) for index, _ in result["shipped"])
    events = [m["event"] for m in result["messages"]]
    assert events == [r["event"] for r in RECORDS], result["messages"]
    assert any(ti["dag_id"].replace("_", "-") in line for line in result["header"]), result["header"]


def test_without_json_decoding_airflow_finds_nothing(roundtrips):
    """The round trip can fail: raw lines (no decoding) carry no log_id, so the reader finds nothing."""
    result = roundtrips["control-undecoded"]
    assert all("log_id" not in doc for _, doc in result["shipped"])
    assert len(result["messages"]) == 1
    assert all("not found in Elasticsearch" in m["event"] for m in result["messages"]), result["messages"]
