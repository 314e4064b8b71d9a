"""The web app in a real browser (Debian's Chromium through Playwright) against the real app, model servers
and MLflow: a prediction from the form equals the model server's answer, uploads good and broken, the
registry's champion. Screenshots of each page go to .local/test-artifacts/app/."""

from __future__ import annotations

import os
import re

import pytest
import requests

from tests.app.platform import CHAMPION_METRICS, MODEL, Platform, artifacts_dir
from tests.serving.small_model import SAMPLE_ROWS
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.slow

# A row of the small models' vocabularies, not the form's first choices, so every field must really be set.
ROW = SAMPLE_ROWS[1]
PAGE_LOAD_MS = 60_000


def open_page(page, platform: Platform, path: str) -> None:
    page.goto(f"{platform.app}/{path}", timeout=PAGE_LOAD_MS)
    # Streamlit renders after its websocket connects; the page's title is the first thing each page writes.
    page.get_by_test_id("stHeading").first.wait_for(timeout=PAGE_LOAD_MS)


def wait_until_done(page) -> None:
    """Until the script run has finished (Streamlit shows its status widget while running)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=PAGE_LOAD_MS)


def shot(page, name: str, path=None) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the window grows to that block's height."""
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1280, "height": min(max(int(height), 900), 4000)})
    page.screenshot(path=str(path or artifacts_dir() / f"{name}.png"))
    page.set_viewport_size({"width": 1280, "height": 900})


def choose(page, field: str, value: str) -> None:
    """Pick `value` in the select box labelled with `field`, by typing into it (it is searchable)."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=field)
    box.locator("input").click()
    box.locator("input").fill(value)
    page.get_by_role("option", name=value, exact=True).click()


def no_traceback(page) -> None:
    text = page.inner_text("body")
    assert "Traceback" not in text and 'File "' not in text, text[-2000:]


def server_prediction(url: str, row: dict[str, str]) -> float:
    response = requests.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": [row]}, timeout=30)
    response.raise_for_status()
    return response.json()["predictions"][0]


def test_predict_form_shows_the_model_servers_answers_and_the_explanation(app_platform, page):
    open_page(page, app_platform, "")  # Predict is the default page
    # The closed lists come from the champion's own vocabularies in MLflow (the small model's categories).
    page.get_by_text(f"registered version {app_platform.champion_version}").wait_for()
    for field, value in ROW.items():
        choose(page, field, value)
    page.get_by_test_id("stFormSubmitButton").locator("button").click()
    values = page.get_by_test_id("stMetricValue")
    values.nth(1).wait_for()
    wait_until_done(page)
    shown = [values.nth(i).inner_text() for i in range(values.count())]
    expected = [f"{server_prediction(url, ROW):.2f} weeks" for url in (app_platform.champion, app_platform.challenger)]
    assert shown == expected, (shown, expected)
    assert shown[0] != shown[1], "champion and challenger are different models"
    # One attribution chart per side (Vega-Lite), and the explanation's version line.
    page.get_by_test_id("stVegaLiteChart").nth(1).wait_for()
    assert page.get_by_test_id("stVegaLiteChart").count() == 2
    page.get_by_text(re.compile(r"Model version \d+\. Base value")).first.wait_for()
    no_traceback(page)
    shot(page, "predict")
    if os.environ.get("SLUICE_UPDATE_SCREENSHOTS") == "1":
        # The README's picture: SLUICE_UPDATE_SCREENSHOTS=1 ./scripts/test.sh -k predict_form (commit the PNG).
        shot(page, "predict", REPO_ROOT / "docs" / "images" / "predict-page.png")


def test_a_new_specialism_typed_into_the_searchable_choice_is_predicted(app_platform, page):
    open_page(page, app_platform, "")  # Predict is the default page
    row = {**ROW, "SPECIALISME": "Nieuw specialisme"}
    for field in ("TYPE_WACHTTIJD", "ROAZ_REGIO", "TYPE_ZORGINSTELLING"):
        choose(page, field, row[field])
    box = page.get_by_test_id("stSelectbox").filter(has_text="SPECIALISME")
    box.locator("input").click()
    box.locator("input").fill("Nieuw specialisme")
    box.locator("input").press("Enter")
    page.get_by_test_id("stFormSubmitButton").locator("button").click()
    page.get_by_test_id("stMetricValue").first.wait_for()
    wait_until_done(page)
    assert page.get_by_test_id("stMetricValue").first.inner_text() == \
        f"{server_prediction(app_platform.champion, row):.2f} weeks"
    no_traceback(page)


def test_batch_upload_predicts_every_row_and_a_broken_file_gets_the_validation_report(app_platform, page, tmp_path):
    header = "ID;TYPE_WACHTTIJD;SPECIALISME;ROAZ_REGIO;TYPE_ZORGINSTELLING;WACHTTIJD"
    lines = [header] + [f"{i};{r['TYPE_WACHTTIJD']};{r['SPECIALISME']};{r['ROAZ_REGIO']};{r['TYPE_ZORGINSTELLING']};3"
                        for i, r in enumerate(SAMPLE_ROWS)]
    lines.append("9;Behandeling;Cardiologie;Nergens;Ziekenhuis;4")  # a region the model does not know
    good = tmp_path / "wachttijden-upload.csv"
    good.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    open_page(page, app_platform, "batch")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(good))
    page.get_by_text("2 of 3 row(s) predicted.").wait_for(timeout=PAGE_LOAD_MS)
    page.get_by_text("1 row(s): ROAZ_REGIO has an unknown category (e.g. 'Nergens')").first.wait_for()
    page.get_by_test_id("stDownloadButton").wait_for()
    wait_until_done(page)
    no_traceback(page)
    shot(page, "batch")

    broken = tmp_path / "wrong-separator.csv"
    broken.write_text(header.replace(";", ",") + "\n1,Behandeling,Cardiologie,Acute Zorgregio Oost,Ziekenhuis,3\n")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(broken))
    page.get_by_text("The file cannot be predicted.").wait_for(timeout=PAGE_LOAD_MS)
    page.get_by_text("wrong separator: expected ';'; the header looks ','-separated").wait_for()
    wait_until_done(page)
    no_traceback(page)
    shot(page, "batch-rejected")


def test_models_page_shows_the_champion_with_its_scores_gate_and_lineage(app_platform, page):
    open_page(page, app_platform, "models")
    page.get_by_text(f"champion → version {app_platform.champion_version}").first.wait_for()
    # Streamlit draws elements as skeletons until their component code has loaded, and its running
    # indicator shows only after a delay: wait until each score is on the page as text.
    for name, value in CHAMPION_METRICS.items():
        page.wait_for_function("pattern => new RegExp(pattern).test(document.body.innerText)",
                               arg=rf"{name.replace('_', ' ')}\s+{value:.3f}\b")
    wait_until_done(page)
    body = page.inner_text("body")
    for name, value in CHAMPION_METRICS.items():
        assert re.search(rf"{name.replace('_', ' ')}\s+{value:.3f}\b", body), (name, body[-1500:])
    assert "promote: no champion yet" in body
    page.get_by_test_id("stImage").first.wait_for()  # the training curves, from the run's artifacts
    no_traceback(page)
    shot(page, "models")


@pytest.mark.parametrize("path", ["shadow", "data"])
def test_report_pages_say_what_is_missing(app_platform, page, path):
    open_page(page, app_platform, path)
    wait_until_done(page)
    page.get_by_test_id("stAlert").first.wait_for()
    body = page.inner_text("body")
    assert {"shadow": "No shadow report yet", "data": "No validation report"}[path] in body
    no_traceback(page)
    shot(page, path)
