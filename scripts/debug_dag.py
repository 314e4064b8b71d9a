"""Run one DAG in-process with dag.test(), for debugging from VS Code or a terminal.

    .venv/bin/python scripts/debug_dag.py prepare_dataset [--conf '{"raw_file": "..."}']
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dag_id")
    parser.add_argument("--conf", default="{}", help="DAG params as JSON")
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".local" / "airflow-debug"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "src"))
    # dag.test() needs a metadata database; migrating an up-to-date one is a quick no-op.
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True)

    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(str(ROOT / "src" / "pipelines"), bundle_path=ROOT / "src")
    if bag.import_errors:
        print(json.dumps(bag.import_errors, indent=1))
        return 1
    run = bag.dags[args.dag_id].test(run_conf=json.loads(args.conf))
    print(f"{args.dag_id}: {run.state}")
    return 0 if run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
