"""Index templates, retention, users and Kibana saved objects agree with what Filebeat writes."""

from __future__ import annotations

import fnmatch
import json

import yaml

from tests.deploy import filebeat_sim
from tests.deploy.conftest import DEPLOY_DIR, one

ES_DIR = DEPLOY_DIR / "elasticsearch"


def templates() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((ES_DIR / "index-templates").glob("*.json"))}


def saved_objects() -> list[dict]:
    return [json.loads(line) for line in (ES_DIR / "kibana" / "saved-objects.ndjson").read_text().splitlines()]


def filebeat_indices(overlay) -> list[str]:
    output = filebeat_sim.cfg(one(overlay, "Beat", "filebeat")["spec"]["config"], "output.elasticsearch")
    return [rule["index"] for rule in output["indices"]] + [output["index"]]


def test_every_index_filebeat_writes_has_exactly_one_template(overlay_rendered):
    for index in filebeat_indices(overlay_rendered("dev", "elasticsearch")):
        name = filebeat_sim._format_index(index, "2026-01-02T00:00:00Z")
        covering = [t for t, body in templates().items()
                    if any(fnmatch.fnmatch(name, p) for p in body["index_patterns"])]
        assert len(covering) == 1, (name, covering)


def test_templates_use_the_retention_policy():
    policy = json.loads((ES_DIR / "ilm-policy.json").read_text())
    assert policy["policy"]["phases"]["delete"]["actions"] == {"delete": {}}
    for name, body in templates().items():
        assert body["template"]["settings"]["index.lifecycle.name"] == "sluice-logs", name


def test_filebeat_user_may_write_every_index_it_ships_to(overlay_rendered):
    roles = yaml.safe_load((DEPLOY_DIR / "base" / "elasticsearch" / "roles.yml").read_text())
    grants = roles["sluice_filebeat_writer"]["indices"]
    for index in filebeat_indices(overlay_rendered("dev", "elasticsearch")):
        name = filebeat_sim._format_index(index, "2026-01-02T00:00:00Z")
        assert any(fnmatch.fnmatch(name, p) and "create_doc" in g["privileges"]
                   for g in grants for p in g["names"]), name


def test_elasticsearch_users_are_wired_to_their_secrets(overlay_rendered):
    overlay = overlay_rendered("dev", "elasticsearch")
    es = one(overlay, "Elasticsearch", "sluice")
    assert {s["secretName"] for s in es["spec"]["auth"]["fileRealm"]} == {
        "sluice-filebeat-user", "sluice-airflow-log-reader"}
    assert one(overlay, "Secret", "sluice-es-roles")["metadata"]["namespace"] == "logging"
    beat = one(overlay, "Beat", "filebeat")
    container = beat["spec"]["daemonSet"]["podTemplate"]["spec"]["containers"][0]
    password = next(e for e in container["env"] if e["name"] == "FILEBEAT_ES_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": "sluice-filebeat-user", "key": "password"}
    output = filebeat_sim.cfg(beat["spec"]["config"], "output.elasticsearch")
    assert output["username"] == "sluice-filebeat" and output["password"] == "${FILEBEAT_ES_PASSWORD}"


def test_saved_objects_reference_data_views_that_exist_and_match_indices():
    objects = saved_objects()
    views = {o["id"]: o for o in objects if o["type"] == "index-pattern"}
    assert {v["attributes"]["title"] for v in views.values()} == {"airflow-logs-*", "sluice-predictions-*"}
    searches = [o for o in objects if o["type"] == "search"]
    assert {s["attributes"]["title"] for s in searches} == {"Airflow task logs", "Model prediction logs"}
    for search in searches:
        (reference,) = search["references"]
        assert reference["id"] in views
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["indexRefName"] == reference["name"]


def test_task_log_search_sorts_on_mapped_fields():
    (search,) = [o for o in saved_objects() if o["id"] == "sluice-airflow-task-logs"]
    types = filebeat_sim.mapping_types(templates()["airflow-logs"])
    for field, _ in search["attributes"]["sort"]:
        assert types[field] in {"keyword", "long", "date"}, field


def test_airflow_ui_links_to_the_saved_search(airflow_rendered):
    config = one(airflow_rendered("dev"), "ConfigMap", "airflow-config")["data"]["airflow.cfg"]
    assert "/app/discover#/view/sluice-airflow-task-logs" in config
    assert any(o["id"] == "sluice-airflow-task-logs" for o in saved_objects())


def test_prediction_logs_are_decoded_apart_from_ecs_fields(overlay_rendered):
    config = one(overlay_rendered("dev", "elasticsearch"), "Beat", "filebeat")["spec"]["config"]
    record = {"timestamp": "2026-01-02T10:00:00.000Z", "request_id": "r-1", "role": "champion",
              "model_name": "wachttijden", "model_version": "7", "inputs": {"SPECIALISME": ["Cardiologie"]},
              "outputs": [4.5], "latency_ms": 4.2, "status": "ok", "error": None}
    event = {"@timestamp": "2026-01-02T10:00:00Z", "message": json.dumps(record),
             "kubernetes": {"namespace": "models", "pod": {"name": "wachttijden-predictor-0"}}}
    filebeat_sim.run_processors(filebeat_sim.cfg(config, "processors"), event)
    assert event["prediction"] == record
    index = filebeat_sim.select_index(filebeat_sim.cfg(config, "output.elasticsearch"), event)
    assert index == "sluice-predictions-2026.01.02"
    types = filebeat_sim.mapping_types(templates()["sluice-predictions"])
    (search,) = [o for o in saved_objects() if o["id"] == "sluice-prediction-log-search"]
    for column in search["attributes"]["columns"]:
        assert column.removeprefix("prediction.") in record and column in types, column
