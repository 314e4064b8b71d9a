"""Benchmark the model server against `mlflow models serve`, the in-process floor, and the router with mirroring.

Run from the repository root with the pipelines environment:

    .venv/bin/python bench/serving.py [--model-uri PATH] [--seconds 4] [--time-limit-s 300]

Everything binds 127.0.0.1; every started process is stopped by its process group.
The load generator runs in its own process with a minimal HTTP/1.1 keep-alive client
(pre-encoded requests over asyncio streams) so that it is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

GOALS = {
    "server_vs_mlflow": 1.5,  # project server rows/s over mlflow serve, every cell
    "batch32_vs_floor": 0.5,  # 32-row c1 rows/s over in-process predict_columns
    "c16_vs_c1": 3.0,  # 1-row rows/s at concurrency 16 over concurrency 1
    "mirror_p50_overhead": 1.10,  # champion p50 with mirroring over without
}


# ----- load generator (runs in a child process) -----


async def _one_connection(host: str, port: int, request: bytes, deadline: float, budget: list[int], out: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                header = await reader.readline()
                if header in (b"\r\n", b""):
                    break
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            out["latencies"].append(time.perf_counter() - start)
            if b" 200 " not in status_line:
                out["errors"] += 1
    finally:
        writer.close()


async def _load(url_path: str, port: int, body: bytes, concurrency: int, seconds: float, max_requests: int) -> dict:
    request = (
        f"POST {url_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out = {"latencies": [], "errors": 0}
    budget = [max_requests]
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(_one_connection("127.0.0.1", port, request, deadline, budget, out) for _ in range(concurrency))
    )
    out["elapsed"] = time.perf_counter() - start
    return out


def loadgen_main(spec: str) -> None:
    # The job is a file: a body of a few images is more than one command-line argument may hold.
    job = json.loads(Path(spec).read_text())
    body = json.dumps(job["body"]).encode()
    # Warm the server's connection handling and the model call before measuring.
    asyncio.run(_load(job["path"], job["port"], body, job["concurrency"], 0.5, 200))
    result = asyncio.run(_load(job["path"], job["port"], body, job["concurrency"], job["seconds"], job["max_requests"]))
    print(json.dumps(result))


# ----- orchestration (runs in .venv) -----


def run_load(port: int, path: str, body: dict, concurrency: int, seconds: float, max_requests: int) -> dict:
    import numpy as np

    job = {
        "port": port,
        "path": path,
        "body": body,
        "concurrency": concurrency,
        "seconds": seconds,
        "max_requests": max_requests,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="loadgen-") as spec:
        spec.write(json.dumps(job))
        spec.flush()
        done = subprocess.run(
            [sys.executable, __file__, "--loadgen", spec.name],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    raw = json.loads(done.stdout)
    latencies = np.asarray(raw["latencies"]) * 1000
    rows = len(body.get("instances", [])) or 1
    n = len(latencies)
    return {
        "requests": n,
        "errors": raw["errors"],
        "req_s": n / raw["elapsed"],
        "rows_s": n * rows / raw["elapsed"],
        "p50_ms": float(np.percentile(latencies, 50)) if n else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99)) if n else float("nan"),
    }


@contextmanager
def service(name: str, cmd: list[str], ready_url: str, log_dir: Path) -> Iterator[dict]:
    from tests.serving.servers import SERVING_ENV, SERVING_PYTHON
    from tests.support.processes import http_ok, start_process, stop_process, wait_until

    log_path = log_dir / f"{name}.log"
    started = time.perf_counter()
    # `mlflow models serve` execs `uvicorn` from PATH: put the serving environment's bin first.
    env = {**SERVING_ENV, "PATH": f"{SERVING_PYTHON.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = start_process(cmd, log_path=log_path, env=env, cwd=REPO)
    try:
        wait_until(lambda: http_ok(ready_url), timeout=240, what=name, proc=proc, log_path=log_path)
        yield {"proc": proc, "cold_start_s": time.perf_counter() - started}
    finally:
        stop_process(proc)


def floor(model_dir: Path, seconds: float) -> dict[int, float]:
    """Rows/s of WachttijdenModel.predict_columns in this process, for 1- and 32-row calls."""
    from models.wachttijden.model import WachttijdenModel
    from tests.serving.small_model import generated_rows

    model = WachttijdenModel.load(model_dir / "artifacts" / "model_files")
    result = {}
    for rows in (1, 32):
        columns = {k: list(v) for k, v in generated_rows(rows, seed=3).drop(columns="WACHTTIJD").items()}
        model.predict_columns(columns)
        result[rows] = median_rate(lambda columns=columns: model.predict_columns(columns), rows, seconds / 10)
    return result


def median_rate(call, units: int, window_s: float, windows: int = 5) -> float:
    """Units/s of `call()` (each call does `units`), the median of `windows` short windows: one long window
    swung 9.7k-16.4k rows/s between runs on this 2-core machine, which decided the floor ratio more than the
    server did."""
    rates = []
    for _ in range(windows):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < window_s:
            call()
            calls += 1
        rates.append(calls * units / (time.perf_counter() - start))
    return statistics.median(rates)


def body_for(rows: int) -> dict:
    from tests.serving.small_model import generated_rows

    return {"instances": generated_rows(rows, seed=rows).drop(columns="WACHTTIJD").to_dict(orient="records")}


def mirror_spec(path: Path, percentage: float) -> Path:
    path.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bench\nspec:\n  http:\n"
        "  - route:\n    - destination:\n        host: champion.models.svc.cluster.local\n"
        f"    mirror:\n      host: challenger.models.svc.cluster.local\n    mirrorPercentage:\n"
        f"      value: {percentage}\n",
        encoding="utf-8",
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-uri", type=Path, help="a saved pyfunc folder (default: train a small one)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring time per cell")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per cell")
    parser.add_argument("--time-limit-s", type=float, default=300, help="skip remaining cells after this")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--router-only", action="store_true", help="only the router mirror on/off cells")
    parser.add_argument("--nice-shadow", type=int, default=0, help="start the challenger with this niceness")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        return loadgen_main(args.loadgen)

    from tests.serving.servers import SERVING_PYTHON, model_sources_digest, small_model
    from tests.support.processes import free_port, tree_rss_mb

    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    cache = REPO / ".local" / "bench" / f"models-{model_sources_digest()}"
    model_dir = args.model_uri or small_model(cache, 1)
    challenger_dir = small_model(cache, 2)
    print(f"model: {model_dir}  (work dir {work})", flush=True)
    results: dict = {"cells": [], "floor": floor(model_dir, args.seconds), "cold_start_s": {}, "rss_mb": {}}

    def over_time() -> bool:
        return time.perf_counter() - began > args.time_limit_s

    def measure(kind: str, port: int, path: str, pid: int) -> None:
        for rows in (1, 32):
            for concurrency in (1, 16):
                if over_time():
                    print(f"time limit reached, skipping {kind} rows={rows} c={concurrency}", flush=True)
                    continue
                cell = run_load(port, path, body_for(rows), concurrency, args.seconds, args.max_requests)
                cell.update(server=kind, rows=rows, concurrency=concurrency)
                results["cells"].append(cell)
                print(
                    f"  {kind:8} rows={rows:<3} c={concurrency:<3} {cell['rows_s']:9.0f} rows/s "
                    f"p50 {cell['p50_ms']:6.2f} ms  errors {cell['errors']}",
                    flush=True,
                )
        results["rss_mb"][kind] = tree_rss_mb(pid)

    if args.router_only:
        results["router"] = router_cells(model_dir, challenger_dir, work, args)
        print_table(results)
        return

    port = free_port()
    server_cmd = [
        str(SERVING_PYTHON),
        "-m",
        "serving.model_server",
        "--model-uri",
        str(model_dir),
        "--http-port",
        str(port),
        "--prediction-log",
        str(work / "predictions.jsonl"),
    ]
    with service("sluice", server_cmd, f"http://127.0.0.1:{port}/v2/health/ready", work) as s:
        results["cold_start_s"]["sluice"] = s["cold_start_s"]
        measure("sluice", port, "/v1/models/wachttijden:predict", s["proc"].pid)

    port = free_port()
    mlflow_cmd = [
        str(SERVING_PYTHON.parent / "mlflow"),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
        "--env-manager",
        "local",
    ]
    with service("mlflow", mlflow_cmd, f"http://127.0.0.1:{port}/ping", work) as s:
        results["cold_start_s"]["mlflow"] = s["cold_start_s"]
        measure("mlflow", port, "/invocations", s["proc"].pid)

    if not over_time():
        results["router"] = router_cells(model_dir, challenger_dir, work, args)
    (args.json or work / "results.json").write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"\ntotal {time.perf_counter() - began:.0f} s; results in {args.json or work / 'results.json'}")


def router_cells(model_dir: Path, challenger_dir: Path, work: Path, args: argparse.Namespace) -> dict:
    """Champion latency through the router, 1-row requests at concurrency 1, mirroring 100% vs 0%."""
    from tests.serving.servers import SERVING_PYTHON, router_command
    from tests.support.processes import free_port

    out = {}
    with ExitStack() as stack:
        urls = {}
        for role, directory in (("champion", model_dir), ("challenger", challenger_dir)):
            port = free_port()
            # On one machine the shadow competes with the champion for the same cores; a lower
            # priority stands in for the separate nodes it gets in the cluster.
            nice = ["nice", "-n", str(args.nice_shadow)] if role == "challenger" and args.nice_shadow else []
            cmd = [
                *nice,
                str(SERVING_PYTHON),
                "-m",
                "serving.model_server",
                "--model-uri",
                str(directory),
                "--http-port",
                str(port),
                "--prediction-log",
                str(work / f"{role}.jsonl"),
            ]
            stack.enter_context(service(role, cmd, f"http://127.0.0.1:{port}/v2/health/ready", work))
            urls[role] = f"http://127.0.0.1:{port}"
        for label, percentage in (("off", 0.0), ("on", 100.0)):
            port = free_port()
            spec = mirror_spec(work / f"mirror-{label}.yaml", percentage)
            cmd = router_command([spec], urls, port, ["--prediction-log", str(work / f"router-{label}.jsonl")])
            with service(f"router-{label}", cmd, f"http://127.0.0.1:{port}/healthz", work):
                cell = run_load(port, "/v1/models/wachttijden:predict", body_for(1), 1, args.seconds, args.max_requests)
            out[label] = cell
            print(
                f"  router mirror {label:3}  p50 {cell['p50_ms']:6.2f} ms  p99 {cell['p99_ms']:6.2f} ms  "
                f"errors {cell['errors']}",
                flush=True,
            )
    return out


def print_table(results: dict) -> None:
    cells = {(c["server"], c["rows"], c["concurrency"]): c for c in results["cells"]}
    print("\n| server | rows/req | conc | req/s | rows/s | p50 ms | p99 ms | errors | vs mlflow |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (kind, rows, conc), c in sorted(cells.items()):
        ratio = ""
        if kind == "sluice" and ("mlflow", rows, conc) in cells:
            value = c["rows_s"] / cells[("mlflow", rows, conc)]["rows_s"]
            ratio = f"{value:.1f}x {'ok' if value >= GOALS['server_vs_mlflow'] else 'MISSED'}"
        print(
            f"| {kind} | {rows} | {conc} | {c['req_s']:.0f} | {c['rows_s']:.0f} | {c['p50_ms']:.2f} | "
            f"{c['p99_ms']:.2f} | {c['errors']} | {ratio} |"
        )
    fl = results["floor"]
    print(f"\nin-process floor (predict_columns): 1 row {fl[1]:.0f} rows/s, 32 rows {fl[32]:.0f} rows/s")
    print("cold start to ready: " + ", ".join(f"{k} {v:.1f} s" for k, v in results["cold_start_s"].items()))
    print("server RSS after load: " + ", ".join(f"{k} {v:.0f} MB" for k, v in results["rss_mb"].items()))
    checks = []
    if ("sluice", 32, 1) in cells:
        value = cells[("sluice", 32, 1)]["rows_s"] / fl[32]
        checks.append(("32-row c1 vs floor rows/s", value, value >= GOALS["batch32_vs_floor"], ">= 0.5"))
    if ("sluice", 1, 1) in cells and ("sluice", 1, 16) in cells:
        value = cells[("sluice", 1, 16)]["rows_s"] / cells[("sluice", 1, 1)]["rows_s"]
        checks.append(("1-row c16 vs c1 rows/s", value, value >= GOALS["c16_vs_c1"], ">= 3"))
    if "router" in results:
        value = results["router"]["on"]["p50_ms"] / results["router"]["off"]["p50_ms"]
        checks.append(("router p50 mirror on vs off", value, value <= GOALS["mirror_p50_overhead"], "<= 1.10"))
    print("\n| ratio | value | goal | |\n|---|---:|---|---|")
    for name, value, ok, goal in checks:
        print(f"| {name} | {value:.2f} | {goal} | {'ok' if ok else 'MISSED'} |")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
