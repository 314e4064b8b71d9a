"""The X-ray page in a real browser against the real xray model server (the tiny region model of
tests/serving/xray_model.py, whose answers are known): an uploaded scan's probabilities are the server's, its
heat map is the server's :explain picture, refused files show the server's message, a generated sample works.
The client's own failure path (nothing answers) is checked without a browser."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests

from app.backends import BackendUnavailable
from app.xray_client import SAMPLES, XrayServer, sample_scan
from tests.app.platform import Platform
from tests.app.test_browser import PAGE_LOAD_MS, no_traceback, open_page, shot, wait_until_done
from tests.serving.xray_model import scan_png
from tests.support.processes import free_port

CLASSES = ("normal", "pneumonia")


def server_answer(platform: Platform, verb: str, scan: bytes) -> dict:
    response = requests.post(f"{platform.xray}/v1/models/xray:{verb}",
                             json={"instances": [{"b64": base64.b64encode(scan).decode()}]}, timeout=60)
    response.raise_for_status()
    return response.json()[{"predict": "predictions", "explain": "explanations"}[verb]][0]


def expected_metrics(answer: dict) -> list[str]:
    return [answer["class"], *(f"{answer['probabilities'][c]:.4f}" for c in CLASSES)]


def shown_metrics(page) -> list[str]:
    values = page.get_by_test_id("stMetricValue")
    return [values.nth(i).inner_text() for i in range(values.count())]


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG", image.format
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def upload(page, path) -> None:
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))


@pytest.mark.slow
def test_xray_page_shows_the_servers_probabilities_and_heat_map_and_its_refusals(app_platform, page, tmp_path):
    open_page(page, app_platform, "xray")
    wait_until_done(page)
    assert page.get_by_test_id("stAlert").count() == 0, "the xray server is up: no unreachable warning"
    # A scan bright in the region the model looks at (pneumonia), at another size than the model's input.
    scan = scan_png(True, size=300, seed=5)
    path = tmp_path / "scan-pneumonia.png"
    path.write_bytes(scan)
    upload(page, path)
    page.get_by_test_id("stMetricValue").nth(2).wait_for(timeout=PAGE_LOAD_MS)
    page.get_by_test_id("stImage").nth(1).wait_for(timeout=PAGE_LOAD_MS)  # the heat map comes after :explain
    wait_until_done(page)
    answer = server_answer(app_platform, "predict", scan)
    assert answer["class"] == "pneumonia" and answer["probabilities"]["pneumonia"] > 0.9, answer
    assert shown_metrics(page) == expected_metrics(answer)
    page.get_by_test_id("stVegaLiteChart").first.wait_for()  # the probabilities' bar chart
    page.get_by_text("Heat map of 'pneumonia'").wait_for()

    # The second picture is the server's heat map: fetch what the browser shows and compare it with :explain's.
    images = page.get_by_test_id("stImage").locator("img")
    assert images.count() == 2
    shown_scan, shown_map = (page.request.get(images.nth(i).evaluate("img => img.src")).body() for i in (0, 1))
    assert np.array_equal(pixels(shown_scan), pixels(scan)), "the scan is shown as uploaded, losslessly"
    explained = server_answer(app_platform, "explain", scan)
    expected_map = pixels(base64.b64decode(explained["heat_map_png"]))
    got_map = pixels(shown_map)
    assert got_map.shape == expected_map.shape == (128, 128, 3)
    assert np.abs(got_map - expected_map).max() <= 2  # float32 batching steps, nothing else
    red = got_map[..., 0] - got_map[..., 2]
    assert red[32:64, 72:104].mean() > red.mean() + 20, "the map is hot where the model looks"
    no_traceback(page)
    shot(page, "xray")

    # Files the server refuses: its 4xx message on the page, no probabilities, no traceback.
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("these are notes, not a scan\n")
    colour = tmp_path / "colour.png"
    colour.write_bytes(scan_png(True, size=256, mode="RGB"))
    for refused, message in [(not_an_image, "not an image: the bytes are neither PNG nor JPEG"),
                             (colour, "image mode RGB is not grayscale")]:
        upload(page, refused)
        page.get_by_text(message).wait_for(timeout=PAGE_LOAD_MS)
        wait_until_done(page)
        alert = page.get_by_test_id("stAlert").filter(has_text=message).inner_text()
        assert f"Classifying {refused.name}" in alert and "HTTP 400" in alert, alert
        assert page.get_by_test_id("stMetricValue").count() == 0
        no_traceback(page)
    shot(page, "xray-rejected")

    # A generated sample: the page draws it with the training data's generator; the server answers for it.
    label = "Generated sample: pneumonia-like"
    page.get_by_test_id("stRadio").get_by_text(label).click()
    page.get_by_test_id("stImage").nth(1).wait_for(timeout=PAGE_LOAD_MS)
    wait_until_done(page)
    assert shown_metrics(page) == expected_metrics(server_answer(app_platform, "predict", sample_scan(*SAMPLES[label])))
    no_traceback(page)


def test_the_xray_client_says_how_to_start_a_server_that_does_not_answer():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = XrayServer(url, timeout_s=5)
    for attempt in (server.ready, lambda: server.predict(scan_png(False))):
        with pytest.raises(BackendUnavailable) as caught:
            attempt()
        message = str(caught.value)
        assert url in message and "connection refused" in message and "./deploy-local.sh --with-xray" in message


def test_the_sample_scans_are_accepted_scans_of_both_classes():
    from models.xray.images import decode_image
    from models.xray.schema import CLASSES as SCHEMA_CLASSES

    assert SCHEMA_CLASSES == CLASSES
    assert sorted(pneumonia for _, pneumonia in SAMPLES.values()) == [False, True]
    for seed, pneumonia in SAMPLES.values():
        first = sample_scan(seed, pneumonia)
        assert first == sample_scan(seed, pneumonia)  # deterministic
        assert decode_image(first).ndim == 2  # the server's own check: PNG, grayscale, within the size bounds
