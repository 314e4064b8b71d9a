"""When the DAGs run by themselves: variables/<SLUICE_ENV>/schedules.json, a file in git.

A file and not a Variable because Airflow needs a DAG's schedule when it parses the file, where
Variable.get is off limits (as for the pod overrides in _common.py); a git push changes it. The
cluster's DAG folder is the git-synced checkout's src/, so the file sits at the same place relative
to this module there; SLUICE_SCHEDULES_FILE names another file (tests do).

    {"prepare_dataset": {"schedule": "*/15 * * * *", "watch_minutes": 10}}

`schedule` is anything Airflow takes as a schedule string (cron, "@hourly"), or null for runs only
when triggered. `watch_minutes` is how long a run without a raw_file keeps looking for a new raw
file (a reschedule-mode sensor: no worker slot is held between looks) before it ends as skipped;
keep it below the schedule's period. A DAG the file does not name gets DEFAULTS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import Param, task

from pipelines._common import DAG_DEFAULTS, PROJECT_ROOT

SCHEDULES_FILE_ENV = "SLUICE_SCHEDULES_FILE"
MAX_WATCH_MINUTES = 6 * 60
DEFAULTS = {
    "prepare_dataset": {"schedule": "*/15 * * * *", "watch_minutes": 10},
    "prepare_images": {"schedule": "*/15 * * * *", "watch_minutes": 10},
}


@dataclass(frozen=True)
class DagSchedule:
    schedule: str | None
    watch_minutes: int


def schedules_file() -> Path:
    default = PROJECT_ROOT / "variables" / os.environ.get("SLUICE_ENV", "local") / "schedules.json"
    return Path(os.environ.get(SCHEDULES_FILE_ENV) or default)


def dag_schedule(dag_id: str) -> DagSchedule:
    """This environment's schedule of `dag_id`; a malformed file fails the DAG's import, naming the file."""
    path = schedules_file()
    entries = json.loads(path.read_text()) if path.exists() else {}
    entry = {**DEFAULTS.get(dag_id, {"schedule": None, "watch_minutes": 0}), **entries.get(dag_id, {})}
    unknown = set(entry) - {"schedule", "watch_minutes"}
    schedule, watch = entry["schedule"], entry["watch_minutes"]
    if unknown or not (schedule is None or (isinstance(schedule, str) and schedule.strip())):
        raise ValueError(f"{path}: {dag_id} needs a schedule string or null (and no keys {sorted(unknown)})")
    if not isinstance(watch, int) or isinstance(watch, bool) or not 0 <= watch <= MAX_WATCH_MINUTES:
        raise ValueError(f"{path}: {dag_id} watch_minutes must be whole minutes from 0 to {MAX_WATCH_MINUTES}")
    return DagSchedule(schedule.strip() if schedule else None, watch)


def prepare_dag_arguments(schedule: DagSchedule, *, watch_description: str, params: dict, **arguments: Any) -> dict:
    """dag() arguments of a prepare DAG besides its id and `schedule.schedule`: one run at a time (two runs
    looking at once would both take the same new data), and the `watch_minutes` param after `params`."""
    watch = Param(schedule.watch_minutes, type="integer", minimum=0, maximum=MAX_WATCH_MINUTES,
                  description=watch_description)
    return {"max_active_runs": 1, **DAG_DEFAULTS, "params": {**params, "watch_minutes": watch}, **arguments}


def watching_sensor(task_id: str, look: Callable[[dict], tuple[bool, Any] | None], nothing_new: Callable[[dict], str]):
    """The first task of a prepare DAG: look for new raw data once a minute, in reschedule mode (no worker slot
    is held between looks).

    `look(params)` answers one look: None when there is nothing new (the run keeps looking for the
    `watch_minutes` param, then ends as skipped with `nothing_new(params)` as the reason), or (done, XCom
    value) as the poke's answer (a file named by a param is waited for until the sensor's timeout).
    """

    @task.sensor(task_id=task_id, poke_interval=60, timeout=MAX_WATCH_MINUTES * 60, mode="reschedule")
    def watch(params=None, dag_run=None):
        from datetime import timedelta

        from airflow.sdk import PokeReturnValue, timezone
        from airflow.sdk.exceptions import AirflowSkipException

        answer = look(params)
        if answer is not None:
            done, value = answer
            return PokeReturnValue(is_done=done, xcom_value=value)
        if timezone.utcnow() - dag_run.start_date < timedelta(minutes=params["watch_minutes"]):
            return PokeReturnValue(is_done=False)
        raise AirflowSkipException(nothing_new(params))

    return watch
