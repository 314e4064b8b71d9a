"""Soak the model server with a mix of valid, invalid and oversized requests, with its prediction log writable and not.

Run from the repository root with the pipelines environment:

    .venv/bin/python bench/soak.py [--model-uri PATH] [--seconds 20] [--concurrency 16] [--max-requests 100000]

Everything binds 127.0.0.1; the server is stopped by its process group. The mix and the client
are src/tests/serving/soak_load.py (the same as the soak test, which asserts what this measures):
per request class, throughput and p50/p99 latency; the server's RSS when ready and after the
load; and the prediction-log bytes written per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def log_bytes(path: Path) -> int:
    """Bytes in the log and its rotated backups (predictions*.jsonl); 0 for a device such as /dev/full."""
    if not path.is_file():
        return 0
    return sum(p.stat().st_size for p in path.parent.glob(f"{path.stem}*{path.suffix}"))


def run_phase(name: str, model_dir: Path, log: Path, work: Path, args: argparse.Namespace) -> dict:
    from tests.serving.servers import model_server
    from tests.serving.soak_load import SOAK_SERVER_ARGS, request_mix, soak
    from tests.support.processes import tree_rss_mb

    label = name.replace(" ", "-")
    with model_server(model_dir, work, name=label, prediction_log=log, extra_args=SOAK_SERVER_ARGS) as s:
        port = int(s.url.rsplit(":", 1)[1])
        rss_start = tree_rss_mb(s.proc.pid)
        bytes_start = log_bytes(log)
        result = asyncio.run(
            soak(port, concurrency=args.concurrency, seconds=args.seconds, max_requests=args.max_requests)
        )
        time.sleep(0.5)  # the last log lines are written after their answers
        rss_end = tree_rss_mb(s.proc.pid)
        written = log_bytes(log) - bytes_start
        alive = s.proc.poll() is None
    mix = request_mix()
    return {
        "phase": name,
        "seconds": result.seconds,
        "requests": result.requests,
        "req_s": result.requests / result.seconds,
        "connection_errors": result.connection_errors,
        "server_errors": result.server_errors,
        "unexpected": result.unexpected(mix),
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "log_bytes_per_request": written / result.requests if result.requests else float("nan"),
        "alive": alive,
        "classes": {
            c.name: {
                "expected": c.expected,
                "count": len(result.by_class.get(c.name).latencies_s) if c.name in result.by_class else 0,
                "statuses": result.by_class[c.name].statuses if c.name in result.by_class else {},
                "p50_ms": percentile(result.by_class, c.name, 50),
                "p99_ms": percentile(result.by_class, c.name, 99),
            }
            for c in mix
        },
    }


def percentile(by_class: dict, name: str, q: float) -> float:
    import numpy as np

    values = by_class[name].latencies_s if name in by_class else []
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def print_table(phases: list[dict]) -> None:
    print("\n| phase | class | expected | requests | statuses | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---|---:|---:|")
    for phase in phases:
        for name, c in phase["classes"].items():
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(c["statuses"].items()))
            print(
                f"| {phase['phase']} | {name} | {c['expected']} | {c['count']} | {statuses} | "
                f"{c['p50_ms']:.2f} | {c['p99_ms']:.2f} |"
            )
    print(
        "\n| phase | req/s | requests | connection errors | 5xx | wrong status | RSS start MB | RSS end MB "
        "| log bytes/request | alive |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in phases:
        wrong = sum(n for statuses in p["unexpected"].values() for n in statuses.values())
        print(
            f"| {p['phase']} | {p['req_s']:.0f} | {p['requests']} | {p['connection_errors']} | {p['server_errors']} | "
            f"{wrong} | {p['rss_start_mb']:.0f} | {p['rss_end_mb']:.0f} | {p['log_bytes_per_request']:.0f} | "
            f"{'yes' if p['alive'] else 'NO'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-uri", type=Path, help="a saved pyfunc folder (default: train a small one)")
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=100_000, help="per phase")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from tests.serving.servers import model_sources_digest, small_model

    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    model_dir = args.model_uri or small_model(REPO / ".local" / "bench" / f"models-{model_sources_digest()}", 1)
    print(f"model: {model_dir}  (work dir {work}); load average {os.getloadavg()[0]:.2f}", flush=True)
    phases = []
    for name, log in (("log file", work / "predictions.jsonl"), ("log unwritable", Path("/dev/full"))):
        phases.append(run_phase(name, model_dir, log, work, args))
        print(f"  {name}: {phases[-1]['requests']} requests, {phases[-1]['req_s']:.0f} req/s", flush=True)
    (args.json or work / "results.json").write_text(json.dumps(phases, indent=1))
    print_table(phases)
    print(f"\ntotal {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
