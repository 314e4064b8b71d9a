"""The real model server serving the xray image model (tests/serving/xray_model.py, whose answers are known):
V1 and V2 with base64 files or an FP32 tensor, each kind of bad input as a precise 4xx, batching of
concurrent requests, :explain's occlusion heat map, the prediction log, and perform-prediction.sh."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests

from models.xray.images import model_input_from_bytes
from models.xray.schema import MAX_IMAGE_BYTES
from tests.serving.logs import read_records, wait_for_request
from tests.serving.servers import model_server
from tests.serving.xray_model import REGION, expected_probabilities, scan_png
from tests.support.processes import REPO_ROOT

MAX_IMAGES = 8
# Room for one base64 image just over MAX_IMAGE_BYTES, so the per-image limit is reached before the body limit.
MAX_BODY = 16 * 1024 * 1024
TOLERANCE = 1e-5  # float32 steps between the server's batched calls and the NumPy formula


@pytest.fixture(scope="module")
def served(xray_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    log_dir = tmp_path_factory.mktemp("xray")
    prediction_log = log_dir / "predictions.jsonl"
    # --model-name left out: the server names the model after the use case the model carries.
    extra = ["--max-images", str(MAX_IMAGES), "--max-explain-images", "2", "--model-version", "7",
             "--max-batch-wait-ms", "5", "--max-body-bytes", str(MAX_BODY)]
    with model_server(xray_model_dir, log_dir, prediction_log=prediction_log, extra_args=extra) as service:
        service.prediction_log = prediction_log
        yield service


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def v2_files(*files: bytes) -> dict:
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(files)], "data": [b64(f) for f in files]}]}


def post(service, path: str, body, headers=None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(service.url + path, data=data, headers=headers or {"Content-Type": "application/json"},
                         timeout=60)


V2 = "/v2/models/xray/infer"
V1 = "/v1/models/xray:predict"
EXPLAIN = "/v1/models/xray:explain"
SCANS = [scan_png(bright, seed=i, size=size)
         for i, (bright, size) in enumerate([(True, 256), (False, 128), (True, 400)])]


def expected(files) -> np.ndarray:
    return expected_probabilities(np.stack([model_input_from_bytes(f) for f in files]))


def test_v2_base64_files_get_class_probabilities_and_classes(served):
    response = post(served, V2, v2_files(*SCANS) | {"id": "req-1"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("xray", "7", "req-1")
    outputs = {o["name"]: o for o in answer["outputs"]}
    probs = outputs["probabilities"]
    assert probs["shape"] == [3, 2] and probs["datatype"] == "FP32"
    assert probs["parameters"]["classes"] == "normal,pneumonia"
    got = np.array(probs["data"]).reshape(3, 2)
    np.testing.assert_allclose(got, expected(SCANS), atol=TOLERANCE)
    assert outputs["class"]["data"] == ["pneumonia", "normal", "pneumonia"]


def test_v2_fp32_tensor_is_served_like_the_same_pixels_as_a_file(served):
    inputs = np.stack([model_input_from_bytes(f) for f in SCANS[:2]])
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(inputs.shape), "data": inputs.tolist()}]}
    response = post(served, V2, body)
    assert response.status_code == 200, response.text
    probs = next(o for o in response.json()["outputs"] if o["name"] == "probabilities")
    np.testing.assert_allclose(np.array(probs["data"]).reshape(2, 2), expected(SCANS[:2]), atol=TOLERANCE)


def test_v1_b64_instances_and_jpeg(served):
    from PIL import Image

    jpeg = io.BytesIO()
    Image.open(io.BytesIO(SCANS[0])).save(jpeg, format="JPEG", quality=95)
    response = post(served, V1, {"instances": [{"b64": b64(SCANS[1])}, {"b64": b64(jpeg.getvalue())}]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["class"] for p in predictions] == ["normal", "pneumonia"]
    assert set(predictions[0]["probabilities"]) == {"normal", "pneumonia"}
    assert predictions[0]["probabilities"]["normal"] == pytest.approx(expected(SCANS[1:2])[0, 0], abs=TOLERANCE)


def test_metadata_names_the_inputs_and_outputs(served):
    meta = requests.get(f"{served.url}/v2/models/xray", timeout=10).json()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "class"]


TOO_BIG = b"\x89PNG" + b"\0" * (MAX_IMAGE_BYTES + 1)
BAD_REQUESTS = [
    ("not an image", V1, {"instances": [{"b64": b64(b"hello, not a scan")}]}, 400, ["image 0", "not an image"]),
    ("bad base64", V1, {"instances": [{"b64": "@@@"}]}, 400, ["image 0", "base64"]),
    ("too small", V2, v2_files(SCANS[0], scan_png(True, size=40)), 400, ["image 1", "40x40", "64-4096"]),
    ("colour", V1, {"instances": [{"b64": b64(scan_png(True, mode="RGB"))}]}, 400, ["RGB", "grayscale"]),
    ("truncated", V1, {"instances": [{"b64": b64(SCANS[0][:400])}]}, 400, ["image 0", "corrupt"]),
    ("too many bytes", V1, {"instances": [{"b64": b64(TOO_BIG)}]}, 413, ["image 0", str(MAX_IMAGE_BYTES)]),
    ("too many images", V1, {"instances": [{"b64": b64(SCANS[1])}] * (MAX_IMAGES + 1)}, 413,
     [f"{MAX_IMAGES + 1} images", f"at most {MAX_IMAGES}"]),
    ("no images", V1, {"instances": []}, 400, ["no image"]),
    ("v1 wrong instance", V1, {"instances": [{"image": "x"}]}, 400, ["instance 0", '"b64"']),
    ("v1 no instances", V1, {"rows": []}, 400, ["instances"]),
    ("unknown class", V1, {"instances": [{"b64": b64(SCANS[0]), "class": "cat"}]}, 400, ["'cat'", "normal"]),
    ("wrong tensor shape", V2, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64, 64, 1],
                                            "data": [0.0] * 4096}]}, 400, ["[n, 128, 128, 1]", "[1, 64, 64, 1]"]),
    ("tensor data short", V2, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 128, 128, 1],
                                           "data": [0.5] * 100}]}, 400, ["16384 values", "holds 100"]),
    ("tensor out of range", V2, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 128, 128, 1],
                                             "data": [255.0] * 16384}]}, 400, ["[0, 1]"]),
    ("two inputs", V2, {"inputs": v2_files(SCANS[0])["inputs"] * 2}, 400, ["2 inputs", "exactly one"]),
    ("wrong datatype", V2, {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]}, 400,
     ["INT32", "BYTES or FP32"]),
    ("bytes shape mismatch", V2, {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                                              "data": [b64(SCANS[0])]}]}, 400, ["needs 2 images", "holds 1"]),
    ("malformed JSON", V1, b"{not json", 400, ["malformed JSON"]),
]


@pytest.mark.parametrize(("kind", "path", "body", "status", "words"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_that_says_what_is_wrong(served, kind, path, body, status, words):
    response = post(served, path, body)
    assert response.status_code == status, (kind, response.status_code, response.text)
    message = response.json()["error"]
    for word in words:
        assert word in message, (kind, message)


def test_a_body_over_the_limit_is_refused_before_parsing(served):
    response = post(served, V1, b"x" * (MAX_BODY + 1))
    assert response.status_code == 413 and "at most" in response.json()["error"]


def batcher_counts(service) -> tuple[float, float]:
    text = requests.get(f"{service.url}/metrics", timeout=10).text
    calls = float(re.search(r'^sluice_model_calls_total\{model_name="xray"\} (\S+)', text, re.M).group(1))
    rows = float(re.search(r'^sluice_model_call_rows_total\{model_name="xray"\} (\S+)', text, re.M).group(1))
    return calls, rows


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(served):
    files = [scan_png(i % 2 == 0, seed=100 + i, size=128 + 8 * i) for i in range(48)]
    want = expected(files)
    calls_before, rows_before = batcher_counts(served)

    def one(i: int) -> np.ndarray:
        response = post(served, V2, v2_files(files[i]))
        assert response.status_code == 200, response.text
        return np.array(next(o for o in response.json()["outputs"] if o["name"] == "probabilities")["data"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(len(files))))
    for i, got in enumerate(answers):
        np.testing.assert_allclose(got, want[i], atol=TOLERANCE, err_msg=f"request {i}")
    calls, rows = batcher_counts(served)
    assert rows - rows_before == len(files)
    # 48 one-image requests from 16 clients: coalesced into clearly fewer model calls than requests.
    assert calls - calls_before < len(files) * 0.75, (calls - calls_before, len(files))


def test_explain_returns_an_occlusion_heat_map_that_peaks_on_the_region_the_model_reads(served):
    from PIL import Image

    body = {"instances": [{"b64": b64(SCANS[0])}, {"b64": b64(SCANS[1]), "class": "pneumonia"}]}
    response = post(served, EXPLAIN, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["method"] == "occlusion" and answer["model_name"] == "xray"
    first, second = answer["explanations"]
    assert (first["class"], first["explained_class"]) == ("pneumonia", "pneumonia")
    assert (second["class"], second["explained_class"]) == ("normal", "pneumonia")
    grid = np.array(first["grid"])
    patch, stride = answer["patch"], answer["stride"]
    y, x = np.unravel_index(np.argmax(grid), grid.shape)
    top, left = min(y * stride, 128 - patch), min(x * stride, 128 - patch)
    # The largest drop comes from a patch overlapping the region the model reads, and covering it lowers the score.
    assert REGION[0].start - patch < top < REGION[0].stop and REGION[1].start - patch < left < REGION[1].stop
    assert grid.max() > 0.01
    image = Image.open(io.BytesIO(base64.b64decode(first["heat_map_png"])))
    assert image.format == "PNG" and image.size == tuple(first["heat_map_size"]) == (128, 128)
    assert len(first["heat_map_png"]) < 64 * 1024


def test_explain_refuses_bad_input_and_too_many_images(served):
    bad = post(served, EXPLAIN, {"instances": [{"b64": b64(b"nope")}]})
    assert bad.status_code == 400 and "not an image" in bad.json()["error"]
    many = post(served, EXPLAIN, {"instances": [{"b64": b64(SCANS[1])}] * 3})
    assert many.status_code == 413 and "at most 2" in many.json()["error"]


def test_the_prediction_log_describes_images_by_size_and_hash_never_pixels(served):
    response = post(served, V2, v2_files(SCANS[0]), headers={"Content-Type": "application/json",
                                                              "x-request-id": "xray-log-1"})
    assert response.status_code == 200
    record = wait_for_request(served.prediction_log, "xray-log-1")[0]
    inputs = record["inputs"]
    assert inputs["bytes"] == [len(SCANS[0])] and inputs["width"] == [256] and inputs["height"] == [256]
    assert inputs["sha256"] == [hashlib.sha256(SCANS[0]).hexdigest()]
    assert record["outputs"][0] == pytest.approx(expected(SCANS[:1])[0].tolist(), abs=TOLERANCE)
    text = served.prediction_log.read_text()
    assert b64(SCANS[0])[:64] not in text
    errors = [r for r in read_records(served.prediction_log) if r["status"] == "error"]
    assert errors and all(r["inputs"] is None for r in errors)


def test_perform_prediction_script_prints_class_probabilities_and_writes_the_heat_map(served, tmp_path):
    scan = tmp_path / "scan.png"
    scan.write_bytes(SCANS[0])
    env = {**os.environ, "SLUICE_XRAY_PORT": served.url.rsplit(":", 1)[1]}
    script = str(REPO_ROOT / "scripts" / "perform-prediction.sh")
    result = subprocess.run([script, "--model", "xray", str(scan)], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    p = expected(SCANS[:1])[0]
    assert f"{scan}: pneumonia (normal {p[0]:.4f}, pneumonia {p[1]:.4f})" in result.stdout
    explained = subprocess.run([script, "--model", "xray", "--explain", str(scan)], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=60, check=False)
    assert explained.returncode == 0, explained.stderr
    assert "heat map of pneumonia: scan.heatmap.png" in explained.stdout
    assert (tmp_path / "scan.heatmap.png").read_bytes()[:4] == b"\x89PNG"
    missing = subprocess.run([script, "--model", "xray"], env=env, capture_output=True, text=True, timeout=60,
                             check=False)
    assert missing.returncode == 1 and "needs one or more PNG/JPEG files" in missing.stderr
