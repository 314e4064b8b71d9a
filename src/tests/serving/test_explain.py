"""KServe V1 :explain on the running model server: exact Shapley attributions that add up to the prediction,
the same 4xx as :predict for bad input, a row cap of its own, and no prediction-log line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import requests

from models.wachttijden.schema import FEATURES
from serving.batcher import BATCH_RTOL
from tests.serving.logs import read_records, wait_for_request
from tests.serving.servers import model_server
from tests.serving.small_model import BACKGROUND_ROWS, SAMPLE_ROWS, generated_rows
from tests.serving.test_model_server import BAD_REQUESTS

MAX_EXPLAIN_ROWS = 20


@pytest.fixture(scope="module")
def served(champion_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    log_dir = tmp_path_factory.mktemp("explain")
    prediction_log = log_dir / "predictions.jsonl"
    # The :predict limits of test_model_server.py, so its bad requests are bad here in the same way.
    extra = ["--max-rows", "100", "--max-body-bytes", str(64 * 1024), "--max-explain-rows", str(MAX_EXPLAIN_ROWS)]
    with model_server(champion_model_dir, log_dir, prediction_log=prediction_log, extra_args=extra) as service:
        service.prediction_log = prediction_log
        yield service


@pytest.fixture(scope="module")
def local_model(champion_model_dir: Path):
    from models.wachttijden.model import WachttijdenModel

    return WachttijdenModel.load(champion_model_dir / "artifacts" / "model_files")


def explain(service, body, headers=None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{service.url}/v1/models/wachttijden:explain", data=data, headers=headers, timeout=60)


def predict(service, body, headers=None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{service.url}/v1/models/wachttijden:predict", data=data, headers=headers, timeout=60)


def instances(frame) -> dict:
    return {"instances": frame[list(FEATURES)].to_dict(orient="records")}


def test_attributions_and_base_value_add_up_to_the_prediction(served):
    body = instances(generated_rows(7, seed=41))
    response = explain(served, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["method"] == "exact_shapley" and answer["background_rows"] == BACKGROUND_ROWS
    assert answer["model_name"] == "wachttijden" and answer["unseen_categories"] is None
    rows = answer["explanations"]
    assert len(rows) == 7
    assert len({row["base_value"] for row in rows}) == 1  # one base value: the mean over the background
    for row in rows:
        assert list(row["attributions"]) == list(FEATURES)
        total = row["base_value"] + sum(row["attributions"].values())
        assert math.isclose(total, row["prediction"], rel_tol=1e-12, abs_tol=1e-12), (total, row)
    # The explained prediction is what :predict answers for the row.
    predicted = predict(served, body).json()["predictions"]
    np.testing.assert_allclose([row["prediction"] for row in rows], predicted, rtol=BATCH_RTOL, atol=0)
    # The features do not all contribute nothing (a broken plan could answer zeros that still add up).
    assert any(abs(value) > 1e-3 for row in rows for value in row["attributions"].values())


def test_the_server_explains_as_the_model_does_in_process(served, local_model):
    from models.wachttijden.shapley import shapley_values

    frame = generated_rows(4, seed=42)
    answer = explain(served, instances(frame)).json()
    columns = {name: frame[name].tolist() for name in FEATURES}
    expected = shapley_values(local_model.predict_columns, columns, local_model.background, FEATURES)
    served_attributions = [[row["attributions"][name] for name in FEATURES] for row in answer["explanations"]]
    # Batches of other sizes may differ by a float32 step per prediction (see serving.batcher).
    np.testing.assert_allclose(served_attributions, expected.attributions, rtol=0, atol=1e-4)
    assert answer["explanations"][0]["base_value"] == pytest.approx(expected.base_value, abs=1e-4)


def test_an_unseen_specialism_is_explained_and_flagged(served):
    row = {**SAMPLE_ROWS[0], "SPECIALISME": "Tandheelkunde"}
    response = explain(served, {"instances": [row, SAMPLE_ROWS[0]]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["unseen_categories"] == {"SPECIALISME": ["Tandheelkunde"]}
    unseen, known = answer["explanations"]
    # Only SPECIALISME differs between the two rows; with these categorical features the other
    # attributions still change (the model has interactions), but the predictions must differ.
    assert unseen["prediction"] != known["prediction"]
    assert math.isclose(unseen["base_value"] + sum(unseen["attributions"].values()), unseen["prediction"],
                        rel_tol=1e-12, abs_tol=1e-12)


V1_BAD_REQUESTS = [case for case in BAD_REQUESTS if case[1] == "v1"]


@pytest.mark.parametrize(
    ("body", "headers"), [(c[2], c[3]) for c in V1_BAD_REQUESTS], ids=[c[0] for c in V1_BAD_REQUESTS]
)
def test_bad_input_gets_the_same_answer_as_predict(served, body, headers):
    explained, predicted = explain(served, body, headers), predict(served, body, headers)
    assert 400 <= explained.status_code < 500
    assert (explained.status_code, explained.json()) == (predicted.status_code, predicted.json())


def test_more_rows_than_the_explain_cap_get_413(served):
    response = explain(served, {"instances": [SAMPLE_ROWS[0]] * (MAX_EXPLAIN_ROWS + 1)})
    assert response.status_code == 413, response.text
    assert f":explain takes at most {MAX_EXPLAIN_ROWS}" in response.json()["error"]
    assert explain(served, {"instances": [SAMPLE_ROWS[0]] * MAX_EXPLAIN_ROWS}).status_code == 200


def test_the_answer_carries_its_own_headers_not_the_requests(served):
    # KServe's V1 explain handler would answer with the request's headers (Host, User-Agent, ...).
    response = explain(served, {"instances": SAMPLE_ROWS}, headers={"x-request-id": "explain-headers",
                                                                    "x-sluice-role": "champion"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "explain-headers"  # once, not "explain-headers, explain-headers"
    assert response.headers["content-type"] == "application/json"
    for echoed in ("host", "user-agent", "x-sluice-role", "accept-encoding"):
        assert echoed not in response.headers, f"{echoed} echoed from the request"


def test_an_explanation_writes_no_prediction_log_line(served):
    assert explain(served, {"instances": SAMPLE_ROWS}, headers={"x-request-id": "explain-only"}).status_code == 200
    assert predict(served, {"instances": SAMPLE_ROWS}, headers={"x-request-id": "after-explain"}).status_code == 200
    # Lines are written in request order: once the later prediction is logged, the explanation would be too.
    wait_for_request(served.prediction_log, "after-explain")
    assert not [r for r in read_records(served.prediction_log) if r["request_id"] == "explain-only"]
