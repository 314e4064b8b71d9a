"""Pipeline benchmark: DAG parse time, prepare_dataset throughput vs pandas.read_csv, training time per epoch,
and (with --deploy-local) the wall time of ./deploy-local.sh to the first prediction.

    .venv/bin/python bench/pipeline.py [--rows 200000] [--epochs 2] [--deploy-local]

Prints one table; every ratio is measured side by side in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
PYTHON = ROOT / ".venv" / "bin" / "python"

_PARSE_ONE = """
import sys, time
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
start = time.perf_counter()
bag = BundleDagBag(sys.argv[1], bundle_path=Path(sys.argv[2]))
assert not bag.import_errors, bag.import_errors
print(time.perf_counter() - start)
"""


def parse_times(repeats: int = 3) -> dict[str, float]:
    """Median seconds to parse each DAG file in a fresh interpreter (after Airflow itself is imported)."""
    env = {**os.environ, "AIRFLOW_HOME": tempfile.mkdtemp(), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    times = {}
    for path in sorted((ROOT / "src" / "pipelines").glob("[!_]*.py")):
        if path.name == "assets.py":
            continue
        runs = [
            float(
                subprocess.run(
                    [str(PYTHON), "-c", _PARSE_ONE, str(path), str(ROOT / "src")],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()[-1]
            )
            for _ in range(repeats)
        ]
        times[path.stem] = statistics.median(runs)
    return times


def prepare_throughput(rows: int, work: Path) -> dict[str, float]:
    import pandas as pd

    from tasks.data.datalake import open_datalake
    from tasks.data.generate import generate, write_csv
    from tasks.data.prepare import clean_validated, split_clean, validate_raw

    raw = write_csv(generate(rows), work / "raw.csv")
    lake = open_datalake(str(work / "lake"))
    lake.upload_from("raw", "w.csv", raw)

    start = time.perf_counter()
    pd.read_csv(raw, sep=";", encoding="cp1252")
    read_csv_s = time.perf_counter() - start

    start = time.perf_counter()
    validate_raw(lake, "w.csv", "run=bench")
    clean_validated(lake, "run=bench")
    split_clean(lake, "run=bench")
    prepare_s = time.perf_counter() - start
    return {"read_csv_s": read_csv_s, "prepare_s": prepare_s, "rows": rows, "lake": lake}


def epoch_seconds(lake, epochs: int) -> list[float]:
    from tasks.data.prepare import read_split
    from tasks.training.train import Candidate, fit

    train, validation = read_split(lake, "run=bench", "train"), read_split(lake, "run=bench", "validation")
    _, _, _, seconds = fit(train, validation, Candidate("bench", epochs=epochs, batch_size=512))
    return seconds


def deploy_local_seconds(rows: int) -> dict[str, float]:
    """Wall times of ./deploy-local.sh (warm venvs) to the first successful prediction, and of a second
    ./deploy-local.sh with the same raw data (which should find nothing to do); then down."""
    from tests.support.processes import free_port

    local = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    env = {
        **os.environ,
        "SLUICE_LOCAL_DIR": str(local),
        "SLUICE_ROWS": str(rows),
        "SLUICE_EPOCHS": "2",
        "SLUICE_AIRFLOW_PORT": str(free_port()),
        "SLUICE_MLFLOW_PORT": str(free_port()),
        "SLUICE_INFERENCE_PORT": str(free_port()),
        "SLUICE_ROUTER_PORT": str(free_port()),
    }
    start = time.perf_counter()
    try:
        subprocess.run([str(ROOT / "deploy-local.sh")], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [str(ROOT / "scripts" / "perform-prediction.sh")], env=env, check=True, stdout=subprocess.DEVNULL
        )
        first = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([str(ROOT / "deploy-local.sh")], env=env, check=True, stdout=subprocess.DEVNULL)
        return {"first": first, "rerun": time.perf_counter() - start}
    finally:
        subprocess.run([str(ROOT / "deploy-local.sh"), "down"], env=env, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--deploy-local", action="store_true", help="also time ./deploy-local.sh (minutes)")
    args = parser.parse_args()

    rows = []
    for dag_id, seconds in parse_times().items():
        rows.append((f"parse {dag_id}.py", f"{seconds * 1000:.0f} ms", ""))
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare_throughput(args.rows, Path(tmp))
        read_rate, prep_rate = prep["rows"] / prep["read_csv_s"], prep["rows"] / prep["prepare_s"]
        rows.append(("pandas.read_csv (baseline)", f"{read_rate:,.0f} rows/s", "1.00"))
        rows.append(
            ("prepare_dataset tasks (validate+clean+split)", f"{prep_rate:,.0f} rows/s", f"{prep_rate / read_rate:.2f}")
        )
        seconds = epoch_seconds(prep["lake"], args.epochs)
        rows.append(
            (
                f"training, {int(args.rows * 0.8):,} rows, s/epoch (median of {len(seconds)})",
                f"{statistics.median(seconds):.1f} s",
                "",
            )
        )
    if args.deploy_local:
        times = deploy_local_seconds(args.rows)
        rows.append(("./deploy-local.sh to first prediction (warm venvs)", f"{times['first']:.0f} s", "1.00"))
        ratio = times["rerun"] / times["first"]
        rows.append(("./deploy-local.sh again, same raw data", f"{times['rerun']:.1f} s", f"{ratio:.2f}"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>18}  ratio")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>18}  {ratio}")
    print(json.dumps({"rows": args.rows}), file=sys.stderr)


if __name__ == "__main__":
    main()
