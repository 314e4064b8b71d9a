"""train_images (Airflow): train the three xray architectures in parallel (mapped tasks on the GPU pool) on a prepared
partition, register the best by validation ROC AUC as `challenger`, and let the evaluation gate decide.

The DAG is train_model's (pipelines/_lifecycle.py) with the xray use case: the gate promotes the
challenger when there is no champion yet, or its test-split ROC AUC beats the champion's by
`xray_promotion_margin` AUC points (no slices). promote emits `xray_champion`, which deploy_xray runs on.
Lineage tags, the `sluice.device` tag, the gate report and the alert mails are the same as for
wachttijden. The `train_config` param replaces the xray_train_config Variable for one run.
"""

from pipelines._lifecycle import training_dag
from pipelines.assets import CHAMPION_XRAY, PREPROCESSED_XRAY

training_dag(
    dag_id="train_images", use_case="xray", preprocessed=PREPROCESSED_XRAY, champion=CHAMPION_XRAY,
    plan_task_id="plan_architectures", train_task_id="train_architecture",
    train_config_example='{"epochs": 3, "width": 8, "architectures": ["small_cnn"]}', doc_md=__doc__,
)
