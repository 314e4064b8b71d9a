"""Each validation rule, and the file-level failures that stop prepare_dataset."""

import numpy as np
import pandas as pd
import pytest

from models.wachttijden.schema import FEATURES, TARGET
from tasks.data.generate import generate, write_csv
from tasks.data.validation import (
    DataValidationError,
    _strip,
    _to_number,
    clean,
    read_raw_csv,
    validate,
)

GOOD = {"TYPE_WACHTTIJD": "Polikliniek", "SPECIALISME": "Cardiologie (320)",
        "ROAZ_REGIO": "Netwerk Acute Zorg West", "TYPE_ZORGINSTELLING": "Ziekenhuis", TARGET: "5"}


def frame_with(*overrides: dict, good_rows: int = 100) -> pd.DataFrame:
    """Good rows plus one row per override, written as CSV and read back the way a raw file is."""
    frame = pd.DataFrame([GOOD] * good_rows + [{**GOOD, **o} for o in overrides])
    return read_raw_csv(frame.to_csv(sep=";", index=False).encode("cp1252"), "test.csv")


@pytest.mark.parametrize(
    ("override", "rule"),
    [
        ({TARGET: ""}, f"{TARGET} is empty"),
        ({TARGET: "vijf"}, f"{TARGET} is not a number"),
        ({TARGET: "-1"}, f"{TARGET} is negative"),
        ({TARGET: "500"}, f"{TARGET} is above 104 weeks"),
        ({"SPECIALISME": " "}, "SPECIALISME is empty"),
        ({"TYPE_ZORGINSTELLING": ""}, "TYPE_ZORGINSTELLING is empty"),
        ({"TYPE_WACHTTIJD": "Onbekend"}, "TYPE_WACHTTIJD has an unknown category"),
        ({"ROAZ_REGIO": "Atlantis"}, "ROAZ_REGIO has an unknown category"),
    ],
)
def test_should_drop_a_row_breaking_each_rule_and_report_it(override, rule):
    frame = frame_with(override)
    report, valid = validate(frame, "test.csv")
    assert report.ok
    assert report.row_issues == {rule: 1}
    assert report.valid_rows == 100 and not valid.iloc[-1] and valid.iloc[:-1].all()
    column = TARGET if rule.startswith(TARGET) else rule.split(" ")[0]
    assert report.examples[rule] == [repr(override[column].strip())]  # values are stripped when read
    assert rule in report.to_text()


def test_should_fail_the_file_when_too_many_rows_are_invalid():
    report, _ = validate(frame_with(*[{TARGET: "-1"}] * 10, good_rows=90), "test.csv")
    assert not report.ok
    assert "10.0% of rows are invalid" in report.errors[0]


def test_should_name_missing_columns():
    report, _ = validate(frame_with().assign(PLAATS="x").drop(columns=["ROAZ_REGIO", TARGET]), "test.csv")
    assert not report.ok
    assert "missing column(s): ROAZ_REGIO, WACHTTIJD" in report.errors[0]


def test_should_reject_a_comma_separated_file_naming_the_separator():
    with pytest.raises(DataValidationError, match="wrong separator: expected ';'; the header looks ','-separated"):
        read_raw_csv(b"ID,TYPE_WACHTTIJD,WACHTTIJD\n1,Polikliniek,3\n", "raw/x.csv")


@pytest.mark.parametrize("data", [b"", b"\n\n"])
def test_should_reject_an_empty_file(data):
    with pytest.raises(DataValidationError, match="the file is empty"):
        read_raw_csv(data, "raw/x.csv")


def test_should_reject_a_header_without_rows():
    frame = read_raw_csv(";".join([*FEATURES, TARGET]).encode() + b"\n", "raw/x.csv")
    report, _ = validate(frame, "raw/x.csv")
    assert report.errors == ["the file has a header but no data rows"]


def test_should_read_cp1252_and_utf8_files_alike(tmp_path):
    frame = generate(200, seed=1)
    cp1252 = write_csv(frame, tmp_path / "a.csv").read_bytes()
    utf8 = cp1252.decode("cp1252").encode("utf-8-sig")
    assert read_raw_csv(cp1252, "a").equals(read_raw_csv(utf8, "b"))


def test_should_accept_a_real_file_with_other_extra_columns():
    # The loader needs only the model's columns: extra or renamed other columns must not matter.
    frame = frame_with().assign(EXTRA_KOLOM="x")
    data = frame.to_csv(sep=";", index=False).encode("cp1252")
    report, valid = validate(read_raw_csv(data, "real.csv"), "real.csv")
    assert report.ok and valid.all()


def test_clean_should_keep_only_valid_rows_and_model_columns_with_a_numeric_target():
    frame = frame_with({TARGET: "-2"}, {"SPECIALISME": " Orthopedie (305) ", TARGET: " 7 "}).assign(PLAATS="Utrecht")
    report, valid = validate(frame, "x")
    cleaned = clean(frame, valid)
    assert list(cleaned.columns) == [*FEATURES, TARGET]
    assert len(cleaned) == 101
    assert cleaned[TARGET].dtype == "float32"
    assert cleaned["SPECIALISME"].iloc[-1] == "Orthopedie (305)"  # stripped when read
    assert cleaned[TARGET].iloc[-1] == 7


def test_generated_dirty_rows_are_exactly_what_validation_drops(small_raw_csv):
    frame = read_raw_csv(small_raw_csv.read_bytes(), "gen")
    report, valid = validate(frame, "gen")
    assert report.ok
    assert set(report.row_issues) == {
        f"{TARGET} is empty", f"{TARGET} is negative", f"{TARGET} is above 104 weeks",
        "TYPE_WACHTTIJD has an unknown category", "TYPE_ZORGINSTELLING is empty",
    }
    assert report.valid_rows == len(frame) - sum(report.row_issues.values())
    assert report.invalid_rows == sum(report.row_issues.values()) and report.multi_rule_rows == 0


def written_frame(tmp_path, *overrides: dict, good_rows: int = 100) -> pd.DataFrame:
    """Like frame_with, through a real file in tmp_path."""
    path = tmp_path / "raw.csv"
    rows = [GOOD] * good_rows + [{**GOOD, **o} for o in overrides]
    pd.DataFrame(rows).to_csv(path, sep=";", index=False, encoding="cp1252")
    return read_raw_csv(path.read_bytes(), str(path))


@pytest.mark.parametrize(
    ("text", "number", "rules"),
    [
        ("4,5", 4.5, {}),
        (" 12,25 ", 12.25, {}),
        (",5", 0.5, {}),
        ("-0,5", None, {f"{TARGET} is negative": 1}),
        ("1.234,5", None, {f"{TARGET} is not a number": 1}),
        ("4,5,6", None, {f"{TARGET} is not a number": 1}),
    ],
)
def test_a_dutch_decimal_comma_in_the_target_is_a_decimal_point(tmp_path, text, number, rules):
    frame = written_frame(tmp_path, {TARGET: text})
    report, valid = validate(frame, "raw.csv")
    assert report.row_issues == rules
    if number is not None:
        assert clean(frame, valid)[TARGET].iloc[-1] == pytest.approx(number)


def test_the_report_states_the_total_dropped_and_that_rule_counts_overlap(tmp_path):
    frame = written_frame(tmp_path, {TARGET: "", "ROAZ_REGIO": "Atlantis"}, {TARGET: "-1"}, good_rows=200)
    report, valid = validate(frame, "raw.csv")
    assert report.ok and int((~valid).sum()) == 2
    assert sum(report.row_issues.values()) == 3  # the first bad row breaks two rules
    assert (report.total_rows, report.valid_rows, report.invalid_rows, report.multi_rule_rows) == (202, 200, 2, 1)
    text = report.to_text()
    assert "rows: 202, valid: 200, dropped: 2" in text
    assert ("dropped rows per rule (a row counts under every rule it breaks; "
            "1 row(s) break more than one rule, so the counts add up to more than 2):") in text
    assert "  1 row(s): ROAZ_REGIO has an unknown category (e.g. 'Atlantis')" in text


def test_a_failed_report_counts_invalid_rows_and_never_says_they_were_dropped(tmp_path):
    report, _ = validate(written_frame(tmp_path, *[{TARGET: "-1"}] * 10, good_rows=90), "raw.csv")
    text = report.to_text()
    assert text.startswith("Validation of raw.csv: FAILED (the file is rejected: nothing is prepared from it)")
    assert "rows: 100, valid: 90, invalid: 10" in text
    assert "invalid rows per rule" in text and "  10 row(s): WACHTTIJD is negative" in text
    assert "dropped" not in text


def test_a_file_level_failure_reports_no_row_counts(tmp_path):
    report, _ = validate(written_frame(tmp_path).drop(columns=["ROAZ_REGIO"]), "raw.csv")
    text = report.to_text()
    assert "ERROR: missing column(s): ROAZ_REGIO" in text
    assert "rows:" not in text and "dropped" not in text


def test_missing_values_stay_missing_when_stripped_or_converted():
    values = pd.Series(["5", None, " 7 ", np.nan, "12"])
    assert _strip(values).tolist() == ["5", None, "7", None, "12"]
    assert _to_number(values).tolist()[::2] == [5.0, 7.0, 12.0]
    assert _to_number(values).isna().tolist() == [False, True, False, True, False]
    assert _strip(pd.Series([None, np.nan])).isna().all() and _to_number(pd.Series([None])).isna().all()


def test_missing_values_in_a_validated_parquet_file_are_empty_not_another_rows_value(tmp_path):
    # Nulls reach validation from Parquet (the validated data clean_validated reads back).
    path = tmp_path / "validated.parquet"
    frame = pd.DataFrame([GOOD] * 3 + [{**GOOD, TARGET: None, "ROAZ_REGIO": None}] + [{**GOOD, TARGET: "80"}])
    frame.to_parquet(path, index=False)
    report, valid = validate(pd.read_parquet(path), str(path))
    assert report.row_issues == {f"{TARGET} is empty": 1, "ROAZ_REGIO is empty": 1}
    assert report.examples[f"{TARGET} is empty"] == ["None"]
    assert valid.tolist() == [True, True, True, False, True]
