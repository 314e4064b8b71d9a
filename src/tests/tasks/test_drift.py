"""The drift maths on distributions whose answer is known: PSI per category, two-sample KS on the target."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from tasks.data.drift import EPSILON, Thresholds, compare, ks_2sample, psi, render_html, summary


def categories(**counts: int) -> pd.Series:
    return pd.Series([name for name, count in counts.items() for _ in range(count)])


def test_psi_of_identical_shares_is_zero_whatever_the_sample_sizes():
    value, _ = psi(categories(a=50, b=30, c=20), categories(a=500, b=300, c=200))
    assert value == pytest.approx(0.0, abs=1e-12)


def test_psi_matches_the_formula_on_a_known_shift():
    value, table = psi(categories(a=50, b=50), categories(a=90, b=10))
    expected = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert value == pytest.approx(expected)  # 0.8789
    assert table.loc["a", "reference"] == 0.5 and table.loc["a", "current"] == 0.9
    assert table["contribution"].sum() == pytest.approx(expected)


def test_psi_is_symmetric_in_its_two_distributions():
    ref, cur = categories(a=70, b=20, c=10), categories(a=40, b=40, c=20)
    assert psi(ref, cur)[0] == pytest.approx(psi(cur, ref)[0])


def test_a_category_missing_on_one_side_counts_through_epsilon_not_infinity():
    value, table = psi(categories(a=100), categories(a=50, b=50))
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert math.isfinite(value) and value == pytest.approx(expected)
    assert table.index[0] == "b"  # the category that moved most comes first


def test_ks_of_a_sample_with_itself_is_zero_with_p_one():
    sample = np.random.default_rng(1).normal(size=500)
    statistic, p_value = ks_2sample(sample, sample)
    assert statistic == 0.0 and p_value == pytest.approx(1.0)


def test_ks_between_normals_one_sd_apart_finds_the_theoretical_distance():
    rng = np.random.default_rng(2)
    statistic, p_value = ks_2sample(rng.normal(0, 1, 4000), rng.normal(1, 1, 4000))
    # sup |F0 - F1| of N(0,1) and N(1,1) is at x = 0.5: 2 * Phi(0.5) - 1 = 0.383
    assert statistic == pytest.approx(2 * norm.cdf(0.5) - 1, abs=0.04)
    assert p_value < 1e-50


def test_ks_between_two_samples_of_one_distribution_is_small_and_not_significant():
    rng = np.random.default_rng(3)
    statistic, p_value = ks_2sample(rng.normal(0, 1, 4000), rng.normal(0, 1, 4000))
    assert statistic < 0.05 and p_value > 0.01


def frame(types: pd.Series, weeks: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"TYPE_WACHTTIJD": types.to_numpy(), "WACHTTIJD": weeks.astype(np.float32)})


def test_compare_names_the_feature_and_its_psi_and_the_shifted_target():
    rng = np.random.default_rng(4)
    reference = frame(categories(Polikliniek=600, Behandeling=300, Diagnostiek=100), rng.poisson(5, 1000))
    current = frame(categories(Polikliniek=200, Behandeling=700, Diagnostiek=100), rng.poisson(9, 1000))

    report = compare(reference, current, features=["TYPE_WACHTTIJD"], target="WACHTTIJD", thresholds=Thresholds())

    assert report["features"]["TYPE_WACHTTIJD"]["drifted"]
    assert report["features"]["TYPE_WACHTTIJD"]["psi"] > 0.2
    assert report["target"]["drifted"] and report["target"]["ks_statistic"] > 0.1
    assert report["drifted"][0].startswith("TYPE_WACHTTIJD: PSI ")
    assert "Behandeling 30.0%->70.0%" in report["drifted"][0]
    assert report["drifted"][1].startswith("WACHTTIJD: KS D ")
    assert report["rows"] == {"reference": 1000, "current": 1000}
    assert summary(report) == "; ".join(report["drifted"])


def test_compare_of_a_resample_of_the_same_data_finds_no_drift():
    rng = np.random.default_rng(5)
    reference = frame(categories(Polikliniek=600, Behandeling=300, Diagnostiek=100), rng.poisson(5, 1000))
    current = reference.sample(frac=1.0, replace=True, random_state=6).reset_index(drop=True)

    report = compare(reference, current, features=["TYPE_WACHTTIJD"], target="WACHTTIJD", thresholds=Thresholds())

    assert report["drifted"] == []
    assert report["features"]["TYPE_WACHTTIJD"]["psi"] < 0.02
    assert not report["target"]["drifted"]
    assert summary(report) == "no drift above the thresholds"


def test_the_target_needs_both_a_large_distance_and_significance():
    # Ten rows each: D = 0.5 is large, but with so few rows not significant at 0.05.
    reference = frame(categories(Polikliniek=10), np.arange(10))
    current = frame(categories(Polikliniek=10), np.arange(10) + 5)
    report = compare(reference, current, features=["TYPE_WACHTTIJD"], target="WACHTTIJD", thresholds=Thresholds())
    assert report["target"]["ks_statistic"] == pytest.approx(0.5)
    assert report["target"]["p_value"] > 0.05 and not report["target"]["drifted"]


def test_compare_refuses_empty_data():
    empty = frame(pd.Series([], dtype=str), np.array([]))
    with pytest.raises(ValueError, match="0 reference"):
        compare(empty, frame(categories(a=1), np.array([1])), features=["TYPE_WACHTTIJD"], target="WACHTTIJD",
                thresholds=Thresholds())


def test_the_html_report_shows_the_scores_and_escapes_what_the_data_says():
    reference = frame(categories(**{"<b>Polikliniek</b>": 50, "Behandeling": 50}), np.arange(100))
    current = frame(categories(**{"<b>Polikliniek</b>": 90, "Behandeling": 10}), np.arange(100))
    report = {"status": "warn", "mode": "warn", "raw_file": "w.csv", "partition": "run=x",
              **compare(reference, current, features=["TYPE_WACHTTIJD"], target="WACHTTIJD",
                        thresholds=Thresholds())}

    page = render_html(report)

    assert "<h1>Drift report: WARN</h1>" in page
    assert "&lt;b&gt;Polikliniek&lt;/b&gt;" in page and "<b>Polikliniek</b>" not in page
    assert f"{report['features']['TYPE_WACHTTIJD']['psi']:.4f}" in page
