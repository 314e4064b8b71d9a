"""The evaluation gate's rule, as a pure function of scores: does the challenger replace the champion?

Both models are scored on the same rows (the new partition's test split). The challenger is
promoted when there is no champion yet, or when

1. its MAE is below the champion's by the relative `margin` (challenger < champion * (1 - margin)), and
2. on no slice (each value of each of `slice_columns`) with at least `min_slice_rows` rows its MAE is
   above the champion's by more than the relative `slice_tolerance`
   (challenger <= champion * (1 + slice_tolerance) on every such slice).

Slices with fewer rows are listed in the report but do not decide: their MAE is mostly noise.

The metric is per use case (`GateRules.objective`): MAE (lower is better, margin relative to the
champion's) for wachttijden; ROC AUC (higher is better, margin in AUC points, no slices) for xray.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SLICE_COLUMNS = ("TYPE_WACHTTIJD", "ROAZ_REGIO")
PROMOTE = "promote"
KEEP = "keep"


@dataclass(frozen=True)
class Objective:
    """The metric the gate compares: a field of the use case's score, its direction, and whether the
    margin is a share of the champion's value (MAE) or absolute points (AUC, which has a ceiling of 1)."""

    metric: str = "mae"
    label: str = "MAE"
    higher_is_better: bool = False
    relative_margin: bool = True

    def value(self, score: Any) -> float:
        return float(getattr(score, self.metric))

    def required(self, champion: float, margin: float) -> float:
        """What the challenger's value must beat (strictly)."""
        step = champion * margin if self.relative_margin else margin
        return champion + step if self.higher_is_better else champion - step

    def beats(self, value: float, required: float) -> bool:
        return value > required if self.higher_is_better else value < required

    def change(self, challenger: float, champion: float) -> str:
        if not self.relative_margin:
            return f"{challenger - champion:+.4f}"
        return f"{(challenger - champion) / champion if champion else math.inf:+.1%}"

    def margin_text(self, margin: float) -> str:
        return f"{margin:.1%}" if self.relative_margin else f"{margin:.4f}"


MAE = Objective()
ROC_AUC = Objective("auc", "ROC AUC", higher_is_better=True, relative_margin=False)


@dataclass(frozen=True)
class GateRules:
    """The thresholds of the gate (the promotion_* Airflow Variables)."""

    margin: float = 0.01
    slice_tolerance: float = 0.05
    min_slice_rows: int = 200
    slice_columns: tuple[str, ...] = SLICE_COLUMNS
    objective: Objective = MAE

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise ValueError(f"promotion_margin must be within [0, 1), not {self.margin}")
        if not self.slice_tolerance >= 0:
            raise ValueError(f"promotion_slice_tolerance must be 0 or more, not {self.slice_tolerance}")
        if self.min_slice_rows < 1:
            raise ValueError(f"promotion_min_slice_rows must be 1 or more, not {self.min_slice_rows}")

    @classmethod
    def of(cls, settings: Any) -> GateRules:
        return cls(
            margin=float(settings.promotion_margin),
            slice_tolerance=float(settings.promotion_slice_tolerance),
            min_slice_rows=int(settings.promotion_min_slice_rows),
        )

    def to_dict(self) -> dict[str, Any]:
        rules = {**asdict(self), "slice_columns": list(self.slice_columns)}
        return {**rules, "objective": asdict(self.objective)}


@dataclass(frozen=True)
class Score:
    """Errors of one model's predictions, in weeks."""

    mae: float
    rmse: float
    rows: int

    # (row label, field) of the report's summary table.
    REPORT_ROWS = (("MAE (weeks)", "mae"), ("RMSE (weeks)", "rmse"))

    @classmethod
    def of(cls, predicted: Sequence[float], actual: Sequence[float]) -> Score:
        error = np.asarray(predicted, dtype=np.float64).reshape(-1) - np.asarray(actual, dtype=np.float64).reshape(-1)
        if error.size == 0:
            raise ValueError("no rows to score")
        return cls(float(np.abs(error).mean()), float(np.sqrt((error**2).mean())), int(error.size))


@dataclass(frozen=True)
class SliceScore:
    """Both models' MAE on the rows where `column` == `value`."""

    column: str
    value: str
    rows: int
    challenger_mae: float
    champion_mae: float

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"

    @property
    def worse_by(self) -> float:
        """How much higher the challenger's MAE is, relative to the champion's (negative: better)."""
        if self.champion_mae == 0:
            return 0.0 if self.challenger_mae == 0 else math.inf
        return (self.challenger_mae - self.champion_mae) / self.champion_mae


@dataclass(frozen=True)
class Decision:
    """What the gate decided and why; `slices` are all slices, checked or not."""

    promote: bool
    reason: str
    rules: GateRules
    challenger: Score
    champion: Score | None
    slices: tuple[SliceScore, ...] = ()
    blocking_slice: SliceScore | None = None
    checked_slices: tuple[str, ...] = field(default=())

    @property
    def decision(self) -> str:
        return PROMOTE if self.promote else KEEP

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "promote": self.promote,
            "reason": self.reason,
            "rules": self.rules.to_dict(),
            "challenger": asdict(self.challenger),
            "champion": asdict(self.champion) if self.champion else None,
            "blocking_slice": self.blocking_slice.name if self.blocking_slice else None,
            "slices": [
                {**asdict(s), "name": s.name, "worse_by": s.worse_by, "checked": s.name in self.checked_slices}
                for s in self.slices
            ],
        }


def slice_scores(
    frame: pd.DataFrame,
    actual: Sequence[float],
    challenger_predicted: Sequence[float],
    champion_predicted: Sequence[float],
    columns: Sequence[str] = SLICE_COLUMNS,
) -> list[SliceScore]:
    """Both models' MAE per value of each column (every value, whatever its row count)."""
    actual = np.asarray(actual, dtype=np.float64).reshape(-1)
    challenger_error = np.abs(np.asarray(challenger_predicted, dtype=np.float64).reshape(-1) - actual)
    champion_error = np.abs(np.asarray(champion_predicted, dtype=np.float64).reshape(-1) - actual)
    if not len(frame) == actual.size == challenger_error.size == champion_error.size:
        raise ValueError("the rows, the targets and both models' predictions must have the same length")
    scores = []
    for column in columns:
        values = frame[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            rows = values == value
            scores.append(SliceScore(column, value, int(rows.sum()), float(challenger_error[rows].mean()),
                                     float(champion_error[rows].mean())))
    return scores


def decide(
    challenger: Score, champion: Score | None, slices: Sequence[SliceScore], rules: GateRules
) -> Decision:
    """The gate's decision (see the module docstring for the rule)."""
    slices = tuple(slices)
    if champion is None:
        return Decision(True, "no champion yet: the first model is promoted", rules, challenger, None, slices)
    objective = rules.objective
    ours, theirs = objective.value(challenger), objective.value(champion)
    required = objective.required(theirs, rules.margin)
    if not objective.beats(ours, required):
        direction, sign = ("higher", ">") if objective.higher_is_better else ("lower", "<")
        return Decision(
            False,
            f"{objective.label} {ours:.4f} vs the champion's {theirs:.4f} ({objective.change(ours, theirs)}) is not "
            f"{direction} by the margin of {objective.margin_text(rules.margin)} (needs {sign} {required:.4f})",
            rules, challenger, champion, slices,
        )
    checked = tuple(s for s in slices if s.rows >= rules.min_slice_rows and s.column in rules.slice_columns)
    names = tuple(s.name for s in checked)
    worse = [s for s in checked if s.challenger_mae > s.champion_mae * (1 + rules.slice_tolerance)]
    if worse:
        worst = max(worse, key=lambda s: s.worse_by)
        return Decision(
            False,
            f"slice {worst.name} ({worst.rows} rows): MAE {worst.challenger_mae:.4f} is {worst.worse_by:+.1%} against "
            f"the champion's {worst.champion_mae:.4f}, beyond the tolerance of {rules.slice_tolerance:.1%}",
            rules, challenger, champion, slices, worst, names,
        )
    if objective.higher_is_better:
        better = f"{objective.change(ours, theirs)} above"
    else:
        better = f"{(theirs - ours) / theirs:.1%} below" if objective.relative_margin else f"{theirs - ours:.4f} below"
    slices_text = (
        f", and none of the {len(checked)} slices with at least {rules.min_slice_rows} rows is "
        f"worse by more than {rules.slice_tolerance:.1%}" if rules.slice_columns else " (no slices for this use case)"
    )
    return Decision(
        True,
        f"{objective.label} {ours:.4f} is {better} the champion's {theirs:.4f} (margin "
        f"{objective.margin_text(rules.margin)}){slices_text}",
        rules, challenger, champion, slices, None, names,
    )


@dataclass(frozen=True)
class ClassifierScore:
    """A binary classifier's scores: ROC AUC from the positive class's probability, the rest at `threshold`."""

    auc: float
    accuracy: float
    precision: float
    recall: float
    rows: int
    confusion: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))  # [actual][predicted]

    REPORT_ROWS = (("ROC AUC", "auc"), ("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"))

    @classmethod
    def of(cls, positive_probability: Sequence[float], actual: Sequence[int], threshold: float = 0.5,
           ) -> ClassifierScore:
        p = np.asarray(positive_probability, dtype=np.float64).reshape(-1)
        y = np.asarray(actual).reshape(-1).astype(bool)
        if p.size == 0 or p.size != y.size:
            raise ValueError(f"need as many probabilities as labels, and some: {p.size} vs {y.size}")
        predicted = p >= threshold
        tp, fp = int((predicted & y).sum()), int((predicted & ~y).sum())
        fn, tn = int((~predicted & y).sum()), int((~predicted & ~y).sum())
        return cls(
            auc=roc_auc(p, y), accuracy=(tp + tn) / p.size,
            precision=tp / (tp + fp) if tp + fp else 0.0, recall=tp / (tp + fn) if tp + fn else 0.0,
            rows=int(p.size), confusion=((tn, fp), (fn, tp)),
        )


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative (ties count
    half), from average ranks (Mann-Whitney U). NaN when one class is absent."""
    from scipy.stats import rankdata

    positives, negatives = int(positive.sum()), int((~positive).sum())
    if not positives or not negatives:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))
