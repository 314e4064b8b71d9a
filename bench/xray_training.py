"""xray training benchmark: training images/s per architecture, and the tf.data input pipeline's throughput
against the model's own step time (the input must not be the bottleneck).

    .venv/bin/python bench/xray_training.py [--images 600] [--batch-size 32] [--seconds 6] [--device cpu|gpu]

Generates a synthetic image set and prepares it (the prepare_images stage: TFRecord shards in a local lake),
then per architecture, at its default width, in this one process:
- model alone: `fit` on one batch held in memory and repeated (no input work), images/s;
- input alone: the training input pipeline (models.xray.records.dataset: parallel reads and parsing,
  shuffle, prefetch) iterated without a model, images/s;
- end to end: `fit` on that pipeline, as train_images trains, images/s.
After a warm-up, model alone and end to end alternate three times (medians; load from elsewhere falls on
both alike), about --seconds each. Prints one table; every ratio is measured side
by side in this run. input/model well above 1 means the model waits for nothing; end to end/model near 1
means the pipeline costs the training (almost) nothing. Wall-time rates move with whatever else runs on
the machine; the CPU milliseconds per image this process spent (model alone, end to end) do not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# The input must feed the model this many times faster than it trains, on the same cores.
GOAL_INPUT_VS_MODEL = 3.0
# Model alone and end to end alternate this many times (medians).
ROUNDS = 3


def choose_device(device: str) -> str:
    """Hide the GPUs for --device cpu; for --device gpu require one. The TensorFlow device name to use."""
    import tensorflow as tf

    if device == "cpu":
        tf.config.set_visible_devices([], "GPU")
        return "/CPU:0"
    if not tf.config.list_physical_devices("GPU"):
        raise SystemExit("--device gpu: TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty)")
    return "/GPU:0"


def prepared_set(images: int, work: Path) -> tuple[list[str], int]:
    """Local paths of the train split's shards of a freshly generated and prepared set, and its image count."""
    from tasks.data.datalake import open_datalake
    from tasks.data.generate_images import write_scans
    from tasks.data.prepare_images import download_split, prepare_images

    lake = open_datalake(str(work / "lake"))
    write_scans(lake, count=images, seed=42, day=date(2024, 5, 1))
    manifest = prepare_images(lake, "run=bench", run_id="bench")
    return download_split(lake, "run=bench", "train", work / "train"), manifest["splits"]["train"]["total"]


def timed_fit(model, data, steps: int, cpu: list[float] | None = None) -> float:
    """Wall seconds of `steps` training steps; appends this process's CPU seconds to `cpu` when given."""
    start, start_cpu = time.perf_counter(), time.process_time()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start


def measure(name: str, shards: list[str], batch_size: int, seconds: float) -> dict:
    import tensorflow as tf

    from models.xray.architectures import build
    from models.xray.records import dataset

    pipeline = dataset(shards, batch_size=batch_size, shuffle=True, repeat=True)
    x, y = next(iter(pipeline))
    in_memory = tf.data.Dataset.from_tensors((x, y)).repeat()
    model = build(name)
    timed_fit(model, in_memory, 2)  # trace the train step
    probe = timed_fit(model, in_memory, 3) / 3
    steps = max(5, int(seconds / ROUNDS / probe))
    # Warm both (oneDNN primitives, the pipeline's readers and shuffle buffer) for about a round, then
    # alternate model alone and end to end, so that load from elsewhere falls on both alike.
    timed_fit(model, in_memory, steps)
    timed_fit(model, pipeline, steps)
    model_s, fit_s, model_cpu, fit_cpu = [], [], [], []
    for _ in range(ROUNDS):
        model_s.append(timed_fit(model, in_memory, steps, model_cpu))
        fit_s.append(timed_fit(model, pipeline, steps, fit_cpu))
    rounds = {"model_img_s": [steps * batch_size / t for t in model_s],
              "fit_img_s": [steps * batch_size / t for t in fit_s]}
    model_s, fit_s = statistics.median(model_s), statistics.median(fit_s)
    batches = iter(pipeline)
    for _ in range(2):
        next(batches)
    start = time.perf_counter()
    for _ in range(steps * ROUNDS):
        next(batches)
    input_s = (time.perf_counter() - start) / ROUNDS
    images = steps * batch_size
    return {
        "architecture": name, "params": model.count_params(), "steps": steps,
        "model_img_s": images / model_s, "input_img_s": images / input_s, "fit_img_s": images / fit_s,
        "rounds": rounds,
        # CPU seconds this process spent per training image; other jobs' load does not enter them.
        "model_cpu_ms": 1000 * statistics.median(model_cpu) / images,
        "fit_cpu_ms": 1000 * statistics.median(fit_cpu) / images,
    }


def print_table(rows: list[dict], meta: dict) -> None:
    print(f"\n{meta['train_images']} training images ({meta['images']} generated), batch {meta['batch_size']}, "
          f"{meta['device']}, {meta['cpus']} CPUs, load average {meta['load']:.1f} at the start; about "
          f"{meta['seconds']:.0f} s per cell\n")
    print("| architecture | params | model alone img/s | input alone img/s | end to end img/s | input / model "
          "| end to end / model | per round | CPU ms/img model alone | end to end |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        ratio = r["input_img_s"] / r["model_img_s"]
        verdict = "ok" if ratio >= GOAL_INPUT_VS_MODEL else "INPUT-BOUND"
        per_round = " ".join(f"{f / m:.2f}" for m, f in zip(*r["rounds"].values(), strict=True))
        print(f"| {r['architecture']} | {r['params']:,} | {r['model_img_s']:.0f} | {r['input_img_s']:.0f} | "
              f"{r['fit_img_s']:.0f} | {ratio:.1f}x {verdict} | {r['fit_img_s'] / r['model_img_s']:.2f} | "
              f"{per_round} | {r['model_cpu_ms']:.1f} | {r['fit_cpu_ms']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600, help="synthetic images to generate and prepare")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0, help="about this long per measurement")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--architectures", nargs="*", help="default: all")
    parser.add_argument("--time-limit-s", type=float, default=300, help="skip the remaining architectures after this")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import keras

    from models.xray.architectures import ARCHITECTURES

    started, load = time.perf_counter(), os.getloadavg()[0]
    device = choose_device(args.device)
    keras.utils.set_random_seed(42)
    rows = []
    with tempfile.TemporaryDirectory(prefix="xray-bench-") as tmp:
        shards, train_images = prepared_set(args.images, Path(tmp))
        import tensorflow as tf

        with tf.device(device):
            for name in args.architectures or list(ARCHITECTURES):
                if time.perf_counter() - started > args.time_limit_s:
                    print(f"skipped {name}: over --time-limit-s {args.time_limit_s:.0f}", file=sys.stderr)
                    continue
                rows.append(measure(name, shards, args.batch_size, args.seconds))
    meta = {"images": args.images, "train_images": train_images, "batch_size": args.batch_size,
            "device": device, "cpus": os.cpu_count(), "seconds": args.seconds, "load": load}
    print_table(rows, meta)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
