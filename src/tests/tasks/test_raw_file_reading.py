"""Raw files that are not plain `;`-separated CSV text: each is named for what it is, or read when it can be."""

import bz2
import gzip
import lzma
import zipfile

import numpy as np
import pandas as pd
import pytest

from models.wachttijden.schema import FEATURES, TARGET
from tasks.data.generate import generate, write_csv
from tasks.data.validation import DataValidationError, ValidationReport, read_raw_csv, validate


@pytest.fixture(scope="module")
def good_csv(tmp_path_factory):
    """A generated 20,000-row raw file with the published shape (and its few planted dirty rows)."""
    return write_csv(generate(20_000, seed=11), tmp_path_factory.mktemp("raw") / "wachttijden.csv")


def read(path) -> tuple[pd.DataFrame, ValidationReport]:
    frame = read_raw_csv(path.read_bytes(), str(path))
    return frame, validate(frame, str(path))[0]


def rejection(path) -> str:
    with pytest.raises(DataValidationError) as caught:
        read(path)
    report = caught.value.report
    assert not report.ok and report.to_text() == str(caught.value)
    return report.to_text()


def written(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("compress", "kind"), [(gzip.compress, "gzip"), (bz2.compress, "bzip2"),
                                                (lzma.compress, "xz")])
def test_a_compressed_file_is_read_decompressed_and_the_report_says_so(tmp_path, good_csv, compress, kind):
    plain, plain_report = read(good_csv)
    frame, report = read(written(tmp_path, "wachttijden.csv.gz", compress(good_csv.read_bytes())))
    assert frame.equals(plain)
    assert report.ok and report.total_rows == 20_000 and report.row_issues == plain_report.row_issues
    assert f"note: {kind}-compressed" in report.to_text()


def test_a_truncated_gzip_file_is_named_as_such(tmp_path, good_csv):
    data = gzip.compress(good_csv.read_bytes())
    text = rejection(written(tmp_path, "cut.csv.gz", data[: len(data) // 2]))
    assert "ERROR: the file is gzip-compressed but cannot be decompressed" in text


def _zip(tmp_path, *members: str):
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for member in members:
            archive.writestr(member, "ID;WACHTTIJD\n1;3\n")
    return path.read_bytes()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda tmp: np.random.default_rng(0).bytes(4096), "the file is binary, not CSV text (NUL bytes"),
        (lambda tmp: bytes(range(1, 256)) * 40, "the file is binary, not CSV text (11% control characters"),
        (lambda tmp: b"\x89PNG\r\n\x1a\n" + bytes(500), "the file is binary, not CSV text (NUL bytes; it starts with "
                                                         "b'\\x89PNG\\r\\n\\x1a\\n"),
        (lambda tmp: gzip.compress(np.random.default_rng(1).bytes(4096)),
         "the gzip-decompressed content is binary, not CSV text"),
        (lambda tmp: gzip.compress(gzip.compress(b"ID;WACHTTIJD\n1;3\n")),
         "the gzip-decompressed content is gzip-compressed (again)"),
        (lambda tmp: _zip(tmp, "wachttijden.csv"), "the file is a zip archive of wachttijden.csv, not CSV text"),
        (lambda tmp: _zip(tmp, "[Content_Types].xml", "xl/workbook.xml"), "the file is an Excel workbook (.xlsx)"),
        (lambda tmp: "ID;WACHTTIJD\n1;3\n".encode("utf-16"), "the file is UTF-16 text (byte-order mark ff fe)"),
    ],
    ids=["random", "random-without-nul", "png", "gzip-of-binary", "gzip-twice", "zip", "xlsx", "utf-16"],
)
def test_compressed_archived_and_binary_content_is_named_not_taken_for_a_wrong_separator(tmp_path, content, message):
    text = rejection(written(tmp_path, "raw.csv", content(tmp_path)))
    assert f"ERROR: {message}" in text
    assert "separator" not in text and "codec" not in text


def test_a_stray_byte_that_no_encoding_reads_is_located(tmp_path, good_csv):
    lines = good_csv.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b";", b";\xe9", 1)  # Windows-1252 "é": not UTF-8
    lines[6] = lines[6].replace(b";", b";\x81", 1)  # undefined in Windows-1252, and not UTF-8 either
    text = rejection(written(tmp_path, "raw.csv", b"\n".join(lines)))
    assert "ERROR: the file is neither UTF-8 (byte 0xe9 on line 3) nor Windows-1252 (byte 0x81 on line 7) text" in text


@pytest.mark.parametrize(("blank", "lines"), [(b"\n", 1), (b"\r\n", 1), (b"\n  \n\t\r\n", 3)])
def test_blank_lines_before_the_header_are_skipped(tmp_path, good_csv, blank, lines):
    plain, _ = read(good_csv)
    frame, report = read(written(tmp_path, "raw.csv", blank + good_csv.read_bytes()))
    assert frame.equals(plain)
    assert report.ok and report.total_rows == 20_000
    assert f"note: skipped {lines} blank line(s) before the header" in report.to_text()


def test_blank_lines_after_a_utf8_byte_order_mark_are_skipped(tmp_path, good_csv):
    utf8 = good_csv.read_bytes().decode("cp1252").encode("utf-8")
    frame, report = read(written(tmp_path, "raw.csv", b"\xef\xbb\xbf\n" + utf8))
    assert report.ok and set(frame.columns) == {*FEATURES, TARGET} and len(frame) == 20_000


def _with_trailing_separator(data: bytes) -> bytes:
    header, *rows = data.split(b"\r\n" if b"\r\n" in data else b"\n")
    return b"\n".join([header, *(row + b";" if row else row for row in rows)])


def test_a_trailing_separator_on_the_data_rows_only_is_named_with_the_field_counts(tmp_path, good_csv):
    text = rejection(written(tmp_path, "raw.csv", _with_trailing_separator(good_csv.read_bytes())))
    assert "ERROR: data rows have 22 fields against 21 in the header (all " in text
    assert "from line 2): the rows end with ';' and the header does not" in text
    assert "unknown category" not in text and "not a number" not in text


def test_the_field_counts_and_line_numbers_are_the_files_own(tmp_path):
    # Five columns and a blank line first: the numbers in the message come from this file.
    data = pd.DataFrame({c: ["Polikliniek"] * 3 for c in [*FEATURES, TARGET]}).to_csv(sep=";", index=False)
    text = rejection(written(tmp_path, "raw.csv", b"\n" + _with_trailing_separator(data.encode())))
    assert "data rows have 6 fields against 5 in the header (all 3 data row(s) checked, from line 3)" in text


def test_a_header_with_the_trailing_separator_as_well_is_read_normally(tmp_path, good_csv):
    lines = good_csv.read_bytes().split(b"\r\n" if b"\r\n" in good_csv.read_bytes() else b"\n")
    frame, report = read(written(tmp_path, "raw.csv", b"\n".join(line + b";" if line else line for line in lines)))
    assert frame.equals(read(good_csv)[0]) and report.ok


def test_a_longer_row_in_a_file_parsed_whole_is_located_by_its_line(tmp_path):
    # Without all model columns every column is parsed, and pandas' tokenizer error is reworded.
    rows = ["ID;WACHTTIJD", *(f"{i};3" for i in range(1, 10)), "10;3;x"]
    text = rejection(written(tmp_path, "raw.csv", ("\n\n" + "\n".join(rows) + "\n").encode()))
    assert "ERROR: the file cannot be parsed: line 13 has 3 fields against 2 in the header" in text
