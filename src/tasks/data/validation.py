"""Validate a raw wachttijden file: schema, types, nulls, ranges and categories, with a readable report."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from models.wachttijden.schema import FEATURES, KNOWN_CATEGORIES, SEPARATOR, TARGET
from tasks.data import sniff

REQUIRED_COLUMNS: tuple[str, ...] = (*FEATURES, TARGET)
# Waiting times are published in whole weeks; two years and more is a data-entry error.
MAX_WACHTTIJD_WEEKS = 104
# More dirty rows than this means the file itself is wrong, not a few rows in it.
DEFAULT_MAX_INVALID_FRACTION = 0.05
_SAMPLE = 5
# A Dutch decimal comma ("4,5" weeks); a lone comma only, so "1.234,5" stays not a number.
_DECIMAL_COMMA = re.compile(r"^\s*([+-]?\d*),(\d+)\s*$")
# Where read_raw_csv leaves what it did to the bytes (decompressed, lines skipped) for the report.
READ_NOTES = "read_notes"


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
    invalid_rows: int = 0  # rows breaking at least one rule: dropped when the file passes
    multi_rule_rows: int = 0  # of those, rows breaking more than one rule (counted under each in row_issues)
    errors: list[str] = field(default_factory=list)  # file-level: the file is rejected
    row_issues: dict[str, int] = field(default_factory=dict)  # rule -> number of rows breaking it
    examples: dict[str, list[str]] = field(default_factory=dict)  # rule -> a few offending values
    notes: list[str] = field(default_factory=list)  # how the file was read (decompressed, lines skipped)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def to_text(self) -> str:
        # A failed file is not prepared at all: its invalid rows are counted, never "dropped".
        verb = "dropped" if self.ok else "invalid"
        lines = [
            f"Validation of {self.source}: PASSED" if self.ok
            else f"Validation of {self.source}: FAILED (the file is rejected: nothing is prepared from it)"
        ]
        if self.ok or (self.total_rows and self.valid_rows + self.invalid_rows == self.total_rows):
            lines.append(f"rows: {self.total_rows}, valid: {self.valid_rows}, {verb}: {self.invalid_rows}")
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"ERROR: {e}" for e in self.errors]
        if self.row_issues:
            overlap = (
                f"{self.multi_rule_rows} row(s) break more than one rule, so the counts add up to more than "
                f"{self.invalid_rows}" if self.multi_rule_rows else "no row breaks more than one"
            )
            lines.append(f"{verb} rows per rule (a row counts under every rule it breaks; {overlap}):")
        for rule, count in sorted(self.row_issues.items()):
            sample = ", ".join(self.examples.get(rule, []))
            lines.append(f"  {count} row(s): {rule}" + (f" (e.g. {sample})" if sample else ""))
        return "\n".join(lines)


def _rejected(source: str, message: str, notes: list[str] | None = None) -> DataValidationError:
    return DataValidationError(ValidationReport(source, errors=[message], notes=list(notes or [])))


def detect_encoding(data: bytes) -> str:
    """UTF-8 (with or without BOM) when the bytes decode as such, else Windows-1252 like the published file."""
    try:
        data.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "cp1252"


def read_raw_csv(data: bytes, source: str, *, columns: tuple[str, ...] | None = REQUIRED_COLUMNS) -> pd.DataFrame:
    """Parse the raw CSV with every column as text; a file that is not `;`-separated CSV text is rejected.

    gzip, bzip2 and xz files are read decompressed, and blank lines before the header are skipped
    (both noted in `frame.attrs[READ_NOTES]` for the report). Only `columns` are parsed when the file
    has them all (the other 16 columns cost most of the parse time and are never used); otherwise every
    column is read so the report can list them. Values come back stripped of surrounding white space.
    """
    try:
        text = sniff.csv_text(data)
    except sniff.NotCsvText as exc:
        raise _rejected(source, str(exc)) from exc
    data, notes, first_line = text.data, list(text.notes), text.skipped_lines + 1
    encoding = detect_encoding(data)
    header = data.split(b"\n", 1)[0].decode(encoding, errors="replace")
    if not header.strip():
        raise _rejected(source, "the file is empty (no header row)", notes)
    if SEPARATOR not in header:
        guess = next((s for s in (",", "\t", "|") if s in header), None)
        hint = f"; the header looks {guess!r}-separated" if guess else ""
        raise _rejected(source, f"wrong separator: expected {SEPARATOR!r}{hint}", notes)
    sample = data[: sniff.SAMPLE_BYTES]
    if len(sample) < len(data):
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    misfit = sniff.extra_fields(sample.decode(encoding, errors="replace"), SEPARATOR, first_line)
    if misfit:
        raise _rejected(source, misfit, notes)
    # Everything as str with no NA guessing, so the rules see exactly what the file says; never take
    # a first column for the index (pandas does when rows have one field more than the header).
    options = {"sep": SEPARATOR, "dtype": str, "keep_default_na": False, "encoding": encoding, "index_col": False}
    try:
        found = pd.read_csv(io.BytesIO(data), nrows=0, **options).columns
        usecols = list(columns) if columns and set(columns) <= set(found) else None
        frame = pd.read_csv(io.BytesIO(data), usecols=usecols, **options)
    except UnicodeDecodeError as exc:
        raise _rejected(source, _undecodable(data, first_line) or f"the file cannot be decoded: {exc}", notes) from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise _rejected(source, f"the file cannot be parsed: {_reword(exc, first_line)}", notes) from exc
    for name in columns or ():
        if name in frame.columns:
            frame[name] = _strip(frame[name])
    frame.attrs[READ_NOTES] = notes
    return frame


def _undecodable(data: bytes, first_line: int) -> str | None:
    """Where the bytes stop being UTF-8 and Windows-1252, or None when one of them decodes."""
    where = []
    for name, codec in (("UTF-8", "utf-8"), ("Windows-1252", "cp1252")):
        try:
            data.decode(codec)
            return None
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + first_line
            where.append(f"{name} (byte 0x{data[exc.start]:02x} on line {line})")
    return f"the file is neither {where[0]} nor {where[1]} text"


def _reword(exc: Exception, first_line: int) -> str:
    """pandas' "Expected 21 fields in line 7, saw 22" in the file's own line numbers."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if not found:
        return str(exc).strip()
    expected, line, saw = map(int, found.groups())
    return f"line {line + first_line - 1} has {saw} fields against {expected} in the header"


def _per_distinct(values: pd.Series, convert: Callable[[pd.Series], np.ndarray], missing: object) -> pd.Series:
    """`convert` applied once per distinct value: these columns have a few hundred distinct values in 200k rows.

    factorize codes a missing value -1, which would index the last distinct value: it picks `missing`.
    """
    codes, uniques = pd.factorize(values)
    converted = np.append(convert(pd.Series(uniques, dtype=object)), [missing])
    return pd.Series(converted[codes], index=values.index, name=values.name)


def _to_number(values: pd.Series) -> pd.Series:
    """Numbers as float (NaN where missing or not a number), with a decimal comma read as a point."""

    def numbers(uniques: pd.Series) -> np.ndarray:
        text = uniques.astype(str).str.replace(_DECIMAL_COMMA, r"\1.\2", regex=True)
        return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)

    return _per_distinct(values, numbers, np.nan)


def _strip(values: pd.Series) -> pd.Series:
    """Values without surrounding white space; missing values stay missing."""
    return _per_distinct(values, lambda uniques: np.asarray(uniques.str.strip(), dtype=object), None)


def row_rules(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Boolean masks of rows breaking each rule (True = broken)."""
    target_text = frame[TARGET]
    target = _to_number(target_text)
    no_target = target_text.isna() | target_text.eq("")
    rules = {
        f"{TARGET} is empty": no_target,
        f"{TARGET} is not a number": target.isna() & ~no_target,
        f"{TARGET} is negative": target.lt(0),
        f"{TARGET} is above {MAX_WACHTTIJD_WEEKS} weeks": target.gt(MAX_WACHTTIJD_WEEKS),
    }
    for name in FEATURES:
        values = frame[name]
        empty = values.isna() | values.eq("")
        rules[f"{name} is empty"] = empty
        known = KNOWN_CATEGORIES.get(name)
        if known is not None:
            rules[f"{name} has an unknown category"] = ~empty & ~values.isin(known)
    return rules


def validate(
    frame: pd.DataFrame, source: str, *, max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION
) -> tuple[ValidationReport, pd.Series]:
    """Check `frame` and return the report and a mask of the rows that pass every rule."""
    report = ValidationReport(source, total_rows=len(frame), notes=list(frame.attrs.get(READ_NOTES, [])))
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        report.errors.append(
            f"missing column(s): {', '.join(missing)} (found: {', '.join(map(str, frame.columns[:25]))})"
        )
        return report, pd.Series(False, index=frame.index)
    if frame.empty:
        report.errors.append("the file has a header but no data rows")
        return report, pd.Series(False, index=frame.index)

    broken = np.zeros(len(frame), dtype=np.int16)  # rules each row breaks
    for rule, mask in row_rules(frame).items():
        count = int(mask.sum())
        if count:
            report.row_issues[rule] = count
            column = TARGET if rule.startswith(TARGET) else rule.split(" ", 1)[0]
            report.examples[rule] = [repr(v) for v in pd.unique(frame.loc[mask, column])[:_SAMPLE]]
            broken += mask.to_numpy(dtype=bool)
    invalid = pd.Series(broken > 0, index=frame.index)
    report.invalid_rows = int(invalid.sum())
    report.valid_rows = len(frame) - report.invalid_rows
    report.multi_rule_rows = int((broken > 1).sum())
    fraction = report.invalid_rows / len(frame)
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
