"""The prediction log stays bounded: size-rotated files shared safely by several processes, large inputs digested."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from models.wachttijden.schema import FEATURES
from serving.prediction_log import prediction_record
from tests.serving.logs import read_records, wait_for_request
from tests.serving.servers import model_server
from tests.serving.small_model import generated_rows
from tests.support.processes import REPO_ROOT

MAX_BYTES = 20_000
BACKUPS = 2
MAX_INPUT_ROWS = 5


def log_files(path: Path) -> list[Path]:
    """The log and its backups, found the way the compare_shadow DAG finds them (`predictions*.jsonl`)."""
    return sorted(path.parent.glob(f"{path.stem}*{path.suffix}"))


def canonical_digest(columns: dict[str, list[str]]) -> str:
    """sha256 of the inputs as compact JSON with sorted keys, as the README documents it."""
    text = json.dumps(columns, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TestRecordBounds:
    def test_inputs_up_to_the_limit_are_logged_in_full(self):
        inputs = {"A": ["x", "y"], "B": ["1", "2"]}
        record = prediction_record(
            request_id="r", role="primary", model_name="m", model_version="1", inputs=inputs,
            outputs=[1.0, 2.0], latency_ms=1.0, max_input_rows=2,
        )
        assert record["inputs"] == inputs and record["outputs"] == [1.0, 2.0]

    def test_larger_inputs_become_row_count_and_digest(self):
        inputs = {"B": [str(i) for i in range(10)], "A": ["é"] * 10}
        record = prediction_record(
            request_id="r", role="primary", model_name="m", model_version="1", inputs=inputs,
            outputs=[0.5] * 10, latency_ms=1.0, max_input_rows=9,
        )
        assert record["inputs"] == {"rows": 10, "sha256": canonical_digest(inputs)}
        # Outputs stay whole: the shadow report compares them value by value.
        assert record["outputs"] == [0.5] * 10


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from serving.log_writer import LineWriter

    path, tag, count, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    writer = LineWriter(path, max_bytes=max_bytes, backups=1000)
    for i in range(count):
        assert writer.write({"request_id": f"{tag}-{i}", "padding": "x" * (i % 200)})
    writer.close()
    """
)


def test_processes_sharing_one_file_rotate_it_without_losing_or_mixing_lines(tmp_path):
    # Champion, challenger and router append to one predictions.jsonl locally.
    path, count, max_bytes = tmp_path / "predictions.jsonl", 1500, 30_000
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(path), tag, str(count), str(max_bytes)],
            env={"PYTHONPATH": str(REPO_ROOT / "src")},
        )
        for tag in ("a", "b", "c")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    files = log_files(path)
    assert len(files) > 3, "no rotation happened"
    assert all(f.stat().st_size <= max_bytes for f in files)
    ids = [r["request_id"] for f in files for r in read_records(f)]
    assert sorted(ids) == sorted(f"{tag}-{i}" for tag in "abc" for i in range(count))


def test_a_write_that_fails_is_counted_not_raised():
    from serving.log_writer import LineWriter

    writer = LineWriter("/dev/full", degraded_after=3)
    assert [writer.write({"n": i}) for i in range(4)] == [False] * 4
    assert writer.errors == 4 and writer.degraded
    writer.close()


@pytest.fixture(scope="module")
def rotating(champion_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    log_dir = tmp_path_factory.mktemp("rotation")
    log = log_dir / "predictions.jsonl"
    extra = [
        "--log-max-bytes", str(MAX_BYTES), "--log-backups", str(BACKUPS),
        "--log-max-input-rows", str(MAX_INPUT_ROWS),
    ]
    with model_server(champion_model_dir, log_dir, prediction_log=log, extra_args=extra) as service:
        service.prediction_log = log
        yield service


def test_server_log_rotates_by_size_and_keeps_a_bounded_number_of_files(rotating):
    frame = generated_rows(MAX_INPUT_ROWS, seed=41)
    body = {"instances": frame[list(FEATURES)].to_dict(orient="records")}
    with requests.Session() as session:
        for i in range(200):  # ~600 bytes a line: ~120 kB in all, several times MAX_BYTES * (BACKUPS + 1)
            response = session.post(
                f"{rotating.url}/v1/models/wachttijden:predict", json=body, headers={"x-request-id": f"rot-{i}"}
            )
            assert response.status_code == 200
    wait_for_request(rotating.prediction_log, "rot-199")
    files = log_files(rotating.prediction_log)
    assert [f.name for f in files] == ["predictions.1.jsonl", "predictions.2.jsonl", "predictions.jsonl"]
    assert all(f.stat().st_size <= MAX_BYTES for f in files)


def test_server_logs_large_requests_as_row_count_and_digest(rotating):
    small, large = generated_rows(MAX_INPUT_ROWS, seed=42), generated_rows(MAX_INPUT_ROWS + 1, seed=43)
    for request_id, frame in (("small-1", small), ("large-1", large)):
        requests.post(
            f"{rotating.url}/v1/models/wachttijden:predict",
            json={"instances": frame[list(FEATURES)].to_dict(orient="records")},
            headers={"x-request-id": request_id},
            timeout=30,
        ).raise_for_status()
    (small_record,) = wait_for_request(rotating.prediction_log, "small-1")
    (large_record,) = wait_for_request(rotating.prediction_log, "large-1")
    assert small_record["inputs"] == {n: list(small[n]) for n in FEATURES}
    columns = {n: list(large[n]) for n in FEATURES}
    assert large_record["inputs"] == {"rows": MAX_INPUT_ROWS + 1, "sha256": canonical_digest(columns)}
    assert len(large_record["outputs"]) == MAX_INPUT_ROWS + 1
