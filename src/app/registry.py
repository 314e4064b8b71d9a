"""What the Models and Predict pages show of the registry: versions with aliases, scores, gate and lineage,
and the vocabularies of the version that is served."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.mlflow_client import Mlflow
from models.wachttijden.schema import FEATURES, KNOWN_CATEGORIES, OPEN_FEATURES

# Where a logged wachttijden model keeps its vocabularies (models.wachttijden.model writes them into the
# pyfunc's "model_dir" artifact, which MLflow copies to artifacts/model_files/).
MODEL_FILES = "artifacts/model_files"
METRICS = ("validation_mae", "validation_rmse", "test_mae", "test_rmse")
GATE_PREFIX = "sluice.gate."
LINEAGE = {
    "sluice.data.partition": "data partition",
    "sluice.data.raw_sha256": "raw file sha256",
    "sluice.git_commit": "git commit",
    "sluice.airflow.dag_id": "Airflow DAG",
    "sluice.airflow.run_id": "Airflow run",
    "sluice.airflow.prepare_run_id": "prepare_dataset run",
}


@dataclass
class VersionRow:
    version: str
    aliases: list[str]
    run_id: str
    created_ms: int
    metrics: dict[str, float] = field(default_factory=dict)
    gate: dict[str, str] = field(default_factory=dict)  # sluice.gate.* without the prefix
    lineage: dict[str, str] = field(default_factory=dict)

    def table_row(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "aliases": ", ".join(self.aliases),
            **{name: self.metrics.get(name) for name in METRICS},
            "gate decision": self.gate.get("decision", ""),
            "gate reason": self.gate.get("reason", ""),
            "data partition": self.lineage.get("data partition", ""),
            "git commit": self.lineage.get("git commit", "")[:12],
            "Airflow run": self.lineage.get("Airflow run", ""),
        }


def registered_versions(mlflow: Mlflow, name: str) -> list[VersionRow]:
    """Every version, newest first, with its aliases, its run's scores, the gate's tags and its lineage."""
    aliases: dict[str, list[str]] = {}
    for alias, version in mlflow.aliases(name).items():
        aliases.setdefault(version, []).append(alias)
    rows = []
    for version in mlflow.versions(name):
        tags, run_id = version["tags"], version.get("run_id") or ""
        metrics = mlflow.run(run_id)["metrics"] if run_id else {}
        rows.append(VersionRow(
            version=str(version["version"]),
            aliases=sorted(aliases.get(str(version["version"]), [])),
            run_id=run_id,
            created_ms=int(version.get("creation_timestamp") or 0),
            metrics={k: v for k, v in metrics.items() if k in METRICS},
            gate={k.removeprefix(GATE_PREFIX): v for k, v in tags.items() if k.startswith(GATE_PREFIX)},
            lineage={label: tags[key] for key, label in LINEAGE.items() if key in tags},
        ))
    return rows


@dataclass(frozen=True)
class FormChoices:
    """What the Predict form offers: a closed list per feature, open features also take new values."""

    vocabularies: dict[str, list[str]]
    open_features: tuple[str, ...]
    version: str | None  # the version the lists come from; None: the schema's published categories
    note: str = ""


def form_choices(mlflow: Mlflow, name: str, alias: str = "champion") -> FormChoices:
    """The vocabularies of the version behind `alias` (what the model server serves after deploy_model)."""
    version = mlflow.aliases(name).get(alias)
    if version is None:
        return schema_choices(f"no version of {name} has the alias {alias!r} yet (run the pipelines)")
    vocabularies = mlflow.version_artifact(name, version, f"{MODEL_FILES}/vocabularies.json")
    if vocabularies is None:
        return schema_choices(f"version {version} has no vocabularies.json")
    open_features = mlflow.version_artifact(name, version, f"{MODEL_FILES}/open_features.json")
    values = json.loads(vocabularies)
    return FormChoices(
        vocabularies={f: sorted(values[f]) for f in FEATURES},
        open_features=tuple(json.loads(open_features)) if open_features else (),
        version=version,
    )


def schema_choices(why: str) -> FormChoices:
    """The published closed categories; SPECIALISME free text. Used when the model's own lists are unknown."""
    return FormChoices(
        vocabularies={f: sorted(KNOWN_CATEGORIES.get(f, ())) for f in FEATURES},
        open_features=OPEN_FEATURES,
        version=None,
        note=f"The drop-downs show the published categories, not the model's: {why}.",
    )
