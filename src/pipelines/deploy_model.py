"""Serve one registered model version (alias or version number) on KServe or locally, then smoke-test it.

Runs by itself after every new champion (the `wachttijden_champion` asset event that train_model's
promote task and promote_model emit) with the default `model_ref` "champion", and by hand with any
alias or version. One run at a time: runs queue behind each other, and each serves what the alias
points at when it starts, so the newest champion is what stays served.

Target and ports come from the Airflow Variables read by `tasks.config.Settings` (`deploy_target`
"kubernetes" applies a ServingRuntime and an InferenceService in `kserve_namespace`; "local" starts
the model server on `local_inference_port`). Re-running converges: same version, no change.
The DAG itself is the shared deploy DAG (pipelines/_deploy.py); deploy_xray is the image model's.
"""

from __future__ import annotations

from pipelines._deploy import deploy_dag
from pipelines.assets import CHAMPION_WACHTTIJDEN

deploy_dag(dag_id="deploy_model", use_case="wachttijden", champion=CHAMPION_WACHTTIJDEN, doc_md=__doc__)
