"""prepare_images: when the xray image set under raw/xray/ changes, validate it and write a partition of
TFRecord shards (train/validation/test by content hash) for train_images.

Runs on the schedule in variables/<env>/schedules.json like prepare_dataset: each run digests the set
(content and class folder of every image, hashed once per file version: tasks.data.arrivals) and
prepares it when the ledger knows that snapshot neither as prepared nor as rejected; it keeps looking
for `watch_minutes` and otherwise ends as skipped. A set with too many unusable files fails with the
validation report (intermediate/xray/<run>/validation.txt) and is recorded as rejected.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from pipelines._common import DEFAULT_ARGS, load_settings, no_retry_on, open_lake
from pipelines._schedules import MAX_WATCH_MINUTES, dag_schedule
from pipelines.assets import PREPROCESSED_XRAY

SCHEDULE = dag_schedule("prepare_images")


@dag(
    dag_id="prepare_images",
    schedule=SCHEDULE.schedule,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two runs looking at once would both take the same new snapshot
    default_args=DEFAULT_ARGS,
    params={
        "reprocess": Param(False, type="boolean", description="Prepare the current set even if it was prepared."),
        "watch_minutes": Param(
            SCHEDULE.watch_minutes, type="integer", minimum=0, maximum=MAX_WATCH_MINUTES,
            description="How long to keep looking for a new image set before the run ends as skipped.",
        ),
    },
    tags=["xray", "data"],
    doc_md=__doc__,
)
def prepare_images():
    @task.sensor(poke_interval=60, timeout=MAX_WATCH_MINUTES * 60, mode="reschedule")
    def wait_for_new_images(params=None, dag_run=None):
        from datetime import timedelta

        from airflow.sdk import PokeReturnValue, timezone
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.data.prepare_images import new_images, no_new_images, snapshot

        lake = open_lake(load_settings())
        found = (snapshot if params.get("reprocess") else new_images)(lake)
        if found is not None:
            return PokeReturnValue(is_done=True, xcom_value=found.to_dict())
        if timezone.utcnow() - dag_run.start_date < timedelta(minutes=params["watch_minutes"]):
            return PokeReturnValue(is_done=False)
        raise AirflowSkipException(no_new_images(lake))

    @task(outlets=[PREPROCESSED_XRAY])
    def prepare(found: dict, run_id=None, outlet_events=None) -> dict:
        from models.xray.validation import ImageValidationError
        from tasks.data.prepare import partition_for
        from tasks.data.prepare_images import prepare_images as prepare_set
        from tasks.data.prepare_images import validation_config

        settings = load_settings()
        with no_retry_on(ImageValidationError, ValueError):  # bad images or a bad xray_* setting
            manifest = prepare_set(open_lake(settings), partition_for(run_id), run_id=run_id,
                                   config=validation_config(settings))
        outlet_events[PREPROCESSED_XRAY].extra = {
            "partition": manifest["partition"], "raw_sha256": manifest["snapshot_sha256"],
        }
        return {k: manifest[k] for k in ("partition", "splits", "snapshot_sha256")}

    prepare(wait_for_new_images())


prepare_images()
