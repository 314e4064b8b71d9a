"""Glue shared by the DAG files: Airflow-side settings lookup and default task arguments."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

# src/ is the DAG folder; the project root (for local-mode relative paths) is its parent.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_ARGS = {
    "owner": "sluice",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}


def load_settings():
    """Settings from Airflow Variables, read at task run time (never at parse time)."""
    from airflow.sdk import Variable

    from tasks.config import Settings

    return Settings.load(lambda key, default: Variable.get(key, default=default))
