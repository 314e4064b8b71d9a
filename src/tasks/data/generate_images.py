"""Write synthetic xray scans (models.xray.generate) into any data lake, in the raw layout a real set uses:
raw/xray/YYYY/MM/DD/<class>/<file>.png.

    python -m tasks.data.generate_images .local/datalake --count 3000 --seed 42 --date 2024-05-01
"""

from __future__ import annotations

import argparse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from models.xray.generate import generate_scans
from models.xray.schema import RAW_PREFIX
from tasks.data.datalake import DataLake, open_datalake

WRITE_THREADS = 8


def write_scans(lake: DataLake, *, count: int, seed: int, day: date, overwrite: bool = False) -> dict[str, int]:
    """Generate `count` files and write them under the day's folder; counts by kind ("good", defects)."""
    scans = generate_scans(count, seed)
    folder = f"{RAW_PREFIX.removeprefix('raw/')}/{day:%Y/%m/%d}"

    def write(scan) -> None:
        lake.write_bytes("raw", f"{folder}/{scan.label}/{scan.name}", scan.data, overwrite=overwrite)

    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        list(pool.map(write, scans))
    return dict(Counter(scan.kind for scan in scans)) | dict(Counter(scan.label for scan in scans))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datalake", help="data lake URL or folder (as the datalake_url Variable)")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--date", type=date.fromisoformat, default=date(2024, 5, 1), help="arrival day (YYYY-MM-DD)")
    parser.add_argument("--overwrite", action="store_true", help="replace files of the same name")
    args = parser.parse_args(argv)
    counts = write_scans(open_datalake(args.datalake), count=args.count, seed=args.seed, day=args.date,
                         overwrite=args.overwrite)
    print(f"wrote {args.count} files to raw/{RAW_PREFIX.removeprefix('raw/')}/{args.date:%Y/%m/%d}/: {counts}")


if __name__ == "__main__":
    main()
