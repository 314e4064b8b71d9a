"""The model server as a real process: predictions, metadata, every kind of bad request, logging, concurrency."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from models.wachttijden.schema import FEATURES
from serving.batcher import BATCH_RTOL
from tests.serving.logs import read_records, wait_for_records, wait_for_request
from tests.serving.servers import model_servers
from tests.serving.small_model import CATEGORIES, generated_rows

MAX_ROWS = 100
MAX_BODY = 64 * 1024
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server_pair(champion_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The server as run (with its fast path) and the same server answering everything through KServe's app."""
    log_dir = tmp_path_factory.mktemp("model-server")
    extra = ["--max-rows", str(MAX_ROWS), "--max-body-bytes", str(MAX_BODY), "--model-version", "7"]
    specs = {
        "fast": {"model_uri": champion_model_dir, "prediction_log": log_dir / "predictions.jsonl", "extra_args": extra},
        "kserve": {
            "model_uri": champion_model_dir,
            "prediction_log": log_dir / "kserve-predictions.jsonl",
            "extra_args": [*extra, "--no-fast-path"],
        },
    }
    with model_servers(specs, log_dir) as services:
        for name, service in services.items():
            service.prediction_log = specs[name]["prediction_log"]
        yield services


@pytest.fixture(scope="module")
def served(server_pair):
    return server_pair["fast"]


@pytest.fixture(scope="module")
def local_model(champion_model_dir: Path):
    from models.wachttijden.model import WachttijdenModel

    return WachttijdenModel.load(champion_model_dir / "artifacts" / "model_files")


def v2_body(frame, datatype: str = "BYTES") -> dict:
    return {
        "inputs": [
            {"name": name, "datatype": datatype, "shape": [len(frame)], "data": list(frame[name])}
            for name in FEATURES
        ]
    }


def v1_body(frame) -> dict:
    return {"instances": frame[list(FEATURES)].to_dict(orient="records")}


def infer_url(service, name: str = "wachttijden") -> str:
    return f"{service.url}/v2/models/{name}/infer"


def predict_url(service, name: str = "wachttijden") -> str:
    return f"{service.url}/v1/models/{name}:predict"


ROW = {
    "TYPE_WACHTTIJD": "Behandeling",
    "SPECIALISME": "Cardiologie",
    "ROAZ_REGIO": "Acute Zorgregio Oost",
    "TYPE_ZORGINSTELLING": "Ziekenhuis",
}


def one_row_v2(**overrides) -> dict:
    body = {"inputs": [{"name": n, "datatype": "BYTES", "shape": [1], "data": [v]} for n, v in ROW.items()]}
    for name, change in overrides.items():
        tensor = next(t for t in body["inputs"] if t["name"] == name)
        tensor.update(change)
    return body


# The server's answers against the model called in this process: a 1-row call here takes another
# kernel than the server's (padded) calls, so they may differ by one float32 step (see batcher.py).


class TestPredictions:
    def test_v2_matches_the_in_process_model(self, served, local_model):
        frame = generated_rows(9, seed=11)
        response = requests.post(infer_url(served), json=v2_body(frame), timeout=30)
        assert response.status_code == 200, response.text
        (output,) = response.json()["outputs"]
        assert output["name"] == "predictions" and output["datatype"] == "FP32" and output["shape"] == [9]
        expected = local_model.predict_columns(frame)
        np.testing.assert_allclose(output["data"], expected, rtol=BATCH_RTOL, atol=0)
        assert response.json()["model_version"] == "7"

    def test_v2_accepts_n_by_1_tensors(self, served, local_model):
        frame = generated_rows(3, seed=12)
        body = {
            "inputs": [
                {"name": n, "datatype": "BYTES", "shape": [3, 1], "data": [[v] for v in frame[n]]}
                for n in FEATURES
            ]
        }
        response = requests.post(infer_url(served), json=body, timeout=30)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(
            response.json()["outputs"][0]["data"], local_model.predict_columns(frame), rtol=BATCH_RTOL, atol=0
        )

    def test_v1_objects_and_lists_match_the_in_process_model(self, served, local_model):
        frame = generated_rows(5, seed=13)
        expected = local_model.predict_columns(frame)
        as_objects = requests.post(predict_url(served), json=v1_body(frame), timeout=30)
        as_lists = requests.post(
            predict_url(served), json={"instances": frame[list(FEATURES)].values.tolist()}, timeout=30
        )
        for response in (as_objects, as_lists):
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()["predictions"], expected, rtol=BATCH_RTOL, atol=0)

    def test_json_without_content_type_is_accepted(self, served, local_model):
        # tritonclient.http and other OIP clients post JSON without a Content-Type header.
        frame = generated_rows(2, seed=14)
        for url, body in ((infer_url(served), v2_body(frame)), (predict_url(served), v1_body(frame))):
            response = requests.post(url, data=json.dumps(body).encode(), timeout=30)
            assert "content-type" not in response.request.headers
            assert response.status_code == 200, response.text

    def test_concurrent_burst_returns_each_caller_its_own_rows(self, served, local_model):
        frames = [generated_rows(1 + i % 4, seed=100 + i) for i in range(48)]

        def call(frame):
            return requests.post(infer_url(served), json=v2_body(frame), timeout=60)

        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(call, frames))
        for frame, response in zip(frames, responses, strict=True):
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(
                response.json()["outputs"][0]["data"], local_model.predict_columns(frame), rtol=BATCH_RTOL, atol=0
            )


class TestMetadataAndHealth:
    def test_metadata_lists_inputs_and_output(self, served):
        metadata = requests.get(f"{served.url}/v2/models/wachttijden", timeout=10).json()
        assert metadata["inputs"] == [{"name": n, "datatype": "BYTES", "shape": [-1]} for n in FEATURES]
        assert metadata["outputs"] == [{"name": "predictions", "datatype": "FP32", "shape": [-1]}]

    def test_ready_endpoints(self, served):
        assert requests.get(f"{served.url}/v2/health/ready", timeout=10).json() == {"ready": True}
        assert requests.get(f"{served.url}/v2/models/wachttijden/ready", timeout=10).json()["ready"] is True


def _rows(n: int) -> dict:
    return {"instances": [ROW] * n}


# (name, url kind, body (dict/list → JSON, bytes → raw), headers, status, words the message must contain)
BAD_REQUESTS = [
    ("v2 malformed json", "v2", b'{"inputs": [', JSON, 400, ["malformed JSON"]),
    ("v1 malformed json", "v1", b'{"instances": [', JSON, 400, ["malformed JSON"]),
    ("v2 empty body", "v2", b"", JSON, 400, ["empty"]),
    ("v1 empty body", "v1", b"", JSON, 400, ["empty"]),
    ("v2 missing inputs", "v2", {"id": "x"}, JSON, 400, ["inputs", "required"]),
    ("v1 missing instances", "v1", {"rows": []}, JSON, 400, ["instances", "rows"]),
    ("v1 not an object", "v1", [ROW], JSON, 400, ["JSON object"]),
    ("v2 no inputs", "v2", {"inputs": []}, JSON, 400, ["no inputs"]),
    (
        "v2 missing feature",
        "v2",
        {"inputs": one_row_v2()["inputs"][:3]},
        JSON,
        400,
        ["missing inputs", "TYPE_ZORGINSTELLING"],
    ),
    (
        "v2 unknown input",
        "v2",
        {
            "inputs": [
                *one_row_v2()["inputs"],
                {"name": "LEEFTIJD", "datatype": "BYTES", "shape": [1], "data": ["x"]},
            ]
        },
        JSON,
        400,
        ["unknown inputs", "LEEFTIJD"],
    ),
    (
        "v1 missing feature",
        "v1",
        {"instances": [{k: v for k, v in ROW.items() if k != "ROAZ_REGIO"}]},
        JSON,
        400,
        ["instance 0", "missing features", "ROAZ_REGIO"],
    ),
    (
        "v1 unknown feature",
        "v1",
        {"instances": [{**ROW, "POSTCODE": "1234AB"}]},
        JSON,
        400,
        ["unknown features", "POSTCODE"],
    ),
    (
        "v2 null value",
        "v2",
        one_row_v2(SPECIALISME={"data": [None]}),
        JSON,
        400,
        ["SPECIALISME", "null", "row"],
    ),
    ("v1 null value", "v1", {"instances": [{**ROW, "ROAZ_REGIO": None}]}, JSON, 400, ["ROAZ_REGIO", "null"]),
    (
        "v2 wrong datatype",
        "v2",
        one_row_v2(SPECIALISME={"datatype": "FP32", "data": [1.0]}),
        JSON,
        400,
        ["SPECIALISME", "FP32", "BYTES"],
    ),
    (
        "v2 number in BYTES",
        "v2",
        one_row_v2(SPECIALISME={"data": [3]}),
        JSON,
        400,
        ["SPECIALISME", "strings"],
    ),
    (
        "v2 shape/data mismatch",
        "v2",
        one_row_v2(ROAZ_REGIO={"shape": [2]}),
        JSON,
        400,
        ["ROAZ_REGIO", "shape [2]", "holds 1"],
    ),
    (
        "v2 bad shape",
        "v2",
        one_row_v2(ROAZ_REGIO={"shape": [1, 2], "data": [["a", "b"]]}),
        JSON,
        400,
        ["ROAZ_REGIO", "[n, 1]"],
    ),
    (
        "v2 unequal lengths",
        "v2",
        one_row_v2(ROAZ_REGIO={"shape": [2], "data": ["Acute Zorgregio Oost", "Traumacentrum Noord"]}),
        JSON,
        400,
        ["different lengths", "ROAZ_REGIO=2", "SPECIALISME=1"],
    ),
    (
        "v2 empty batch",
        "v2",
        {"inputs": [{"name": n, "datatype": "BYTES", "shape": [0], "data": []} for n in FEATURES]},
        JSON,
        400,
        ["empty"],
    ),
    ("v1 empty batch", "v1", {"instances": []}, JSON, 400, ["empty"]),
    (
        # ROAZ_REGIO is closed; SPECIALISME is open (test_open_categories.py).
        "v2 unknown category",
        "v2",
        one_row_v2(ROAZ_REGIO={"data": ["Zeeland"]}),
        JSON,
        400,
        [
            "unknown categories",
            "ROAZ_REGIO",
            "Zeeland",
            f"knows {len(CATEGORIES['ROAZ_REGIO'])} values",
        ],
    ),
    (
        "v1 unknown category",
        "v1",
        {"instances": [{**ROW, "TYPE_ZORGINSTELLING": "Huisarts"}]},
        JSON,
        400,
        ["TYPE_ZORGINSTELLING", "Huisarts"],
    ),
    ("v1 too many rows", "v1", _rows(MAX_ROWS + 1), JSON, 413, [f"at most {MAX_ROWS}"]),
    (
        "v2 too many rows",
        "v2",
        {
            "inputs": [
                {"name": n, "datatype": "BYTES", "shape": [MAX_ROWS + 1], "data": [v] * (MAX_ROWS + 1)}
                for n, v in ROW.items()
            ]
        },
        JSON,
        413,
        [f"at most {MAX_ROWS}"],
    ),
    ("oversized body", "v1", b'{"instances": []' + b" " * MAX_BODY + b"}", JSON, 413, ["bytes"]),
    (
        "form content type",
        "v1",
        b"instances=1",
        {"content-type": "application/x-www-form-urlencoded"},
        400,
        ["not JSON"],
    ),
    ("unknown model", "v2-other", one_row_v2(), JSON, 404, ["other"]),
]


@pytest.mark.parametrize(
    ("kind", "body", "headers", "status", "words"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_gets_a_specific_4xx(served, kind, body, headers, status, words):
    url = {"v1": predict_url(served), "v2": infer_url(served), "v2-other": infer_url(served, "other")}[kind]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = requests.post(url, data=data, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_server_is_healthy_after_bad_requests(served, local_model):
    # Runs after the parametrized bad requests above (pytest keeps file order).
    assert served.proc.poll() is None
    assert requests.get(f"{served.url}/v2/health/ready", timeout=10).status_code == 200
    frame = generated_rows(2, seed=15)
    response = requests.post(infer_url(served), json=v2_body(frame), timeout=30)
    assert response.status_code == 200
    np.testing.assert_allclose(
        response.json()["outputs"][0]["data"], local_model.predict_columns(frame), rtol=BATCH_RTOL, atol=0
    )


class TestPredictionLog:
    def test_success_is_logged_with_the_callers_request_id_and_role(self, served):
        frame = generated_rows(3, seed=16)
        headers = {"x-request-id": "req-log-1", "x-sluice-role": "shadow"}
        response = requests.post(infer_url(served), json=v2_body(frame), headers=headers, timeout=30)
        assert response.headers["x-request-id"] == "req-log-1"
        (record,) = wait_for_request(served.prediction_log, "req-log-1")
        assert record["role"] == "shadow"
        assert record["status"] == "ok" and record["error"] is None
        assert record["model_name"] == "wachttijden" and record["model_version"] == "7"
        assert record["inputs"] == {n: list(frame[n]) for n in FEATURES}
        assert record["outputs"] == response.json()["outputs"][0]["data"]
        assert record["latency_ms"] > 0
        assert record["unseen_categories"] is None
        assert set(record) == {
            "timestamp",
            "request_id",
            "role",
            "model_name",
            "model_version",
            "inputs",
            "outputs",
            "latency_ms",
            "status",
            "error",
            "unseen_categories",
        }

    def test_request_id_is_generated_and_errors_are_logged(self, served):
        response = requests.post(
            predict_url(served), json={"instances": [{**ROW, "TYPE_WACHTTIJD": "Spoedconsult"}]}, timeout=30
        )
        assert response.status_code == 400
        request_id = response.headers["x-request-id"]
        assert len(request_id) == 32
        (record,) = wait_for_request(served.prediction_log, request_id)
        assert record["role"] == "primary"
        assert record["status"] == "error" and "Spoedconsult" in record["error"]
        assert record["outputs"] is None
        assert record["inputs"]["TYPE_WACHTTIJD"] == ["Spoedconsult"]

    def test_every_line_is_one_json_object(self, served):
        ids = [f"lines-{i}" for i in range(len(BAD_REQUESTS))]
        for request_id, (_, kind, body, headers, _, _) in zip(ids, BAD_REQUESTS, strict=True):
            url = {"v1": predict_url(served), "v2": infer_url(served), "v2-other": infer_url(served, "other")}[kind]
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            requests.post(url, data=data, headers={**headers, "x-request-id": request_id}, timeout=30)
        wait_for_records(served.prediction_log, lambda r: r["request_id"] in ids, count=len(ids))
        # read_records parses every complete line: one that is not JSON fails here.
        assert all(isinstance(record, dict) for record in read_records(served.prediction_log))


def _answer(response: requests.Response) -> tuple:
    headers = {k: response.headers.get(k) for k in ("content-type", "content-length", "x-request-id")}
    return response.status_code, response.content, headers


# Bodies the fast path answers itself (and two it hands to KServe: V2 parameters, a non-JSON type).
SAME_ANSWER_CASES = [
    ("v1 objects", "v1", {"instances": [ROW, {**ROW, "SPECIALISME": "Orthopedie"}]}, JSON),
    ("v1 lists", "v1", {"instances": [list(ROW.values())] * 3}, JSON),
    ("v1 no content type", "v1", {"instances": [ROW]}, {}),
    ("v2 [n]", "v2", one_row_v2(), JSON),
    ("v2 [n, 1] with id", "v2", {"id": "abc", **one_row_v2(**{n: {"shape": [1, 1]} for n in ROW})}, JSON),
    ("v2 no content type", "v2", one_row_v2(), {}),
    ("v2 with parameters", "v2", {"parameters": {"x": 1}, **one_row_v2()}, JSON),
    ("v1 charset", "v1", {"instances": [ROW]}, {"content-type": "application/json; charset=utf-8"}),
]


@pytest.mark.parametrize(
    ("kind", "body", "headers"), [c[1:] for c in SAME_ANSWER_CASES], ids=[c[0] for c in SAME_ANSWER_CASES]
)
def test_fast_path_answers_exactly_like_kserve(server_pair, kind, body, headers):
    answers, request_ids = {}, {}
    for name, service in server_pair.items():
        url = predict_url(service) if kind == "v1" else infer_url(service)
        request_ids[name] = f"same-{kind}-{name}-{len(json.dumps(body))}-{sorted(headers)}"
        sent = {**headers, "x-request-id": request_ids[name]}
        response = requests.post(url, data=json.dumps(body).encode(), headers=sent, timeout=30)
        content = response.json()
        if isinstance(content, dict) and content.get("id") == request_ids[name]:
            content["id"] = "<request id>"
        answers[name] = (response.status_code, content, response.headers.get("content-type"))
    assert answers["fast"] == answers["kserve"]
    # The prediction-log lines match too, apart from time, latency and the request id.
    records = {
        name: wait_for_request(service.prediction_log, request_ids[name])[-1] for name, service in server_pair.items()
    }
    for record in records.values():
        for field in ("timestamp", "latency_ms", "request_id"):
            record.pop(field)
    assert records["fast"] == records["kserve"]


@pytest.mark.parametrize(
    ("kind", "body", "headers"),
    [(c[1], c[2], c[3]) for c in BAD_REQUESTS],
    ids=[c[0] for c in BAD_REQUESTS],
)
def test_bad_requests_get_the_same_answer_with_and_without_the_fast_path(server_pair, kind, body, headers):
    answers = {}
    for name, service in server_pair.items():
        url = {"v1": predict_url(service), "v2": infer_url(service), "v2-other": infer_url(service, "other")}[kind]
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = requests.post(url, data=data, headers={**headers, "x-request-id": "bad"}, timeout=30)
        answers[name] = _answer(response)
    assert answers["fast"] == answers["kserve"]


def test_v2_answers_are_byte_identical_with_and_without_the_fast_path(server_pair):
    frame = generated_rows(7, seed=21)
    answers = {}
    for name, service in server_pair.items():
        response = requests.post(
            infer_url(service), json={"id": "same", **v2_body(frame)}, headers={"x-request-id": "r"}, timeout=30
        )
        answers[name] = _answer(response)
    assert answers["fast"] == answers["kserve"] and answers["fast"][0] == 200


def test_metrics_and_health_still_come_from_kserve(served):
    requests.post(predict_url(served), json={"instances": [ROW]}, timeout=30).raise_for_status()
    metrics = requests.get(f"{served.url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert 'request_predict_seconds_count{model_name="wachttijden"}' in metrics.text
    assert requests.get(f"{served.url}/v1/models/wachttijden", timeout=10).json()["ready"] is True


def test_no_access_log_line_per_request(served):
    # --access-log is off by default: the prediction log already has one line per request.
    requests.post(predict_url(served), json={"instances": [ROW]}, timeout=30).raise_for_status()
    assert ":predict HTTP/1.1" not in served.log_path.read_text(encoding="utf-8", errors="replace")


def test_a_row_gets_the_same_prediction_alone_and_in_a_batch(server_pair):
    # Issue: 12.137904167175293 alone vs 12.137903213500977 batched. Sent one at a time, each row is
    # a one-row model call; sent together, one 48-row call. Both paths must agree to the bit.
    frame = generated_rows(48, seed=31)
    for name, service in server_pair.items():
        together = requests.post(predict_url(service), json=v1_body(frame), timeout=30).json()["predictions"]
        alone = [
            requests.post(predict_url(service), json=v1_body(frame.iloc[[i]]), timeout=30).json()["predictions"][0]
            for i in range(len(frame))
        ]
        differing = [(i, a, t) for i, (a, t) in enumerate(zip(alone, together, strict=True)) if a != t]
        assert not differing, f"{name}: {len(differing)} rows differ alone vs batched, e.g. {differing[:3]}"
