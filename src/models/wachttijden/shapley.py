"""Exact Shapley values of a model on a few categorical features, measured against a background sample.

With M features there are 2**M coalitions (16 for this model), so nothing needs sampling or
approximating: for a row x and a coalition S, v(S) is the mean prediction over the background
rows with the features in S set to x's values (the "interventional" value function, as
shap.KernelExplainer and shap's exact explainer estimate it). Then

    phi_j = sum over S without j of |S|! (M - |S| - 1)! / M! * (v(S + j) - v(S))

and base value v({}) (the mean prediction over the background) plus the phi_j equals v(all) = the
model's prediction for x, exactly up to float64 rounding.

The work is one model call on all composite rows. Background rows that agree on the features a
coalition takes from them give the same composite row, so each coalition evaluates only the
distinct ones (weighted by how often they occur): with categorical features that is far fewer
than the sample size. The empty coalition does not depend on x and is evaluated once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Columns = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Explanation:
    """Per row: the prediction, the attribution of each feature, and the (shared) base value."""

    features: tuple[str, ...]
    base_value: float
    predictions: np.ndarray  # (rows,) float64
    attributions: np.ndarray  # (rows, features) float64

    def rows(self) -> list[dict]:
        """One {prediction, base_value, attributions: {feature: value}} per row, as plain floats."""
        return [
            {
                "prediction": float(prediction),
                "base_value": self.base_value,
                "attributions": dict(zip(self.features, map(float, phi), strict=True)),
            }
            for prediction, phi in zip(self.predictions, self.attributions, strict=True)
        ]

    def mean_abs(self) -> dict[str, float]:
        """Mean |attribution| per feature over the rows: a global feature importance."""
        return dict(zip(self.features, map(float, np.abs(self.attributions).mean(axis=0)), strict=True))


@dataclass(frozen=True)
class _Segment:
    mask: int  # bit j set: feature j taken from the explained row
    start: int  # first composite row of this coalition
    rows: int  # explained rows it covers (1 for the empty coalition)
    weights: np.ndarray  # (distinct background parts,) summing to 1


class ShapleyPlan:
    """The composite rows to predict for exact Shapley values of `rows`, and how to combine the predictions."""

    def __init__(self, rows: Columns, background: Columns, features: Sequence[str]):
        self.features = tuple(features)
        m = len(self.features)
        n = len(rows[self.features[0]])
        b = len(background[self.features[0]])
        if n == 0 or b == 0:
            raise ValueError(f"need at least one row to explain and one background row (got {n} and {b})")
        # Strings become small integer codes per feature, so composites are built with integer arrays.
        self._tables: list[np.ndarray] = []
        x_codes = np.empty((n, m), dtype=np.int64)
        b_codes = np.empty((b, m), dtype=np.int64)
        for j, name in enumerate(self.features):
            values = np.asarray([str(v) for v in rows[name]] + [str(v) for v in background[name]], dtype=object)
            table, inverse = np.unique(values, return_inverse=True)
            self._tables.append(table)
            x_codes[:, j], b_codes[:, j] = inverse[:n], inverse[n:]
        self.explained_rows = n
        blocks, self._segments, start = [], [], 0
        for mask in range(2**m):
            taken = [j for j in range(m) if mask >> j & 1]
            rest = [j for j in range(m) if not mask >> j & 1]
            if rest:
                parts, counts = np.unique(b_codes[:, rest], axis=0, return_counts=True)
            else:
                parts, counts = np.empty((1, 0), dtype=np.int64), np.ones(1)
            rows_here = n if taken else 1
            block = np.empty((rows_here * len(parts), m), dtype=np.int64)
            block[:, rest] = np.tile(parts, (rows_here, 1))
            if taken:
                block[:, taken] = np.repeat(x_codes[:, taken], len(parts), axis=0)
            blocks.append(block)
            self._segments.append(_Segment(mask, start, rows_here, counts / counts.sum()))
            start += len(block)
        self._codes = np.concatenate(blocks)

    @property
    def model_rows(self) -> int:
        """How many rows the model has to predict for this plan."""
        return len(self._codes)

    def chunks(self, size: int) -> Iterator[dict[str, list[str]]]:
        """The composite rows as feature columns of at most `size` rows, in order."""
        for start in range(0, len(self._codes), size):
            codes = self._codes[start : start + size]
            yield {name: self._tables[j][codes[:, j]].tolist() for j, name in enumerate(self.features)}

    def combine(self, predictions: np.ndarray) -> Explanation:
        """The explanation, from the model's predictions of every composite row (in chunk order)."""
        predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
        if len(predictions) != len(self._codes):
            raise ValueError(f"expected {len(self._codes)} predictions, got {len(predictions)}")
        m, n = len(self.features), self.explained_rows
        values = np.empty((n, 2**m))
        for segment in self._segments:
            k = len(segment.weights)
            block = predictions[segment.start : segment.start + segment.rows * k].reshape(segment.rows, k)
            values[:, segment.mask] = block @ segment.weights
        attributions = np.zeros((n, m))
        for j in range(m):
            for mask in range(2**m):
                if mask >> j & 1:
                    continue
                size = bin(mask).count("1")
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                attributions[:, j] += weight * (values[:, mask | 1 << j] - values[:, mask])
        return Explanation(self.features, float(values[0, 0]), values[:, 2**m - 1], attributions)


def shapley_values(
    predict: Callable[[dict[str, list[str]]], np.ndarray],
    rows: Columns,
    background: Columns,
    features: Sequence[str],
    *,
    chunk_rows: int = 8192,
) -> Explanation:
    """Exact Shapley values of `predict` (columns -> one value per row) for `rows`, in chunks of `chunk_rows`."""
    plan = ShapleyPlan(rows, background, features)
    return plan.combine(np.concatenate([np.asarray(predict(chunk)).reshape(-1) for chunk in plan.chunks(chunk_rows)]))
