"""Generate a file with the exact shape of the Dutch wachttijden CSV, since the real one cannot be downloaded here."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.wachttijden.schema import KNOWN_CATEGORIES, RAW_COLUMNS, SEPARATOR

# The published file is Windows-1252/Latin-1 encoded; the generator writes the same.
ENCODING = "cp1252"

TYPES_WACHTTIJD = {"Polikliniek": 0.55, "Behandeling": 0.35, "Diagnostiek": 0.10}
TYPES_ZORGINSTELLING = {"Ziekenhuis": 0.7, "Kliniek": 0.3}
ROAZ_REGIOS = tuple(sorted(KNOWN_CATEGORIES["ROAZ_REGIO"]))
# (name, AGB specialism code, base waiting time in weeks)
SPECIALISMEN = (
    ("Oogheelkunde", "0301", 7.0), ("Keel-, neus- en oorheelkunde", "0302", 6.0), ("Heelkunde", "0303", 5.0),
    ("Plastische chirurgie", "0304", 12.0), ("Orthopedie", "0305", 9.0), ("Urologie", "0306", 6.0),
    ("Gynaecologie", "0307", 4.5), ("Neurochirurgie", "0308", 10.0), ("Dermatologie", "0310", 8.0),
    ("Interne geneeskunde", "0313", 4.0), ("Kindergeneeskunde", "0316", 3.5),
    ("Maag-darm-leverziekten", "0318", 6.5), ("Cardiologie", "0320", 5.0), ("Longziekten", "0322", 4.0),
    ("Reumatologie", "0324", 7.5), ("Allergologie", "0326", 6.0), ("Revalidatiegeneeskunde", "0327", 5.5),
    ("Cardio-thoracale chirurgie", "0328", 8.0), ("Psychiatrie", "0329", 9.5), ("Neurologie", "0330", 6.0),
    ("Klinische geriatrie", "0335", 4.0), ("Radiotherapie", "0361", 2.0), ("Radiologie", "0362", 2.5),
    ("Anesthesiologie", "0389", 3.0), ("Mondziekten en kaakchirurgie", "0390", 8.5),
    ("Klinische genetica", "0386", 11.0), ("Audiologie", "0387", 5.0), ("Nucleaire geneeskunde", "0363", 2.5),
)
PLAATSEN = (
    ("Groningen", "Groningen"), ("Zwolle", "Overijssel"), ("Enschede", "Overijssel"), ("Nijmegen", "Gelderland"),
    ("Utrecht", "Utrecht"), ("Amsterdam", "Noord-Holland"), ("Den Haag", "Zuid-Holland"),
    ("Rotterdam", "Zuid-Holland"), ("Eindhoven", "Noord-Brabant"), ("Maastricht", "Limburg"),
    ("Leeuwarden", "Friesland"),
)
BRONNEN = ("Instelling", "ZKN", "NZa")


@dataclass(frozen=True)
class DirtyRowCounts:
    """How many rows of each defect the generator plants (what validation must catch)."""

    empty_target: int
    negative_target: int
    absurd_target: int
    unknown_category: int
    missing_zorginstelling: int


def dirty_row_counts(rows: int) -> DirtyRowCounts:
    """About 0.5% dirty rows in all, at least one of each kind."""
    each = max(1, rows // 1000)
    return DirtyRowCounts(each, max(1, each // 2), max(1, each // 2), each, each)


def generate(rows: int = 200_000, seed: int = 42) -> pd.DataFrame:
    """A deterministic frame of `rows` rows with the published columns, as strings like the CSV."""
    rng = np.random.default_rng(seed)
    n_locations = max(1, min(rows, 180))
    # A few hundred locations, each in one region, place and institution type; big hospitals list many rows.
    loc_region = rng.integers(0, len(ROAZ_REGIOS), n_locations)
    loc_type = rng.choice(list(TYPES_ZORGINSTELLING), n_locations, p=list(TYPES_ZORGINSTELLING.values()))
    loc_weight = rng.pareto(1.5, n_locations) + 1
    loc_effect = rng.normal(0, 0.25, n_locations)
    location = rng.choice(n_locations, rows, p=loc_weight / loc_weight.sum())

    spec_popularity = rng.dirichlet(np.full(len(SPECIALISMEN), 0.8))
    spec = rng.choice(len(SPECIALISMEN), rows, p=spec_popularity)
    type_wt = rng.choice(list(TYPES_WACHTTIJD), rows, p=list(TYPES_WACHTTIJD.values()))

    base = np.array([s[2] for s in SPECIALISMEN])[spec]
    type_factor = pd.Series(type_wt).map({"Polikliniek": 1.0, "Behandeling": 1.6, "Diagnostiek": 0.5}).to_numpy()
    region_factor = 1 + 0.08 * (loc_region[location] - len(ROAZ_REGIOS) / 2) / len(ROAZ_REGIOS)
    kliniek_factor = np.where(loc_type[location] == "Kliniek", 0.7, 1.0)
    mean = base * type_factor * region_factor * kliniek_factor * np.exp(loc_effect[location])
    # Log-normal noise gives the long right tail of the published waiting times.
    wachttijd = np.maximum(0, np.round(mean * rng.lognormal(-0.08, 0.4, rows))).astype(int)

    plaats = [PLAATSEN[r % len(PLAATSEN)] for r in loc_region[location]]
    frame = pd.DataFrame(
        {
            "ID": np.arange(1, rows + 1).astype(str),
            "PEILDATUM": "2022-11-01",
            "ORGANISATIE_AGB": (6_010_000 + location // 3).astype(str),
            "ORGANISATIENAAM": [f"Zorggroep {PLAATSEN[r % len(PLAATSEN)][0]} {i // 3}" for i, r in
                                zip(location, loc_region[location], strict=True)],
            "LOCATIE_AGB": (6_020_000 + location).astype(str),
            "LOCATIENAAM": [f"Locatie {i} ({'Privékliniek' if t == 'Kliniek' else 'Ziekenhuis'})"
                            for i, t in zip(location, loc_type[location], strict=True)],
            "STRAAT": [f"Ziekenhuisweg {i % 97}" for i in location],
            "HUISNUMMER": (location % 200 + 1).astype(str),
            "POSTCODE": [f"{1000 + (i * 37) % 8999} AB" for i in location],
            "PLAATS": [p[0] for p in plaats],
            "PROVINCIE": [p[1] for p in plaats],
            "ROAZ_REGIO": np.array(ROAZ_REGIOS)[loc_region[location]],
            "TYPE_ZORGINSTELLING": loc_type[location],
            "SPECIALISME_CODE": [SPECIALISMEN[s][1] for s in spec],
            "SPECIALISME": [f"{SPECIALISMEN[s][0]} ({SPECIALISMEN[s][1][1:]})" for s in spec],
            "VERRICHTING_CODE": "",
            "VERRICHTING": "",
            "TYPE_WACHTTIJD": type_wt,
            "WACHTTIJD": wachttijd.astype(str),
            "BRON": rng.choice(BRONNEN, rows, p=[0.8, 0.15, 0.05]),
            "OPMERKING": "",
        },
        columns=list(RAW_COLUMNS),
    )
    _plant_dirty_rows(frame, rng)
    return frame


def _plant_dirty_rows(frame: pd.DataFrame, rng: np.random.Generator) -> None:
    counts = dirty_row_counts(len(frame))
    total = sum(vars(counts).values())
    if total > len(frame):
        return
    picks = iter(np.split(rng.choice(len(frame), total, replace=False), np.cumsum(list(vars(counts).values()))[:-1]))
    frame.loc[next(picks), "WACHTTIJD"] = ""
    frame.loc[next(picks), "WACHTTIJD"] = "-3"
    frame.loc[next(picks), "WACHTTIJD"] = "999"
    frame.loc[next(picks), "TYPE_WACHTTIJD"] = "Onbekend"
    frame.loc[next(picks), "TYPE_ZORGINSTELLING"] = ""


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write like the published file: `;`-separated, cp1252, header row, no index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, sep=SEPARATOR, index=False, encoding=ENCODING)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    write_csv(generate(args.rows, args.seed), args.output)
    print(f"wrote {args.rows} rows to {args.output}")


if __name__ == "__main__":
    main()
