"""The one command line that starts the app (./deploy-local.sh and the tests use it; the image sets the same
options as environment variables): loopback only, headless, no usage statistics, no tracebacks shown."""

from __future__ import annotations

from pathlib import Path

MAIN = Path(__file__).resolve().with_name("main.py")
SRC = MAIN.parents[1]
HEALTH_PATH = "/_stcore/health"

# Streamlit reads STREAMLIT_<SECTION>_<OPTION> too; the environment copy covers any child process it starts.
ENV = {
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "STREAMLIT_SERVER_HEADLESS": "true",
    "STREAMLIT_CLIENT_SHOW_ERROR_DETAILS": "none",
    "PYTHONPATH": str(SRC),
}


def command(python: str | Path, port: int, address: str = "127.0.0.1") -> list[str]:
    return [
        str(python), "-m", "streamlit", "run", str(MAIN),
        "--server.address", address,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        # A page never shows a traceback: the pages report problems themselves, this hides anything missed.
        "--client.showErrorDetails", "none",
        "--client.toolbarMode", "viewer",
        # No file watcher: the app is not being edited where it runs, and inotify watches cost memory.
        "--server.fileWatcherType", "none",
        "--global.developmentMode", "false",
    ]
