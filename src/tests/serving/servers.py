"""Start the model server and the router as real processes from the serving environment, for tests and the benchmark."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import REPO_ROOT, free_port, http_ok, start_process, stop_process, wait_until

SERVING_PYTHON = REPO_ROOT / ".venv-serving" / "bin" / "python"
SERVING_ENV = {"PYTHONPATH": str(REPO_ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
# A cold model server imports TensorFlow and MLflow: ~15 s alone, far more on a busy 2-core machine.
SERVER_START_TIMEOUT = 180


def model_sources_digest() -> str:
    """Changes whenever the model code or the test model recipe changes, so cached models are never stale."""
    digest = hashlib.sha256()
    # The use case's code is in src/models/wachttijden since the re-layout (src/tasks/model.py only re-exports it).
    model_code = REPO_ROOT / "src" / "models" / "wachttijden"
    for path in (model_code / "model.py", model_code / "schema.py", Path(__file__).with_name("small_model.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def saved_once(path: Path, save: Callable[[Path, Path], object]) -> Path:
    """The MLflow model folder `path`, made by `save(model_dir, work_dir)` unless it is there already.

    Saved beside, then renamed: a session that is interrupted (or runs at the same time) never leaves
    a half-written model that a later session would trust.
    """
    if not (path / "MLmodel").is_file():
        staging = path.parent / f"staging-{os.getpid()}"
        save(staging / "model", staging / "work")
        try:
            (staging / "model").rename(path)
        except OSError:
            if not (path / "MLmodel").is_file():
                raise
    return path


def small_model(root: Path, seed: int) -> Path:
    """A saved small pyfunc model under `root`, trained once and reused while its sources are unchanged."""
    from tests.serving.small_model import save_small_model

    return saved_once(root / f"seed-{seed}" / "model",
                      lambda model_dir, work_dir: save_small_model(model_dir, seed=seed, work_dir=work_dir))


@dataclass
class Service:
    proc: subprocess.Popen
    url: str
    log_path: Path


def _start_model_server(
    model_uri: Path | str, log_dir: Path, name: str, prediction_log: Path | None, extra_args: Sequence[str]
) -> Service:
    port = free_port()
    cmd = [
        str(SERVING_PYTHON),
        "-m",
        "serving.model_server",
        "--model-uri",
        str(model_uri),
        "--http-port",
        str(port),
    ]
    if prediction_log is not None:
        cmd += ["--prediction-log", str(prediction_log)]
    log_path = log_dir / f"{name}.log"
    proc = start_process([*cmd, *extra_args], log_path=log_path, env=SERVING_ENV, cwd=REPO_ROOT)
    return Service(proc, f"http://127.0.0.1:{port}", log_path)


def _wait_ready(service: Service, name: str) -> None:
    wait_until(
        lambda: http_ok(f"{service.url}/v2/health/ready"),
        timeout=SERVER_START_TIMEOUT,
        what=f"model server {name}",
        proc=service.proc,
        log_path=service.log_path,
    )


@contextmanager
def model_servers(specs: Mapping[str, dict], log_dir: Path) -> Iterator[dict[str, Service]]:
    """Several model servers started together (their cold starts overlap), keyed like `specs`.

    Each spec holds `model_uri` and optionally `prediction_log` and `extra_args`.
    """
    services: dict[str, Service] = {}
    try:
        for name, spec in specs.items():
            services[name] = _start_model_server(
                spec["model_uri"], log_dir, name, spec.get("prediction_log"), spec.get("extra_args", ())
            )
        for name, service in services.items():
            _wait_ready(service, name)
        yield services
    finally:
        for service in services.values():
            stop_process(service.proc)


@contextmanager
def model_server(
    model_uri: Path | str,
    log_dir: Path,
    *,
    name: str = "server",
    prediction_log: Path | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[Service]:
    """A running `serving.model_server` on a free loopback port, stopped by process group on exit."""
    spec = {"model_uri": model_uri, "prediction_log": prediction_log, "extra_args": extra_args}
    with model_servers({name: spec}, log_dir) as services:
        yield services[name]


def router_command(
    specs: Sequence[Path], resolve: dict[str, str], port: int, extra: Sequence[str] = ()
) -> list[str]:
    cmd = [str(SERVING_PYTHON), "-m", "serving.router", "--port", str(port)]
    for spec in specs:
        cmd += ["--spec", str(spec)]
    for name, url in resolve.items():
        cmd += ["--resolve", f"{name}={url}"]
    return [*cmd, *extra]


@contextmanager
def router(
    specs: Sequence[Path],
    resolve: dict[str, str],
    log_dir: Path,
    *,
    name: str = "router",
    extra_args: Sequence[str] = (),
) -> Iterator[Service]:
    """A running `serving.router` on a free loopback port, stopped by process group on exit."""
    port = free_port()
    log_path = log_dir / f"{name}.log"
    proc = start_process(router_command(specs, resolve, port, extra_args), log_path=log_path, env=SERVING_ENV)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/healthz"), timeout=60, what=name, proc=proc, log_path=log_path)
        yield Service(proc, url, log_path)
    finally:
        stop_process(proc)


def mirror_virtual_service(percentage: float, champion: str = "champion", challenger: str = "challenger") -> str:
    """An Istio VirtualService routing to `champion` and mirroring `percentage` % to `challenger` (YAML)."""
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: wachttijden
spec:
  hosts: [wachttijden.models.svc.cluster.local]
  http:
  - route:
    - destination:
        host: {champion}.models.svc.cluster.local
    mirror:
      host: {challenger}.models.svc.cluster.local
    mirrorPercentage:
      value: {percentage}
"""
