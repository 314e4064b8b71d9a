"""Serve the xray image model's registered version (alias or version number) on KServe or locally, then
smoke-test it with two synthetic scans (one per class).

Runs by itself after every new xray champion (the `xray_champion` asset event of train_images' promote
task) with `model_ref` "champion", and by hand with any alias or version. The same Airflow steps as
deploy_model (pipelines/_deploy.py) with the xray use case: the registered model `xray_model_name`,
locally a second supervised model server on `local_xray_port` (8084) beside the tabular one, in the
cluster the InferenceService `xray` from the same builders and ServingRuntime. Re-running converges.
"""

from __future__ import annotations

from pipelines._deploy import deploy_dag
from pipelines.assets import CHAMPION_XRAY

deploy_dag(dag_id="deploy_xray", use_case="xray", champion=CHAMPION_XRAY, doc_md=__doc__)
