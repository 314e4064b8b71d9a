"""Open and closed categories when serving: an unseen SPECIALISME is answered through the model's
out-of-vocabulary bucket, flagged in the prediction log and counted on /metrics; an unknown value of a
closed feature stays a 400 naming column and value. The fast path and KServe's path answer alike."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from models.wachttijden.schema import FEATURES, OPEN_FEATURES
from serving.batcher import BATCH_RTOL
from tests.serving.logs import LOG_WAIT_S, wait_for_request
from tests.serving.servers import model_servers
from tests.serving.small_model import CATEGORIES, SAMPLE_ROWS

ROW = SAMPLE_ROWS[0]
CLOSED = [name for name in FEATURES if name not in OPEN_FEATURES]
UNSEEN = ["Tandheelkunde", "Neurochirurgie"]


@pytest.fixture(scope="module")
def server_pair(champion_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The server with its fast path and the same server answering everything through KServe's app."""
    log_dir = tmp_path_factory.mktemp("open-categories")
    specs = {
        "fast": {"model_uri": champion_model_dir, "prediction_log": log_dir / "fast.jsonl"},
        "kserve": {
            "model_uri": champion_model_dir,
            "prediction_log": log_dir / "kserve.jsonl",
            "extra_args": ["--no-fast-path"],
        },
    }
    with model_servers(specs, log_dir) as services:
        for name, service in services.items():
            service.prediction_log = specs[name]["prediction_log"]
        yield services


@pytest.fixture(scope="module")
def local_model(champion_model_dir: Path):
    from models.wachttijden.model import WachttijdenModel

    return WachttijdenModel.load(champion_model_dir / "artifacts" / "model_files")


def rows_with_unseen() -> list[dict]:
    return [{**ROW, "SPECIALISME": UNSEEN[0]}, ROW, {**ROW, "SPECIALISME": UNSEEN[1]}]


def v1(rows: list[dict]) -> dict:
    return {"instances": rows}


def v2(rows: list[dict]) -> dict:
    return {
        "inputs": [
            {"name": name, "datatype": "BYTES", "shape": [len(rows)], "data": [row[name] for row in rows]}
            for name in FEATURES
        ]
    }


def post(service, kind: str, body: dict, request_id: str) -> requests.Response:
    path = "/v1/models/wachttijden:predict" if kind == "v1" else "/v2/models/wachttijden/infer"
    url = service.url + path
    return requests.post(url, data=json.dumps(body).encode(), headers={"x-request-id": request_id}, timeout=30)


def predictions_of(kind: str, response: requests.Response) -> list[float]:
    content = response.json()
    return content["predictions"] if kind == "v1" else content["outputs"][0]["data"]


def unseen_rows_counted(service, feature: str = "SPECIALISME") -> float:
    """The server's sluice_unseen_category_rows_total for `feature` (0 before the first one)."""
    text = requests.get(f"{service.url}/metrics", timeout=10).text
    pattern = rf'^sluice_unseen_category_rows_total\{{[^}}]*feature="{feature}"[^}}]*\}} (\S+)$'
    match = re.search(pattern, text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for_count(service, at_least: float) -> float:
    """The counter once it reaches `at_least`: it is counted when the log line is written, after the answer."""
    deadline = time.monotonic() + LOG_WAIT_S
    while (value := unseen_rows_counted(service)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_the_model_declares_specialisme_open_and_the_rest_closed(local_model):
    assert local_model.open_features == ("SPECIALISME",)
    assert set(CLOSED) == {"TYPE_WACHTTIJD", "TYPE_ZORGINSTELLING", "ROAZ_REGIO"}
    assert not set(UNSEEN) & set(CATEGORIES["SPECIALISME"])


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_an_unseen_specialism_gets_the_out_of_vocabulary_prediction_on_both_paths(server_pair, local_model, kind):
    rows = rows_with_unseen()
    answers, records = {}, {}
    for name, service in server_pair.items():
        request_id = f"unseen-{kind}-{name}"
        response = post(service, kind, v1(rows) if kind == "v1" else v2(rows), request_id)
        assert response.status_code == 200, response.text
        answers[name] = response.json()
        (records[name],) = wait_for_request(service.prediction_log, request_id)
        predicted = predictions_of(kind, response)
        expected = local_model.predict_columns({n: [r[n] for r in rows] for n in FEATURES})
        np.testing.assert_allclose(predicted, expected, rtol=BATCH_RTOL, atol=0)
        # Both unseen values take the one out-of-vocabulary bucket: the same answer.
        assert predicted[0] == predicted[2] and predicted[0] != predicted[1]
    for record in records.values():
        assert record["status"] == "ok"
        assert record["unseen_categories"] == {"SPECIALISME": sorted(UNSEEN)}
        for field in ("timestamp", "latency_ms", "request_id"):
            record.pop(field)
    if kind == "v2":
        for answer in answers.values():
            answer.pop("id")
    assert answers["fast"] == answers["kserve"]
    assert records["fast"] == records["kserve"]


def test_unseen_rows_are_counted_on_metrics(server_pair):
    for service in server_pair.values():
        before = unseen_rows_counted(service)
        response = post(service, "v1", v1(rows_with_unseen()), "counted")
        assert response.status_code == 200, response.text
        # Two of the three rows hold an unseen specialism; the known row is not counted.
        assert wait_for_count(service, before + 2) == before + 2
        assert post(service, "v1", v1([ROW]), "not-counted").status_code == 200
        wait_for_request(service.prediction_log, "not-counted")
        assert unseen_rows_counted(service) == before + 2


@pytest.mark.parametrize("column", CLOSED)
def test_a_closed_feature_keeps_its_400_naming_column_and_value(server_pair, column):
    # The unseen specialism in the same row is not an error; only the closed column is named.
    row = {**ROW, column: "Onbekend-9", "SPECIALISME": UNSEEN[0]}
    answers = {}
    for name, service in server_pair.items():
        for kind, body in (("v1", v1([row])), ("v2", v2([row]))):
            request_id = f"closed-{column}-{kind}-{name}"
            response = post(service, kind, body, request_id)
            assert response.status_code == 400, response.text
            message = response.json()["error"]
            assert column in message and "Onbekend-9" in message, message
            assert "SPECIALISME" not in message and UNSEEN[0] not in message
            answers[(name, kind)] = message
            (record,) = wait_for_request(service.prediction_log, request_id)
            assert record["status"] == "error" and record["unseen_categories"] is None
    assert answers[("fast", "v1")] == answers[("kserve", "v1")] == answers[("fast", "v2")]
