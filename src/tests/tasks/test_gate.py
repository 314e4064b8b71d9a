"""The evaluation gate's rule (pure: scores in, decision out), its report and its mail."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tasks.evaluation.gate import GateRules, Score, SliceScore, decide, slice_scores
from tasks.evaluation.report import Context, alert_message, to_html, to_markdown

RULES = GateRules(margin=0.01, slice_tolerance=0.05, min_slice_rows=100)
CHAMPION = Score(mae=2.0, rmse=3.0, rows=1000)


def score(mae: float) -> Score:
    return Score(mae=mae, rmse=mae * 1.5, rows=1000)


def region(name: str, rows: int, challenger: float, champion: float) -> SliceScore:
    return SliceScore("ROAZ_REGIO", name, rows, challenger, champion)


class TestNoChampion:
    def test_should_promote_the_first_model_whatever_its_scores(self):
        decision = decide(score(50.0), None, [region("Noord", 500, 50.0, 50.0)], RULES)
        assert decision.promote and decision.decision == "promote"
        assert "no champion" in decision.reason
        assert decision.blocking_slice is None


class TestMargin:
    @pytest.mark.parametrize(
        ("challenger_mae", "promote"),
        [(1.97, True), (1.9799, True), (1.98, False), (1.99, False), (2.0, False), (2.5, False)],
    )
    def test_should_promote_only_below_the_champion_by_the_margin(self, challenger_mae, promote):
        decision = decide(score(challenger_mae), CHAMPION, [], RULES)
        assert decision.promote is promote
        if not promote:
            assert "margin of 1.0%" in decision.reason and "needs < 1.9800" in decision.reason

    def test_a_zero_margin_still_needs_a_strictly_lower_mae(self):
        rules = GateRules(margin=0.0, slice_tolerance=0.05, min_slice_rows=100)
        assert not decide(score(2.0), CHAMPION, [], rules).promote
        assert decide(score(1.999), CHAMPION, [], rules).promote

    def test_the_margin_is_checked_before_the_slices(self):
        decision = decide(score(2.5), CHAMPION, [region("Noord", 500, 9.0, 1.0)], RULES)
        assert not decision.promote and decision.blocking_slice is None and "margin" in decision.reason


class TestSlices:
    def test_should_keep_the_champion_when_a_big_slice_is_worse_beyond_the_tolerance(self):
        slices = [
            region("Noord", 500, 1.0, 2.0),
            region("Zuid", 400, 2.2, 2.0),  # +10 %
            region("Oost", 300, 2.15, 2.0),  # +7.5 %
            SliceScore("TYPE_WACHTTIJD", "Behandeling", 800, 1.5, 2.0),
        ]
        decision = decide(score(1.5), CHAMPION, slices, RULES)
        assert not decision.promote
        assert decision.blocking_slice.name == "ROAZ_REGIO=Zuid"  # the worst one names the block
        assert "ROAZ_REGIO=Zuid (400 rows)" in decision.reason and "+10.0%" in decision.reason
        assert set(decision.checked_slices) == {s.name for s in slices}

    def test_should_promote_when_every_slice_is_within_the_tolerance(self):
        slices = [region("Noord", 500, 2.09, 2.0), SliceScore("TYPE_WACHTTIJD", "Polikliniek", 900, 1.0, 2.0)]
        decision = decide(score(1.5), CHAMPION, slices, RULES)
        assert decision.promote and decision.blocking_slice is None
        assert "none of the 2 slices" in decision.reason

    def test_a_slice_just_at_the_tolerance_does_not_block(self):
        decision = decide(score(1.5), CHAMPION, [region("Noord", 500, 2.1, 2.0)], GateRules(0.01, 0.05, 100))
        assert decision.promote, decision.reason

    def test_slices_with_too_few_rows_do_not_decide(self):
        slices = [region("Klein", 99, 9.0, 1.0), region("Groot", 100, 2.0, 2.0)]
        decision = decide(score(1.5), CHAMPION, slices, RULES)
        assert decision.promote
        assert decision.checked_slices == ("ROAZ_REGIO=Groot",)
        blocked = decide(score(1.5), CHAMPION, slices, GateRules(0.01, 0.05, min_slice_rows=99))
        assert not blocked.promote and blocked.blocking_slice.name == "ROAZ_REGIO=Klein"

    def test_a_champion_without_error_on_a_slice_blocks_any_error_there(self):
        assert region("Noord", 500, 0.1, 0.0).worse_by == math.inf
        assert region("Noord", 500, 0.0, 0.0).worse_by == 0.0
        assert not decide(score(1.5), CHAMPION, [region("Noord", 500, 0.1, 0.0)], RULES).promote


class TestSliceScores:
    def test_should_score_both_models_per_value_of_each_column(self):
        frame = pd.DataFrame({"TYPE_WACHTTIJD": ["A", "A", "B", "B"], "ROAZ_REGIO": ["x", "y", "y", "y"]})
        actual = [1.0, 2.0, 3.0, 4.0]
        scores = {s.name: s for s in slice_scores(frame, actual, [1.0, 3.0, 3.0, 2.0], [2.0, 2.0, 5.0, 4.0])}
        assert set(scores) == {"TYPE_WACHTTIJD=A", "TYPE_WACHTTIJD=B", "ROAZ_REGIO=x", "ROAZ_REGIO=y"}
        a = scores["TYPE_WACHTTIJD=A"]
        assert (a.rows, a.challenger_mae, a.champion_mae) == (2, 0.5, 0.5)
        y = scores["ROAZ_REGIO=y"]
        assert (y.rows, y.challenger_mae, y.champion_mae) == pytest.approx((3, 1.0, 2 / 3))

    def test_should_refuse_predictions_of_another_length(self):
        frame = pd.DataFrame({"TYPE_WACHTTIJD": ["A"], "ROAZ_REGIO": ["x"]})
        with pytest.raises(ValueError, match="same length"):
            slice_scores(frame, [1.0], [1.0, 2.0], [1.0])

    def test_score_of_predictions(self):
        assert Score.of([1.0, 3.0], [2.0, 2.0]) == Score(1.0, 1.0, 2)


@pytest.mark.parametrize(
    "values", [{"margin": -0.1}, {"margin": 1.0}, {"slice_tolerance": -0.01}, {"min_slice_rows": 0}]
)
def test_rules_out_of_range_are_refused_naming_the_variable(values):
    with pytest.raises(ValueError, match="promotion_"):
        GateRules(**values)


def test_rules_come_from_the_promotion_variables():
    from tasks.config import Settings

    settings = Settings.load({"promotion_margin": "0.02", "promotion_slice_tolerance": "0.1",
                              "promotion_min_slice_rows": "30"}.get)
    assert GateRules.of(settings) == GateRules(margin=0.02, slice_tolerance=0.1, min_slice_rows=30)


class TestReport:
    def blocked(self):
        slices = [region("Zuid", 400, 2.4, 2.0), region("Klein <b>", 5, 1.0, 1.0)]
        return decide(score(1.5), CHAMPION, slices, RULES)

    def test_markdown_names_the_decision_the_reason_and_the_blocking_slice(self):
        context = Context("wachttijden", "7", "3", "run=abc", "train_model/manual__1")
        text = to_markdown(self.blocked(), context)
        assert text.startswith("# Evaluation gate: wachttijden version 7")
        assert "**Decision: keep**" in text and "ROAZ_REGIO=Zuid (400 rows)" in text
        assert "| ROAZ_REGIO | Zuid | 400 | 2.0000 | 2.4000 | +20.0% | BLOCKS |" in text
        assert "not checked (< 100 rows)" in text
        assert "challenger (version 7)" in text and "champion (version 3)" in text

    def test_html_escapes_the_values(self):
        page = to_html(self.blocked(), Context("wachttijden", "7", "3", "run=abc"))
        assert "Klein &lt;b&gt;" in page and "Klein <b>" not in page
        assert '<tr class="blocks">' in page

    def test_the_mail_subject_names_the_dag_the_run_and_the_decision(self):
        result = {"decision": "keep", "challenger_version": "7", "champion_version": "3", "model_name": "wachttijden",
                  "reason": "slice ROAZ_REGIO=Zuid ...", "challenger_mae": 1.5, "champion_mae": 2.0,
                  "blocking_slice": "ROAZ_REGIO=Zuid", "partition": "run=abc", "report_uri": "runs:/r/gate/report.md"}
        subject, body = alert_message(result, dag_id="train_model", run_id="manual__1")
        assert subject == "train_model run manual__1: keep wachttijden version 7 (champion: 3)"
        assert "Blocking slice: ROAZ_REGIO=Zuid" in body and "runs:/r/gate/report.md" in body
        assert "Champion:   version 3, MAE 2.0000" in body
