"""Check an uploaded CSV the way prepare_dataset checks a raw file, and lay out its predictions.

The reading (compression, encoding cp1252/UTF-8, separator, ragged rows) and the report are the
pipeline's own (tasks.data.validation), so an upload gets the same messages as a raw file in the lake.
The row rules differ in one respect: the categories are checked against the served model's
vocabularies, because those decide what the model server accepts.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from app.registry import FormChoices
from models.wachttijden.schema import FEATURES, SEPARATOR
from tasks.data.validation import READ_NOTES, DataValidationError, ValidationReport, read_raw_csv

# A browser upload is held in memory and predicted in one go: beyond this, use the pipelines.
MAX_ROWS = 50_000
PREDICTION = "predicted WACHTTIJD (weeks)"
PROBLEM = "problem"


class UploadRejected(ValueError):
    """Nothing in the file can be predicted; the message is the validation report."""


@dataclass
class CheckedUpload:
    frame: pd.DataFrame  # every row as read (all text)
    problems: pd.Series  # per row: "" or the rules it breaks
    report: ValidationReport

    @property
    def valid_rows(self) -> list[dict[str, str]]:
        ok = self.frame[self.problems.eq("")]
        return ok[list(FEATURES)].to_dict(orient="records")


def check_upload(data: bytes, source: str, choices: FormChoices) -> CheckedUpload:
    """Read and check an upload; raises UploadRejected (the readable report) when no row can be predicted."""
    try:
        # Only the features are parsed (and stripped of white space, as the pipeline does).
        frame = read_raw_csv(data, source, columns=FEATURES)
    except DataValidationError as exc:
        raise UploadRejected(exc.report.to_text()) from None
    report = ValidationReport(source, total_rows=len(frame), notes=list(frame.attrs.get(READ_NOTES, [])))
    missing = [c for c in FEATURES if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:25]))
        report.errors.append(f"missing column(s): {', '.join(missing)} (found: {found})")
    elif frame.empty:
        report.errors.append("the file has a header but no data rows")
    elif len(frame) > MAX_ROWS:
        report.errors.append(f"the file has {len(frame)} rows; the app predicts at most {MAX_ROWS} per upload")
    if report.errors:
        raise UploadRejected(report.to_text())
    problems = pd.Series("", index=frame.index)
    for rule, mask in row_rules(frame, choices).items():
        count = int(mask.sum())
        if count:
            report.row_issues[rule] = count
            column = rule.split(" ", 1)[0]
            report.examples[rule] = [repr(v) for v in pd.unique(frame.loc[mask, column])[:5]]
            problems = problems.mask(mask, problems + "; " + rule)
    problems = problems.str.removeprefix("; ")
    report.invalid_rows = int(problems.ne("").sum())
    report.valid_rows = len(frame) - report.invalid_rows
    if report.valid_rows == 0:
        report.errors.append("no row can be predicted")
        raise UploadRejected(report.to_text())
    return CheckedUpload(frame, problems, report)


def row_rules(frame: pd.DataFrame, choices: FormChoices) -> dict[str, pd.Series]:
    """Boolean masks of rows breaking each rule, worded like tasks.data.validation.row_rules."""
    rules = {}
    for name in FEATURES:
        values = frame[name]
        empty = values.isna() | values.eq("")
        rules[f"{name} is empty"] = empty
        if name not in choices.open_features and choices.vocabularies.get(name):
            rules[f"{name} has an unknown category"] = ~empty & ~values.isin(choices.vocabularies[name])
    return rules


def with_predictions(upload: CheckedUpload, predict: Callable[[Sequence[dict[str, str]]], list[float]]) -> pd.DataFrame:
    """The upload's rows with a prediction for every valid row and the problem of every other one."""
    rows = upload.valid_rows
    predictions = pd.Series(predict(rows), index=upload.frame.index[upload.problems.eq("")], dtype="float64")
    out = pd.DataFrame({PREDICTION: predictions.round(2), PROBLEM: upload.problems}, index=upload.frame.index)
    shown = [c for c in FEATURES if c in upload.frame.columns]
    return pd.concat([out, upload.frame[shown]], axis=1)


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The published format back: `;`-separated, UTF-8."""
    buffer = io.StringIO()
    frame.to_csv(buffer, sep=SEPARATOR, index=False)
    return buffer.getvalue().encode("utf-8")
