"""The generator writes a file with the published shape: columns, separator, encoding, dirty rows."""

import pandas as pd

from models.wachttijden.schema import KNOWN_CATEGORIES, RAW_COLUMNS, SEPARATOR
from tasks.data.generate import (
    ENCODING,
    ROAZ_REGIOS,
    TYPES_WACHTTIJD,
    TYPES_ZORGINSTELLING,
    dirty_row_counts,
    generate,
    write_csv,
)


def test_should_write_the_21_published_columns_semicolon_separated_in_cp1252(tmp_path):
    path = write_csv(generate(500, seed=1), tmp_path / "w.csv")
    raw = path.read_bytes()
    header = raw.split(b"\r\n" if b"\r\n" in raw else b"\n", 1)[0].decode(ENCODING)
    assert header.split(SEPARATOR) == list(RAW_COLUMNS)
    assert len(RAW_COLUMNS) == 21
    assert "Privékliniek".encode(ENCODING) in raw  # really cp1252, not UTF-8
    assert not path.with_name("w.csv.tmp").exists()


def test_should_be_deterministic_for_a_seed_and_differ_between_seeds():
    assert generate(300, seed=3).equals(generate(300, seed=3))
    assert not generate(300, seed=3).equals(generate(300, seed=4))


def test_should_plant_each_kind_of_dirty_row():
    frame = generate(5_000, seed=2)
    counts = dirty_row_counts(5_000)
    target = pd.to_numeric(frame["WACHTTIJD"], errors="coerce")
    assert (frame["WACHTTIJD"] == "").sum() == counts.empty_target
    assert (target < 0).sum() == counts.negative_target
    assert (target > 104).sum() == counts.absurd_target
    assert (~frame["TYPE_WACHTTIJD"].isin(KNOWN_CATEGORIES["TYPE_WACHTTIJD"])).sum() == counts.unknown_category
    assert (frame["TYPE_ZORGINSTELLING"] == "").sum() == counts.missing_zorginstelling


def test_should_have_realistic_category_counts_and_skew():
    frame = generate(20_000, seed=5)
    assert frame["SPECIALISME"].nunique() >= 25
    assert frame["ROAZ_REGIO"].nunique() == 11
    shares = frame["SPECIALISME"].value_counts(normalize=True)
    assert shares.iloc[0] > 3 * shares.iloc[-1]  # skewed, not uniform
    target = pd.to_numeric(frame["WACHTTIJD"], errors="coerce").dropna()
    target = target[(target >= 0) & (target <= 104)]
    assert target.mean() > target.median()  # long right tail


def test_should_draw_the_closed_categories_from_the_schema():
    # The schema is the one list of known categories; the generator only adds how often each occurs.
    assert set(TYPES_WACHTTIJD) == KNOWN_CATEGORIES["TYPE_WACHTTIJD"]
    assert set(TYPES_ZORGINSTELLING) == KNOWN_CATEGORIES["TYPE_ZORGINSTELLING"]
    assert set(ROAZ_REGIOS) == KNOWN_CATEGORIES["ROAZ_REGIO"]
