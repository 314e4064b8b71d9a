"""prepare_images: when the xray image set under raw/xray/ changes, validate it and write a partition of
TFRecord shards (train/validation/test by content hash) for train_images.

Runs on the schedule in variables/<env>/schedules.json like prepare_dataset: each run digests the set
(content and class folder of every image, hashed once per file version: tasks.data.arrivals) and
prepares it when the ledger knows that snapshot neither as prepared nor as rejected; it keeps looking
for `watch_minutes` and otherwise ends as skipped. A set with too many unusable files fails with the
validation report (intermediate/xray/<run>/validation.txt) and is recorded as rejected.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from pipelines._common import load_settings, no_retry_on, open_lake
from pipelines._schedules import dag_schedule, prepare_dag_arguments, watching_sensor
from pipelines.assets import PREPROCESSED_XRAY

SCHEDULE = dag_schedule("prepare_images")


def _look(params: dict) -> tuple[bool, dict] | None:
    """The image set's snapshot when the ledger does not know it (with reprocess: whatever it is)."""
    from tasks.data.prepare_images import new_images, snapshot

    found = (snapshot if params.get("reprocess") else new_images)(open_lake(load_settings()))
    return None if found is None else (True, found.to_dict())


def _nothing_new(params: dict) -> str:
    from tasks.data.prepare_images import no_new_images

    return no_new_images(open_lake(load_settings()))


@dag(
    dag_id="prepare_images",
    schedule=SCHEDULE.schedule,
    tags=["xray", "data"],
    doc_md=__doc__,
    **prepare_dag_arguments(
        SCHEDULE,
        params={"reprocess": Param(False, type="boolean",
                                   description="Prepare the current set even if it was prepared.")},
        watch_description="How long to keep looking for a new image set before the run ends as skipped.",
    ),
)
def prepare_images():
    wait_for_new_images = watching_sensor("wait_for_new_images", _look, _nothing_new)

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
