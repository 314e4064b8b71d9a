"""train_model: train candidates in parallel on a prepared partition, register the best as `challenger`,
then let the evaluation gate decide whether it replaces `champion`.

- **evaluate** scores the challenger and the current champion on the same rows (the partition's test
  split) and records the decision on the challenger's model version (tags `sluice.gate.*`) and as a
  report beside its run (`gate/report.{md,html,json}`); it mails the decision to `alert_emails`.
  Promote only when there is no champion yet, or the challenger's MAE is lower by `promotion_margin`
  and no slice (each TYPE_WACHTTIJD and ROAZ_REGIO value with at least `promotion_min_slice_rows`
  test rows) is worse by more than `promotion_slice_tolerance`.
- **promote** (skipped when the gate says keep) moves `champion`, leaves the replaced one as
  `previous-champion`, and emits the `wachttijden_champion` asset event that runs deploy_model.

Every run and version carries its lineage (tasks.lineage: partition, raw file hash, git commit,
Airflow run ids). The `train_config` param replaces the train_config Variable for one run. The DAG is
pipelines/_lifecycle.py's, shared with train_images.
"""

from pipelines._lifecycle import training_dag
from pipelines.assets import CHAMPION_WACHTTIJDEN, PREPROCESSED_WACHTTIJDEN

training_dag(
    dag_id="train_model", use_case="wachttijden", preprocessed=PREPROCESSED_WACHTTIJDEN,
    champion=CHAMPION_WACHTTIJDEN, plan_task_id="plan_candidates", train_task_id="train_candidate",
    train_config_example='{"epochs": 3, "candidates": [{"name": "small", "hidden_units": [16]}]}', doc_md=__doc__,
)
