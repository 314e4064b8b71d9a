"""Exact Shapley values against a brute-force reference, on functions whose attributions are known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from models.wachttijden.shapley import ShapleyPlan, shapley_values

FEATURES = ("A", "B", "C", "D")
VALUES = {"A": ["a0", "a1", "a2"], "B": ["b0", "b1"], "C": ["c0", "c1", "c2", "c3"], "D": ["d0", "d1"]}
rng = np.random.default_rng(5)
# A fixed random effect per value, per (A, C) pair and per (A, B, D) triple: additive terms plus
# interactions (a three-way one, where Shapley values differ from Banzhaf values).
EFFECT = {v: float(rng.normal()) for values in VALUES.values() for v in values}
PAIR = {(a, c): float(rng.normal()) for a in VALUES["A"] for c in VALUES["C"]}
TRIPLE = {key: float(rng.normal()) for key in itertools.product(VALUES["A"], VALUES["B"], VALUES["D"])}


def interacting(columns: dict[str, list[str]]) -> np.ndarray:
    rows = zip(*(columns[f] for f in FEATURES), strict=True)
    return np.asarray(
        [sum(EFFECT[v] for v in row) + 2.0 * PAIR[(row[0], row[2])] + 3.0 * TRIPLE[(row[0], row[1], row[3])]
         for row in rows],
        dtype=np.float32,
    )


def additive(columns: dict[str, list[str]]) -> np.ndarray:
    rows = zip(*(columns[f] for f in FEATURES), strict=True)
    return np.asarray([sum(EFFECT[v] for v in row) for row in rows])


def random_columns(n: int, seed: int) -> dict[str, list[str]]:
    generator = np.random.default_rng(seed)
    return {f: [str(v) for v in generator.choice(VALUES[f], size=n)] for f in FEATURES}


def brute_force(predict, row: dict[str, str], background: dict[str, list[str]]) -> tuple[float, list[float]]:
    """Shapley values by the definition: average marginal contribution over all feature orderings."""

    def value(coalition: frozenset[str]) -> float:
        composite = {f: [row[f] if f in coalition else b for b in background[f]] for f in FEATURES}
        return float(np.mean(np.asarray(predict(composite), dtype=np.float64)))

    phi = dict.fromkeys(FEATURES, 0.0)
    orders = list(itertools.permutations(FEATURES))
    for order in orders:
        before: frozenset[str] = frozenset()
        for feature in order:
            phi[feature] += (value(before | {feature}) - value(before)) / len(orders)
            before = before | {feature}
    return value(frozenset()), [phi[f] for f in FEATURES]


def test_matches_the_definition_on_a_function_with_interactions():
    rows, background = random_columns(6, seed=1), random_columns(40, seed=2)
    explanation = shapley_values(interacting, rows, background, FEATURES, chunk_rows=97)
    for i in range(6):
        base, phi = brute_force(interacting, {f: rows[f][i] for f in FEATURES}, background)
        assert explanation.base_value == pytest.approx(base, abs=1e-9)
        np.testing.assert_allclose(explanation.attributions[i], phi, atol=1e-9)


def test_base_value_plus_attributions_is_the_prediction():
    rows, background = random_columns(25, seed=3), random_columns(100, seed=4)
    explanation = shapley_values(interacting, rows, background, FEATURES)
    np.testing.assert_array_equal(explanation.predictions, interacting(rows).astype(np.float64))
    total = explanation.base_value + explanation.attributions.sum(axis=1)
    np.testing.assert_allclose(total, explanation.predictions, rtol=1e-12, atol=1e-12)
    for row in explanation.rows():
        assert math.isclose(row["base_value"] + sum(row["attributions"].values()), row["prediction"], abs_tol=1e-12)


def test_an_additive_model_gets_each_features_own_effect_minus_its_background_mean():
    rows, background = random_columns(5, seed=6), random_columns(30, seed=7)
    explanation = shapley_values(additive, rows, background, FEATURES)
    for j, feature in enumerate(FEATURES):
        mean_effect = np.mean([EFFECT[v] for v in background[feature]])
        expected = [EFFECT[v] - mean_effect for v in rows[feature]]
        np.testing.assert_allclose(explanation.attributions[:, j], expected, atol=1e-12)


def test_a_value_the_background_never_holds_is_still_explained():
    rows = {**random_columns(2, seed=8), "B": ["never-seen", "b0"]}
    background = random_columns(20, seed=9)

    def lookup(columns):  # an out-of-vocabulary value gets its own effect, like a model's OOV bucket
        return additive({**columns, "B": ["b1" if v == "never-seen" else v for v in columns["B"]]})

    explanation = shapley_values(lookup, rows, background, FEATURES)
    assert explanation.attributions[0, 1] == pytest.approx(EFFECT["b1"] - np.mean([EFFECT[v] for v in background["B"]]))


def test_duplicate_background_rows_are_evaluated_once_and_weighted():
    rows, background = random_columns(3, seed=10), random_columns(8, seed=11)
    doubled = {f: background[f] * 5 for f in FEATURES}
    plan, plan_doubled = ShapleyPlan(rows, background, FEATURES), ShapleyPlan(rows, doubled, FEATURES)
    assert plan_doubled.model_rows == plan.model_rows
    one = shapley_values(interacting, rows, background, FEATURES)
    other = shapley_values(interacting, rows, doubled, FEATURES)
    np.testing.assert_allclose(other.attributions, one.attributions, atol=1e-12)


def test_mean_abs_is_the_global_importance():
    rows, background = random_columns(10, seed=12), random_columns(20, seed=13)
    explanation = shapley_values(interacting, rows, background, FEATURES)
    importance = explanation.mean_abs()
    assert list(importance) == list(FEATURES)
    assert importance["A"] == pytest.approx(float(np.abs(explanation.attributions[:, 0]).mean()))


def test_nothing_to_explain_or_no_background_is_refused():
    with pytest.raises(ValueError, match="at least one row"):
        ShapleyPlan(random_columns(2, seed=1), {f: [] for f in FEATURES}, FEATURES)
