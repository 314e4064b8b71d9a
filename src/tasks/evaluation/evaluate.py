"""The evaluation gate against the registry: score challenger and champion on the same test split, decide,
and record the decision on the challenger's model version (tags) and beside its run (report artifacts)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.wachttijden.schema import FEATURES, TARGET
from tasks.data.datalake import DataLake
from tasks.data.prepare import read_split
from tasks.evaluation.gate import Decision, GateRules, Score, decide, slice_scores
from tasks.evaluation.report import Context, to_html, to_markdown
from tasks.registry import CHAMPION, alias_version, require_tracking_server

TAG_PREFIX = "sluice.gate."
DECISION_TAG = TAG_PREFIX + "decision"
REASON_TAG = TAG_PREFIX + "reason"
BLOCKING_SLICE_TAG = TAG_PREFIX + "blocking_slice"
REPORT_TAG = TAG_PREFIX + "report"
REPORT_DIR = "gate"
NONE = "none"
MAX_TAG_CHARS = 5000


def model_uri(model_name: str, version: str) -> str:
    return f"models:/{model_name}/{version}"


def predict(uri: str, frame: pd.DataFrame) -> np.ndarray:
    """A registered model's predictions for `frame` (through its MLflow pyfunc, as the registry stores it)."""
    import mlflow.pyfunc

    output = mlflow.pyfunc.load_model(uri).predict(frame[list(FEATURES)].astype(str))
    if isinstance(output, pd.DataFrame):
        output = output["predictions"] if "predictions" in output else output.iloc[:, 0]
    return np.asarray(output, dtype=np.float64).reshape(-1)


def score_and_decide(
    test: pd.DataFrame, challenger: np.ndarray, champion: np.ndarray | None, rules: GateRules
) -> Decision:
    """The gate's decision for two models' predictions on the same rows (`champion` None: there is none)."""
    actual = test[TARGET].to_numpy()
    challenger_score = Score.of(challenger, actual)
    if champion is None:
        return decide(challenger_score, None, slice_scores(test, actual, challenger, challenger, rules.slice_columns),
                      rules)
    slices = slice_scores(test, actual, challenger, champion, rules.slice_columns)
    return decide(challenger_score, Score.of(champion, actual), slices, rules)


@dataclass(frozen=True)
class Scoring:
    """How a use case's models are scored on a partition's test split: read it, predict with a registered
    model (what the gate compares), and decide from both models' predictions."""

    test_split: Callable[[DataLake, str], Any]
    predict: Callable[[str, Any], np.ndarray]
    score_and_decide: Callable[[Any, np.ndarray, np.ndarray | None, GateRules], Decision]


TABULAR = Scoring(lambda lake, partition: read_split(lake, partition, "test"), predict, score_and_decide)


def _score_fields(score: Any) -> list[str]:
    return [name for _, name in score.REPORT_ROWS]


def gate_tags(decision: Decision, context: Context, report_uri: str) -> dict[str, str]:
    """The model version tags that record a decision (the numbers as text, "none" where there is no champion)."""
    champion = decision.champion
    fields = _score_fields(decision.challenger)
    tags = {
        DECISION_TAG: decision.decision,
        REASON_TAG: decision.reason,
        **{TAG_PREFIX + f"challenger_{name}": f"{getattr(decision.challenger, name):.6f}" for name in fields},
        TAG_PREFIX + "champion_version": context.champion_version or NONE,
        **{TAG_PREFIX + f"champion_{name}": f"{getattr(champion, name):.6f}" if champion else NONE for name in fields},
        TAG_PREFIX + "margin": str(decision.rules.margin),
        TAG_PREFIX + "slice_tolerance": str(decision.rules.slice_tolerance),
        TAG_PREFIX + "min_slice_rows": str(decision.rules.min_slice_rows),
        BLOCKING_SLICE_TAG: decision.blocking_slice.name if decision.blocking_slice else NONE,
        TAG_PREFIX + "partition": context.partition,
        TAG_PREFIX + "test_rows": str(decision.challenger.rows),
        TAG_PREFIX + "airflow_run": context.airflow_run or NONE,
        REPORT_TAG: report_uri,
    }
    return {key: value[:MAX_TAG_CHARS] for key, value in tags.items()}


def record(client: Any, decision: Decision, context: Context) -> str:
    """Log the report next to the challenger's training run and tag its version; returns the report's URI."""
    version = client.get_model_version(context.model_name, context.challenger_version)
    run_id = version.run_id
    client.log_text(run_id, to_markdown(decision, context), f"{REPORT_DIR}/report.md")
    client.log_text(run_id, to_html(decision, context), f"{REPORT_DIR}/report.html")
    client.log_text(run_id, json.dumps({**decision.to_dict(), "context": vars(context)}, indent=1, default=str),
                    f"{REPORT_DIR}/report.json")
    report_uri = f"runs:/{run_id}/{REPORT_DIR}/report.md"
    for key, value in gate_tags(decision, context, report_uri).items():
        client.set_model_version_tag(context.model_name, context.challenger_version, key, value)
    return report_uri


def evaluate_challenger(
    lake: DataLake,
    partition: str,
    *,
    tracking_uri: str,
    model_name: str,
    challenger_version: str,
    rules: GateRules,
    airflow_run: str = "",
    scoring: Scoring = TABULAR,
) -> dict[str, Any]:
    """Score the challenger version and the current champion on `partition`'s test split, decide, record.

    Returns the decision as a plain dict (XCom): decision, promote, reason, versions, MAEs, the
    blocking slice and the report's URI. Recording it never moves an alias: promotion is its own step.
    """
    require_tracking_server(tracking_uri)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    challenger_version = str(challenger_version)
    champion_version = alias_version(client, model_name, CHAMPION)
    test = scoring.test_split(lake, partition)
    challenger = scoring.predict(model_uri(model_name, challenger_version), test)
    if champion_version == challenger_version:
        # A repeated evaluation after the promotion: the model is compared with itself and kept as it is.
        decision = scoring.score_and_decide(test, challenger, challenger, rules)
        decision = Decision(False, f"version {challenger_version} is already the {CHAMPION}", rules,
                            decision.challenger, decision.champion, decision.slices)
    else:
        champion = scoring.predict(model_uri(model_name, champion_version), test) if champion_version else None
        decision = scoring.score_and_decide(test, challenger, champion, rules)
    context = Context(model_name, challenger_version, champion_version, partition, airflow_run)
    report_uri = record(client, decision, context)
    metric = rules.objective.metric
    return {
        "decision": decision.decision,
        "promote": decision.promote,
        "reason": decision.reason,
        "model_name": model_name,
        "challenger_version": challenger_version,
        "champion_version": champion_version,
        "metric": metric,
        "metric_label": rules.objective.label,
        f"challenger_{metric}": rules.objective.value(decision.challenger),
        f"champion_{metric}": rules.objective.value(decision.champion) if decision.champion else None,
        "challenger_score": asdict(decision.challenger),
        "blocking_slice": decision.blocking_slice.name if decision.blocking_slice else None,
        "partition": partition,
        "report_uri": report_uri,
    }
