"""Start, inspect and stop detached local services (model servers, router) by state file."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_SUFFIX = ".json"


@dataclass
class Service:
    """What we know about one service we started: enough to find, check and stop it again."""

    name: str
    pid: int
    # Kernel start time of the process (clock ticks since boot, /proc/<pid>/stat field 22): with
    # the pid it identifies the process uniquely, so a recycled pid is never mistaken for ours.
    start_ticks: int
    cmd: list[str]
    port: int | None
    log: str
    started_at: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str | None:
        """Loopback base URL when the service has a port."""
        return f"http://127.0.0.1:{self.port}" if self.port else None


def state_path(run_dir: Path, name: str) -> Path:
    """The state (pid) file of a service."""
    return run_dir / f"{name}{STATE_SUFFIX}"


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgid, start_ticks) of a live pid, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[2]), int(rest[19])


def is_running(service: Service) -> bool:
    """True while the recorded process lives (not a zombie) and is the one we started."""
    stat = _proc_stat(service.pid)
    if stat is None:
        return False
    state, pgid, start_ticks = stat
    return state not in ("Z", "X") and start_ticks == service.start_ticks and pgid == service.pid


def load(run_dir: Path, name: str) -> Service | None:
    """The recorded service, or None when there is no (readable) state file."""
    path = state_path(run_dir, name)
    try:
        return Service(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def status(run_dir: Path, name: str) -> Service | None:
    """The service if it is running and ours; a stale state file is removed."""
    service = load(run_dir, name)
    if service is None:
        return None
    if is_running(service):
        return service
    state_path(run_dir, name).unlink(missing_ok=True)
    return None


def port_in_use(port: int) -> bool:
    """True when something already holds `port` on 127.0.0.1 (a listener on 0.0.0.0 included)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def start(
    run_dir: Path,
    name: str,
    cmd: Sequence[str],
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Service:
    """Start `cmd` detached (own session, output to <run_dir>/<name>.log) and record it.

    Its own session means it outlives the task process that started it, and that stopping it
    can signal its whole process group (workers it forks included).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if status(run_dir, name) is not None:
        raise RuntimeError(f"service {name!r} is already running; stop it first")
    log_path = run_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(  # noqa: S603 - the command is built by our own code
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    stat = _proc_stat(proc.pid)
    service = Service(
        name=name,
        pid=proc.pid,
        start_ticks=stat[2] if stat else 0,
        cmd=list(cmd),
        port=port,
        log=str(log_path),
        started_at=time.time(),
        meta=dict(meta or {}),
    )
    tmp = state_path(run_dir, name).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(service), indent=2))
    tmp.replace(state_path(run_dir, name))  # atomic: a reader never sees half a file
    return service


def stop(run_dir: Path, name: str, timeout: float = 15) -> bool:
    """SIGTERM the service's process group, SIGKILL it after `timeout`; True if it was running."""
    service = load(run_dir, name)
    if service is None:
        return False
    was_running = is_running(service)
    if was_running:
        _signal_group(service.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_running(service) and time.monotonic() < deadline:
            _reap(service.pid)
            time.sleep(0.1)
        if is_running(service):
            _signal_group(service.pid, signal.SIGKILL)
            while is_running(service):
                _reap(service.pid)
                time.sleep(0.05)
        # Children that outlived the leader keep its group id: they belong to the service too.
        # Only done when the leader was ours: a stale pid may name someone else's group now.
        _signal_group(service.pid, signal.SIGKILL)
        _reap(service.pid)
    state_path(run_dir, name).unlink(missing_ok=True)
    return was_running


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(pid: int) -> None:
    # When this process started the service (tests, `deploy` run in one process) it is our
    # child and would linger as a zombie until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def names(run_dir: Path) -> list[str]:
    """Names of all services with a state file in run_dir."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name[: -len(STATE_SUFFIX)] for p in run_dir.glob(f"*{STATE_SUFFIX}"))


def stop_all(run_dir: Path, timeout: float = 15) -> list[str]:
    """Stop every recorded service (router first, so it never forwards to a stopped server)."""
    ordered = sorted(names(run_dir), key=lambda n: (n != "router", n))
    return [n for n in ordered if stop(run_dir, n, timeout)]


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.deploy.processes", description=__doc__)
    parser.add_argument("command", choices=("status", "stop-all", "stop"))
    parser.add_argument("names", nargs="*", help="service names for 'stop' (default: all)")
    parser.add_argument("--run-dir", type=Path, default=Path(".local/run"))
    parser.add_argument("--json", action="store_true", help="status as JSON")
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir
    if args.command == "status":
        report = {}
        for name in names(run_dir):
            service = status(run_dir, name)
            report[name] = (
                {"running": True, "pid": service.pid, "url": service.url, "log": service.log, **service.meta}
                if service
                else {"running": False}
            )
        if args.json:
            print(json.dumps(report, indent=2))
        elif not report:
            print(f"no local services recorded in {run_dir}")
        else:
            for name, info in report.items():
                if info["running"]:
                    hidden = ("running", "pid", "url", "log")
                    extra = " ".join(f"{k}={v}" for k, v in info.items() if k not in hidden)
                    print(f"{name:<12} running  pid={info['pid']} {info['url'] or ''} {extra}".rstrip())
                else:
                    print(f"{name:<12} stopped (stale state file removed)")
        return 0
    targets = args.names if args.command == "stop" and args.names else None
    stopped = [n for n in targets if stop(run_dir, n)] if targets else stop_all(run_dir)
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
