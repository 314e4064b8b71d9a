"""What a raw file is before it is parsed as CSV: compressed, another format, binary, or text (and where it starts).

pandas reads any bytes as *some* text, so without these checks a gzip file or an upload of the wrong
file surfaces as a wrong separator or a codec error; here it is named for what it is.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

# Enough to judge the content and to hold a few hundred rows, cheap even for a 50 MB file.
SAMPLE_BYTES = 64 * 1024
# Text has no C0 control characters other than white space; random or binary bytes have ~11%.
MAX_CONTROL_FRACTION = 0.05

# Compressions the standard library reads: the decompressed content is what gets validated.
DECOMPRESSORS: dict[bytes, tuple[str, Callable[[bytes], bytes]]] = {
    b"\x1f\x8b": ("gzip", gzip.decompress),
    b"BZh": ("bzip2", bz2.decompress),
    b"\xfd7zXZ\x00": ("xz", lzma.decompress),
}
# Formats that are not one CSV text, by their magic bytes.
OTHER_FORMATS: dict[bytes, str] = {
    b"PK\x03\x04": "a zip archive",  # named by its members below
    b"PK\x05\x06": "a zip archive",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "an Excel 97-2003 workbook (.xls)",
    b"(\xb5/\xfd": "zstd-compressed (not readable here)",
    b"7z\xbc\xaf'\x1c": "a 7-Zip archive",
    b"PAR1": "a Parquet file",
}
# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f") + b"\x7f"
_BLANK_LINES = re.compile(rb"(?:[ \t\r]*\n)+")
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


class NotCsvText(ValueError):
    """The bytes are not CSV text; the message says what they are instead."""


@dataclass(frozen=True)
class Text:
    """The CSV bytes to parse, how many blank lines preceded the header, and what was done to get them."""

    data: bytes
    skipped_lines: int = 0
    notes: tuple[str, ...] = ()


def csv_text(data: bytes) -> Text:
    """The CSV text of a raw file: decompressed when compressed, leading blank lines skipped.

    Raises NotCsvText for another format, a compression that cannot be read, or binary content.
    """
    notes: list[str] = []
    what = "the file"
    for magic, (name, decompress) in DECOMPRESSORS.items():
        if data.startswith(magic):
            try:
                plain = decompress(data)
            except _DECOMPRESS_ERRORS as exc:
                raise NotCsvText(f"the file is {name}-compressed but cannot be decompressed ({exc})") from exc
            notes.append(f"{name}-compressed: {len(data):,} bytes read as {len(plain):,} decompressed bytes")
            data, what = plain, f"the {name}-decompressed content"
            break
    _reject_non_text(data, what)
    data, skipped = _skip_blank_lines(data)
    if skipped:
        notes.append(f"skipped {skipped} blank line(s) before the header")
    return Text(data, skipped, tuple(notes))


def _reject_non_text(data: bytes, what: str) -> None:
    for magic, (name, _) in DECOMPRESSORS.items():
        if data.startswith(magic):
            raise NotCsvText(f"{what} is {name}-compressed (again): decompress it to the CSV itself")
    for magic, name in OTHER_FORMATS.items():
        if data.startswith(magic):
            kind = _describe_zip(data) if magic.startswith(b"PK") else name
            raise NotCsvText(f"{what} is {kind}, not CSV text")
    for bom, name in WIDE_BOMS:
        if data.startswith(bom):
            raise NotCsvText(
                f"{what} is {name} text (byte-order mark {bom.hex(' ')}): save it as UTF-8 or Windows-1252"
            )
    sample = data[:SAMPLE_BYTES]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if b"\x00" in sample or controls > MAX_CONTROL_FRACTION * len(sample):
        reason = "NUL bytes" if b"\x00" in sample else f"{controls / len(sample):.0%} control characters"
        raise NotCsvText(f"{what} is binary, not CSV text ({reason}; it starts with {data[:16]!r})")


def _describe_zip(data: bytes) -> str:
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return "a zip archive (unreadable)"
    if "xl/workbook.xml" in names:  # an .xlsx is a zip of XML parts
        return "an Excel workbook (.xlsx)"
    if not names:
        return "an empty zip archive"
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"a zip archive of {shown}"


def _skip_blank_lines(data: bytes) -> tuple[bytes, int]:
    """Drop blank (or white-space-only) lines before the header, keeping a UTF-8 byte-order mark."""
    bom = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
    blank = _BLANK_LINES.match(data, len(bom))
    if blank is None:
        return data, 0
    return bom + data[blank.end():], data.count(b"\n", 0, blank.end())


def extra_fields(text: str, separator: str, first_line: int = 1) -> str | None:
    """Why the data rows do not fit the header when most sampled rows have more fields than it, else None.

    Such rows do not line up with the header (by default pandas takes their first field for a row index
    and shifts every column by one), so the file is rejected rather than guessed at. `text` is the start
    of the file, cut at the end of a line; deeper rows are pandas' to check.
    """
    reader = csv.reader(io.StringIO(text), delimiter=separator)
    header = next(reader, [])
    rows: list[tuple[int, list[str]]] = []
    line = reader.line_num
    for row in reader:
        if row:
            rows.append((line + 1, row))
        line = reader.line_num
    wider = [(n, row) for n, row in rows if len(row) > len(header)]
    if not wider or len(wider) * 2 < len(rows):
        return None
    counts = sorted({len(row) for _, row in wider})
    fields = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    span = "all" if len(wider) == len(rows) else f"{len(wider)} of"
    message = (
        f"data rows have {fields} fields against {len(header)} in the header "
        f"({span} {len(rows)} data row(s) checked, from line {wider[0][0] + first_line - 1})"
    )
    header_line = text.split("\n", 1)[0].rstrip("\r\n ")
    if all(row[-1] == "" for _, row in wider) and not header_line.endswith(separator):
        message += f": the rows end with {separator!r} and the header does not"
    return message
