"""Benchmark serving the xray image model: requests/s, images/s and p50/p99 through the model server for one image
and for batches per request, at concurrency 1 and 16, against the in-process model call on the same images (ratio).

Run from the repository root with the pipelines environment:

    .venv/bin/python bench/xray_serving.py [--architecture small_cnn] [--seconds 4] [--time-limit-s 240]

The model is one of the use case's own architectures (models.xray.architectures, untrained: speed does not
depend on the weights), saved with its save_pyfunc_model. Requests are V2 with base64 PNG scans of the
synthetic generator (128-512 px, as training sees them). The server binds 127.0.0.1; it is stopped by its
process group. The load generator is bench/serving.py's (a separate process, keep-alive HTTP/1.1).
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# bench/serving.py by path: its module name would clash with the `serving` package under src/.
_spec = importlib.util.spec_from_file_location("bench_serving", REPO / "bench" / "serving.py")
house = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(house)

BATCHES = (1, 8)  # images per request
CONCURRENCY = (1, 16)


def saved_model(architecture: str, folder: Path) -> Path:
    """The architecture saved as the served pyfunc, once per architecture and model code."""
    from models.xray.architectures import build
    from models.xray.model import save_pyfunc_model
    from tests.serving.servers import saved_once
    from tests.serving.xray_model import recipe_digest

    def save(model_dir: Path, work_dir: Path) -> None:
        import keras

        keras.utils.set_random_seed(0)
        save_pyfunc_model(build(architecture), model_dir, work_dir=work_dir)

    return saved_once(folder / f"{architecture}-{recipe_digest()}" / "model", save)


def scans(count: int) -> list[bytes]:
    from models.xray.generate import GOOD, generate_scans

    return [s.data for s in generate_scans(count + 10, seed=7) if s.kind == GOOD][:count]


def in_process(model_dir: Path, files: list[bytes], seconds: float) -> dict[int, float]:
    """Images/s of XrayModel.predict_bytes (decode, resize, model call: the server's work without HTTP) per batch
    size, the median of five windows."""
    from models.xray.model import XrayModel

    model = XrayModel.load(model_dir / "artifacts" / "model_files")
    result = {}
    for batch in BATCHES:
        chunk = files[:batch]
        model.predict_bytes(chunk)
        result[batch] = house.median_rate(lambda chunk=chunk: model.predict_bytes(chunk), batch, seconds / 5)
    return result


def v2_body(files: list[bytes]) -> dict:
    data = [base64.b64encode(f).decode("ascii") for f in files]
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="small_cnn", help="small_cnn, mobilenet or resnet")
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring time per cell")
    parser.add_argument("--max-requests", type=int, default=5_000, help="per cell")
    parser.add_argument("--time-limit-s", type=float, default=240, help="skip remaining cells after this")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from tests.serving.servers import SERVING_PYTHON
    from tests.support.processes import free_port, tree_rss_mb

    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sluice-xray-bench-"))
    model_dir = saved_model(args.architecture, REPO / ".local" / "bench" / "xray-models")
    files = scans(max(BATCHES))
    print(f"model: {args.architecture} at {model_dir}; images {[len(f) for f in files]} bytes", flush=True)
    results = {"architecture": args.architecture, "cells": [], "in_process": in_process(model_dir, files, args.seconds)}
    port = free_port()
    cmd = [str(SERVING_PYTHON), "-m", "serving.model_server", "--model-uri", str(model_dir), "--http-port", str(port),
           "--prediction-log", str(work / "predictions.jsonl")]
    with house.service("xray", cmd, f"http://127.0.0.1:{port}/v2/health/ready", work) as server:
        results["cold_start_s"] = server["cold_start_s"]
        for batch in BATCHES:
            for concurrency in CONCURRENCY:
                if time.perf_counter() - began > args.time_limit_s:
                    print(f"time limit reached, skipping batch={batch} c={concurrency}", flush=True)
                    continue
                cell = house.run_load(port, "/v2/models/xray/infer", v2_body(files[:batch]), concurrency,
                                      args.seconds, args.max_requests)
                cell.update(batch=batch, concurrency=concurrency, images_s=cell["req_s"] * batch)
                results["cells"].append(cell)
                print(f"  batch={batch:<2} c={concurrency:<3} {cell['req_s']:7.1f} req/s {cell['images_s']:7.1f} "
                      f"images/s  p50 {cell['p50_ms']:7.2f} ms  p99 {cell['p99_ms']:7.2f} ms  errors {cell['errors']}",
                      flush=True)
        results["rss_mb"] = tree_rss_mb(server["proc"].pid)
    (args.json or work / "results.json").write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"\ntotal {time.perf_counter() - began:.0f} s; results in {args.json or work / 'results.json'}")


def print_table(results: dict) -> None:
    floor = results["in_process"]
    print(f"\n{results['architecture']}: in-process predict_bytes "
          + ", ".join(f"batch {b}: {v:.1f} images/s" for b, v in floor.items()))
    print("\n| images/req | conc | req/s | images/s | p50 ms | p99 ms | errors | vs in-process (same batch) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in results["cells"]:
        ratio = c["images_s"] / floor[c["batch"]]
        print(f"| {c['batch']} | {c['concurrency']} | {c['req_s']:.1f} | {c['images_s']:.1f} | {c['p50_ms']:.1f} | "
              f"{c['p99_ms']:.1f} | {c['errors']} | {ratio:.2f}x |")
    print(f"\ncold start to ready {results['cold_start_s']:.1f} s; server RSS after load {results['rss_mb']:.0f} MB")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
