"""Run-time settings of the pipelines, read from Airflow Variables (or AIRFLOW_VAR_* env vars)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

# A lookup is `Variable.get`-shaped: (key, default) -> value. The DAG layer passes Airflow's,
# tests pass a dict's; this module never imports Airflow.
Lookup = Callable[[str, str | None], str | None]


@dataclass(frozen=True)
class Settings:
    """Every per-environment value the tasks need. Keys are the Airflow Variable names."""

    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    # Data lake: a folder path/file:// URL, azure://<account>, s3://<bucket>[/<prefix>], or
    # wasb://<airflow_conn_id> (resolved by the DAG layer to an Azure connection string).
    datalake_url: str = ".local/datalake"
    # prepare_dataset runs without a raw_file param prepare the oldest file under raw/<raw_prefix> whose
    # content the ledger does not know (date partitions raw/wachttijden/YYYY/MM/DD/*.csv, or the single
    # raw/wachttijden/wachttijden.csv). raw_file pins them to one file instead; empty: look under the prefix.
    raw_prefix: str = "wachttijden/"
    raw_file: str = ""
    # Drift of new data against the champion's training data, checked by prepare_dataset's validate:
    # "warn" records it (champion version tag, MLflow, the task's result) and goes on, "fail" stops the
    # run with the report, "off" skips the check. A feature drifts when its PSI is above
    # drift_psi_threshold; the target when its two-sample KS statistic is above drift_ks_threshold
    # and the test's p-value below drift_ks_alpha.
    drift_mode: str = "warn"
    drift_psi_threshold: float = 0.2
    drift_ks_threshold: float = 0.1
    drift_ks_alpha: float = 0.05
    model_name: str = "wachttijden"
    # "local": deploy tasks start processes on this machine; "kubernetes": apply KServe objects.
    deploy_target: str = "local"
    kserve_namespace: str = "models"
    # Service account whose Secret lets KServe's storage initializer read the model artifacts.
    kserve_service_account: str = ""
    # The MLflow server's --artifacts-destination (wasbs://..., s3://...): maps mlflow-artifacts:/
    # download URIs to a storageUri KServe can read.
    mlflow_artifacts_destination: str = ""
    # The serving image for the ServingRuntime; empty uses the pin in deploy/versions.env
    # (which git-sync does not bring to the cluster, so set it there).
    serving_image: str = ""
    # Where local-mode deploy tasks keep pid files, logs and generated specs.
    local_run_dir: str = ".local/run"
    local_serving_python: str = ".venv-serving/bin/python"
    local_inference_port: int = 8081
    local_router_port: int = 8082
    # The xray model server (deploy_xray, ./deploy-local.sh --with-xray). Not 8083: that is the tabular
    # challenger's port (local_inference_port + 2) under ./deploy-local.sh --mirror.
    local_xray_port: int = 8084
    # Training hyper-parameters (JSON object), e.g. {"epochs": 10, "batch_size": 256}.
    train_config: dict = field(default_factory=dict)
    # The evaluation gate (train_model's evaluate task) scores challenger and champion on the new
    # partition's test split. The challenger is promoted only when its MAE is below the champion's by
    # this relative margin (0.01: at least 1 % lower)...
    promotion_margin: float = 0.01
    # ... and on no slice (each value of TYPE_WACHTTIJD and of ROAZ_REGIO with at least
    # promotion_min_slice_rows test rows) its MAE is above the champion's by more than this relative share.
    promotion_slice_tolerance: float = 0.05
    promotion_min_slice_rows: int = 200
    # The xray image use case (prepare_images, train_images): its registered model, how much bad
    # input a raw image set may hold (unusable share, images and share per class; allow_colour converts
    # RGB-stored gray scans instead of dropping them), its training config (JSON, like train_config),
    # and its gate: the challenger's test ROC AUC must beat the champion's by this many AUC points.
    xray_model_name: str = "xray"
    xray_max_bad_fraction: float = 0.05
    xray_min_images_per_class: int = 10
    xray_min_class_share: float = 0.1
    xray_allow_colour: bool = False
    xray_train_config: dict = field(default_factory=dict)
    xray_promotion_margin: float = 0.005
    # Fail a training task at once when TensorFlow sees no GPU, instead of training on CPU for hours
    # (a pod that missed the GPU node pool, an image without CUDA). Off where there is no GPU.
    require_gpu: bool = False
    # Who gets the alert mails (task failures, gate decisions, drift warnings): addresses separated by
    # commas, semicolons or spaces, sent through the Airflow connection smtp_default. Empty: no mail.
    alert_emails: str = ""

    @classmethod
    def load(cls, lookup: Lookup) -> Settings:
        """Build settings from a Variable-style lookup; missing keys keep their defaults."""
        values = {}
        for f in fields(cls):
            raw = lookup(f.name, None)
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        return cls(**values)

    def resolve_path(self, value: str, root: Path) -> Path:
        """Relative local paths in settings are relative to the project root."""
        path = Path(value)
        return path if path.is_absolute() else root / path


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def _coerce(name: str, type_name: object, raw: str | dict | float | int | bool) -> object:
    type_name = str(type_name)
    if "bool" in type_name:
        # A Variable is text ("true", "False", "1"); bool("false") would be True.
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"Airflow Variable {name!r} has an invalid value {raw!r}: expected true or false")
    try:
        if "dict" in type_name:
            return raw if isinstance(raw, dict) else json.loads(raw)
        if "int" in type_name:
            return int(raw)
        if "float" in type_name:
            return float(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Airflow Variable {name!r} has an invalid value {raw!r}: {exc}") from exc
    return str(raw)
