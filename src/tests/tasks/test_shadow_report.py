"""The shadow report's numbers agree with the logs of a real mirrored run (router + champion + challenger)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests

from tasks.monitoring.shadow_report import compare_shadow, render_html, render_markdown
from tests.serving.servers import (
    mirror_virtual_service,
    model_servers,
    model_sources_digest,
    router,
    small_model,
)
from tests.serving.small_model import generated_rows

TOLERANCE = 0.5


def line(**fields) -> str:
    base = {"timestamp": "2026-01-01T00:00:00.000Z", "model_name": "wachttijden", "inputs": None, "error": None}
    return json.dumps({**base, **fields})


def test_report_from_hand_written_lines():
    lines = [
        line(request_id="a", role="champion", model_version="1", outputs=[1.0, 2.0], latency_ms=2, status="ok"),
        line(request_id="a", role="shadow", model_version="2", outputs=[1.2, 4.0], latency_ms=4, status="ok"),
        line(request_id="b", role="champion", model_version="1", outputs=[3.0], latency_ms=6, status="ok"),
        line(
            request_id="b",
            role="shadow",
            model_version="2",
            outputs=None,
            latency_ms=1,
            status="error",
            error="unknown categories: X",
        ),
        line(request_id="c", role="champion", model_version="1", outputs=[5.0], latency_ms=8, status="ok"),
        # The router sent c's copy but no shadow server logged it (refused).
        json.dumps(
            {
                "request_id": "c",
                "role": "shadow",
                "target": "challenger",
                "url": "u",
                "status_code": None,
                "latency_ms": 0.5,
                "status": "error",
                "error": "did not answer",
            }
        ),
        line(request_id="d", role="primary", model_version="1", outputs=[9.0], latency_ms=1, status="ok"),
        "not json at all",
    ]
    report = compare_shadow(lines, tolerance_weeks=1.0)
    assert report.mirrored_requests == 3
    assert report.shadow_failures == 2
    assert (report.compared_requests, report.compared_rows) == (1, 2)
    assert report.agreement_rate == 0.5
    assert report.mean_abs_diff == pytest.approx(1.1)
    assert report.max_abs_diff == pytest.approx(2.0)
    assert report.champion_requests == 3 and report.champion_failures == 0
    assert report.champion_versions == ["1"] and report.shadow_versions == ["2"]
    assert report.shadow_errors == {"unknown categories: X": 1, "did not answer": 1}
    # The two compared rows differ by 0.2 and 2.0 weeks: one in the first bin, one in the last.
    histogram = report.difference_histogram
    assert histogram["edges"][0] == pytest.approx(0.2) and histogram["edges"][-1] == pytest.approx(2.0)
    assert sum(histogram["counts"]) == 2 and histogram["counts"][0] == histogram["counts"][-1] == 1
    markdown = render_markdown(report)
    assert "| Agreement (|diff| <= 1 weeks) | 50.0% |" in markdown and "did not answer" in markdown
    assert "<table" in render_html(report)


def test_empty_logs_give_an_empty_report(tmp_path):
    report = compare_shadow([tmp_path / "missing.jsonl"])
    assert report.mirrored_requests == 0 and report.agreement_rate is None
    assert report.difference_histogram == {}
    assert "n/a" in render_markdown(report)


MIRROR_SPEC = mirror_virtual_service(100.0, "wachttijden-champion", "wachttijden-challenger")


@pytest.fixture(scope="module")
def mirrored_run(request, tmp_path_factory):
    """Mirror 24 good and 2 bad requests through a real router; return the logs and what the client saw."""
    cache = getattr(request.config, "cache", None)
    root = (
        Path(cache.mkdir(f"sluice-small-models-{model_sources_digest()}"))
        if cache
        else tmp_path_factory.mktemp("small-models")
    )
    work = tmp_path_factory.mktemp("shadow-run")
    logs = {name: work / f"{name}.jsonl" for name in ("champion", "challenger", "router")}
    specs = {
        "champion": {"model_uri": small_model(root, 1), "prediction_log": logs["champion"]},
        "challenger": {"model_uri": small_model(root, 2), "prediction_log": logs["challenger"]},
    }
    spec = work / "mirror.yaml"
    spec.write_text(MIRROR_SPEC, encoding="utf-8")
    sent = []
    with model_servers(specs, work) as servers:
        resolve = {f"wachttijden-{role}": s.url for role, s in servers.items()}
        with router([spec], resolve, work, extra_args=["--prediction-log", str(logs["router"])]) as front:
            for i in range(26):
                frame = generated_rows(1 + i % 3, seed=500 + i)
                if i >= 24:
                    frame.loc[0, "ROAZ_REGIO"] = "Zeeland"  # a closed feature: both models refuse it
                body = {"instances": frame.drop(columns="WACHTTIJD").to_dict(orient="records")}
                response = requests.post(f"{front.url}/v1/models/wachttijden:predict", json=body, timeout=30)
                challenger = requests.post(
                    f"{servers['challenger'].url}/v1/models/wachttijden:predict", json=body, timeout=30
                )
                sent.append((response, challenger))
            stats = requests.get(f"{front.url}/stats", timeout=5).json()
    return logs, sent, stats


def test_report_numbers_match_the_logs_of_a_real_mirrored_run(mirrored_run):
    logs, sent, stats = mirrored_run
    report = compare_shadow(list(logs.values()), tolerance_weeks=TOLERANCE)
    good = [(r, c) for r, c in sent if r.status_code == 200]
    assert len(good) == 24 and stats["mirrored"] == 26
    assert report.mirrored_requests == 26
    assert report.shadow_failures == 2 and report.champion_failures == 2
    assert report.compared_requests == 24
    champion = np.concatenate([r.json()["predictions"] for r, _ in good])
    challenger = np.concatenate([c.json()["predictions"] for _, c in good])
    diffs = np.abs(champion - challenger)
    assert report.compared_rows == len(diffs)
    assert report.mean_abs_diff == pytest.approx(diffs.mean(), abs=1e-3)
    assert report.agreement_rate == pytest.approx(np.mean(diffs <= TOLERANCE), abs=1e-4)
    assert report.champion_latency_p50_ms > 0 and report.shadow_latency_p95_ms >= report.shadow_latency_p50_ms
    assert any("Zeeland" in message for message in report.shadow_errors)
