"""Validate a raw wachttijden file: schema, types, nulls, ranges and categories, with a readable report."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from models.wachttijden.schema import FEATURES, KNOWN_CATEGORIES, SEPARATOR, TARGET

REQUIRED_COLUMNS: tuple[str, ...] = (*FEATURES, TARGET)
# Waiting times are published in whole weeks; two years and more is a data-entry error.
MAX_WACHTTIJD_WEEKS = 104
# More dirty rows than this means the file itself is wrong, not a few rows in it.
DEFAULT_MAX_INVALID_FRACTION = 0.05
_SAMPLE = 5


class DataValidationError(ValueError):
    """The raw file cannot be used; the message is the validation report."""

    def __init__(self, report: ValidationReport):
        super().__init__(report.to_text())
        self.report = report


@dataclass
class ValidationReport:
    """What was checked and what failed; `ok` decides whether anything downstream runs."""

    source: str
    total_rows: int = 0
    valid_rows: int = 0
    errors: list[str] = field(default_factory=list)  # file-level: the file is rejected
    row_issues: dict[str, int] = field(default_factory=dict)  # rule -> number of rows
    examples: dict[str, list[str]] = field(default_factory=dict)  # rule -> a few offending values

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def to_text(self) -> str:
        lines = [
            f"Validation of {self.source}: {'PASSED' if self.ok else 'FAILED'}",
            f"rows: {self.total_rows}, valid: {self.valid_rows}",
        ]
        lines += [f"ERROR: {e}" for e in self.errors]
        for rule, count in sorted(self.row_issues.items()):
            sample = ", ".join(self.examples.get(rule, []))
            lines.append(f"dropped {count} row(s): {rule}" + (f" (e.g. {sample})" if sample else ""))
        return "\n".join(lines)


def detect_encoding(data: bytes) -> str:
    """UTF-8 (with or without BOM) when the bytes decode as such, else Windows-1252 like the published file."""
    try:
        data.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "cp1252"


def read_raw_csv(data: bytes, source: str, *, columns: tuple[str, ...] | None = REQUIRED_COLUMNS) -> pd.DataFrame:
    """Parse the raw CSV with every column as text; a file that is not `;`-separated is rejected.

    Only `columns` are parsed when the file has them all (the other 16 columns cost most of the
    parse time and are never used); otherwise every column is read so the report can list them.
    Values come back stripped of surrounding white space.
    """
    encoding = detect_encoding(data)
    header = data.split(b"\n", 1)[0].decode(encoding, errors="replace")
    if not header.strip():
        raise DataValidationError(ValidationReport(source, errors=["the file is empty (no header row)"]))
    if SEPARATOR not in header:
        guess = next((s for s in (",", "\t", "|") if s in header), None)
        hint = f"; the header looks {guess!r}-separated" if guess else ""
        raise DataValidationError(
            ValidationReport(source, errors=[f"wrong separator: expected {SEPARATOR!r}{hint}"])
        )
    # Everything as str with no NA guessing, so the rules see exactly what the file says.
    options = {"sep": SEPARATOR, "dtype": str, "keep_default_na": False, "encoding": encoding}
    try:
        found = pd.read_csv(io.BytesIO(data), nrows=0, **options).columns
        usecols = list(columns) if columns and set(columns) <= set(found) else None
        frame = pd.read_csv(io.BytesIO(data), usecols=usecols, **options)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataValidationError(ValidationReport(source, errors=[f"the file cannot be parsed: {exc}"])) from exc
    for name in columns or ():
        if name in frame.columns:
            frame[name] = _strip(frame[name])
    return frame


def _to_number(values: pd.Series) -> pd.Series:
    """pd.to_numeric per distinct value (NaN where not a number), for the same reason as _strip."""
    codes, uniques = pd.factorize(values)
    numbers = pd.to_numeric(pd.Series(uniques), errors="coerce").to_numpy(dtype=np.float64)
    return pd.Series(numbers[codes], index=values.index, name=values.name)


def _strip(values: pd.Series) -> pd.Series:
    """str.strip per distinct value: these columns have a few hundred distinct values in 200k rows."""
    codes, uniques = pd.factorize(values)
    return pd.Series(np.asarray(uniques.str.strip(), dtype=object)[codes], index=values.index, name=values.name)


def row_rules(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Boolean masks of rows breaking each rule (True = broken)."""
    target_text = frame[TARGET]
    target = _to_number(target_text)
    rules = {
        f"{TARGET} is empty": target_text.eq(""),
        f"{TARGET} is not a number": target.isna() & target_text.ne(""),
        f"{TARGET} is negative": target.lt(0),
        f"{TARGET} is above {MAX_WACHTTIJD_WEEKS} weeks": target.gt(MAX_WACHTTIJD_WEEKS),
    }
    for name in FEATURES:
        values = frame[name]
        rules[f"{name} is empty"] = values.eq("")
        known = KNOWN_CATEGORIES.get(name)
        if known is not None:
            rules[f"{name} has an unknown category"] = values.ne("") & ~values.isin(known)
    return rules


def validate(
    frame: pd.DataFrame, source: str, *, max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION
) -> tuple[ValidationReport, pd.Series]:
    """Check `frame` and return the report and a mask of the rows that pass every rule."""
    report = ValidationReport(source, total_rows=len(frame))
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        report.errors.append(
            f"missing column(s): {', '.join(missing)} (found: {', '.join(map(str, frame.columns[:25]))})"
        )
        return report, pd.Series(False, index=frame.index)
    if frame.empty:
        report.errors.append("the file has a header but no data rows")
        return report, pd.Series(False, index=frame.index)

    invalid = pd.Series(False, index=frame.index)
    for rule, mask in row_rules(frame).items():
        count = int(mask.sum())
        if count:
            report.row_issues[rule] = count
            column = TARGET if rule.startswith(TARGET) else rule.split(" ", 1)[0]
            report.examples[rule] = [repr(v) for v in pd.unique(frame.loc[mask, column])[:_SAMPLE]]
            invalid |= mask
    report.valid_rows = int((~invalid).sum())
    fraction = float(invalid.mean())
    if fraction > max_invalid_fraction:
        report.errors.append(
            f"{fraction:.1%} of rows are invalid, more than the allowed {max_invalid_fraction:.1%}"
        )
    return report, ~invalid


def clean(frame: pd.DataFrame, valid: pd.Series) -> pd.DataFrame:
    """Keep the valid rows and only the model's columns, with a numeric target."""
    out = frame.loc[valid, list(REQUIRED_COLUMNS)].copy()
    out[TARGET] = _to_number(out[TARGET]).astype(np.float32)
    return out.reset_index(drop=True)
