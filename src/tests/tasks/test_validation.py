"""Each validation rule, and the file-level failures that stop prepare_dataset."""

import pandas as pd
import pytest

from models.wachttijden.schema import FEATURES, TARGET
from tasks.data.generate import generate, write_csv
from tasks.data.validation import (
    DataValidationError,
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
