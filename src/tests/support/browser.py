"""Debian's Chromium driven by Playwright, locked to loopback: the browser tests' one way to open a browser.

Playwright's own browser download cannot work on these machines (and would be another pinned binary):
the tests launch /usr/bin/chromium (scripts/setup.sh dev installs it) by its path. The flags keep
Chromium from dialling anything but 127.0.0.1: no QUIC, no background/component/sync traffic, and every
host name but 127.0.0.1 resolving to nothing. A fresh profile per launch (a temporary user-data-dir).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


@contextmanager
def chromium_context(viewport: tuple[int, int] = (1280, 900)) -> Iterator[object]:
    """A Playwright BrowserContext of a fresh headless Chromium (closed, with its profile, on exit)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh dev as root (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="sluice-chromium-") as profile, sync_playwright() as playwright:
        # A persistent context is how Playwright takes a user-data-dir (launch() refuses the flag).
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        context.set_default_timeout(60_000)
        try:
            yield context
        finally:
            context.close()
