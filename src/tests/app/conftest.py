"""Package fixtures of the browser tests: one real platform (MLflow, three model servers, the app) and one
Chromium, shared by every page visit, with a watch on every socket this test process's children open.

Package scope, not session: Playwright's sync API keeps an event loop running on the main thread while
it is open, so every later test calling asyncio.run() (and the deploy-local browser test's own
sync_playwright()) would fail; closing it after the last app test ends that loop."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.app.platform import Platform, running_platform
from tests.serving import conftest as serving
from tests.support.browser import chromium_context
from tests.support.netwatch import ConnectionWatch

# The small trained models of the serving tests (built once, cached by their sources' digest).
model_cache_root = serving.model_cache_root
champion_model_dir = serving.champion_model_dir
challenger_model_dir = serving.challenger_model_dir
xray_model_dir = serving.xray_model_dir


@pytest.fixture(scope="package")
def app_platform(tmp_path_factory, champion_model_dir, challenger_model_dir, xray_model_dir) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("app-platform"), champion_model_dir, challenger_model_dir,
                          xray_model_dir) as platform:
        yield platform


@pytest.fixture(scope="package")
def loopback_watch() -> Iterator[ConnectionWatch]:
    """Every process this test process started (servers, app, Playwright's driver, Chromium): none may
    open a connection outside 127.0.0.0/8; checked when the session's browser closes."""
    with ConnectionWatch(lambda: [os.getpid()]) as watch:
        yield watch
    assert watch.samples > 0


@pytest.fixture(scope="package")
def browser(loopback_watch):
    with chromium_context() as context:
        yield context
    loopback_watch.sample()
    assert not loopback_watch.violations, f"connections outside loopback: {sorted(loopback_watch.violations)}"


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.close()
