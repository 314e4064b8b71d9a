"""Start, wait for, inspect and stop detached local processes (model servers, router, platform) by state file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.deploy import supervise

STATE_SUFFIX = ".json"
EXIT_SUFFIX = ".exit"
# Runs the service as a child and records its exit status beside the state file, so a service
# that died is reported with its exit code long after the process that started it has gone.
# $0 is the exit file, "$@" the service's command. This shell is the group leader `stop` watches:
# its TERM trap keeps it alive until the service (which gets the group's SIGTERM itself, a caught
# signal being reset to its default on exec) has shut down gracefully.
_RECORD_EXIT = 'trap : TERM; "$@"; code=$?; echo "$code" > "$0.tmp" && mv "$0.tmp" "$0"; exit "$code"'
# A SIGTERM that reaches a service within moments of its start can be lost: it may land in the
# forked shell child between fork and exec. `stop` repeats it during that time.
STARTING_S = 2.0


class PortTaken(RuntimeError):
    """Another process holds the port a service is meant to listen on."""


class ServiceExited(RuntimeError):
    """A service stopped while we waited for it to become ready."""


@dataclass(frozen=True)
class Role:
    """What a service is for, as the code that starts it declares it."""

    name: str = ""
    # Lower stops first: a service that forwards to others (the mirroring router) stops before
    # them, so it never forwards to a stopped server.
    stop_order: int = 0
    # How its port is spoken to, for the URL `status` shows (the simulated cluster's API server: https).
    scheme: str = "http"


@dataclass(frozen=True)
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
    role: Role = Role()

    @property
    def url(self) -> str | None:
        """Loopback base URL when the service has a port."""
        return f"{self.role.scheme}://127.0.0.1:{self.port}" if self.port else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Service:
        """A service from its state file (files written before roles existed have none)."""
        return cls(**{**data, "role": Role(**data.get("role") or {})})


@dataclass(frozen=True)
class State:
    """One recorded service as `status` reports it."""

    service: Service
    running: bool
    exit_code: int | None
    # Restarts by the supervisor (tasks.deploy.supervise) of a supervised service, and why the last one.
    restarts: int = 0
    last_restart_reason: str = ""

    def describe(self) -> str:
        """One status line: running with pid and URL, or stopped with exit code and log."""
        s = self.service
        restarts = f" restarts={self.restarts} (last: {self.last_restart_reason})" if self.restarts else ""
        if self.running:
            extra = " ".join(f"{k}={v}" for k, v in s.meta.items())
            return f"{s.name:<22} running  pid={s.pid:<7} {s.url or ''} {extra}{restarts}".rstrip()
        code = "?" if self.exit_code is None else self.exit_code
        return f"{s.name:<22} stopped  exit={code} log={s.log}{restarts}"


def state_path(run_dir: Path, name: str) -> Path:
    """The state (pid) file of a service."""
    return run_dir / f"{name}{STATE_SUFFIX}"


def exit_path(run_dir: Path, name: str) -> Path:
    """Where a service's exit status is written when it ends by itself."""
    return run_dir / f"{name}{EXIT_SUFFIX}"


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgid, start_ticks) of a live pid, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[2]), int(rest[19])


def alive(pid: int) -> bool:
    """True while `pid` names a process that has not exited (a zombie counts as exited)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def is_running(service: Service) -> bool:
    """True while the recorded process lives (not a zombie) and is the one we started."""
    stat = _proc_stat(service.pid)
    if stat is None:
        return False
    state, pgid, start_ticks = stat
    return state not in ("Z", "X") and start_ticks == service.start_ticks and pgid == service.pid


def load(run_dir: Path, name: str) -> Service | None:
    """The recorded service, or None when there is no (readable) state file."""
    try:
        return Service.from_dict(json.loads(state_path(run_dir, name).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def running(run_dir: Path, name: str) -> Service | None:
    """The recorded service if it is running and ours; a stopped one stays recorded for `status`."""
    service = load(run_dir, name)
    return service if service is not None and is_running(service) else None


def exit_code(run_dir: Path, name: str) -> int | None:
    """The exit status a stopped service left, or None when unknown (killed, or never ended)."""
    try:
        return int(exit_path(run_dir, name).read_text().strip())
    except (FileNotFoundError, ValueError):
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
    role: Role = Role(),
) -> Service:
    """Start `cmd` detached (own session, output to <run_dir>/<name>.log) and record it.

    Its own session means it outlives the task process that started it, and that stopping it
    can signal its whole process group (workers it forks included).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if running(run_dir, name) is not None:
        raise RuntimeError(f"service {name!r} is already running; stop it first")
    exit_path(run_dir, name).unlink(missing_ok=True)
    supervise.state_file(run_dir, name).unlink(missing_ok=True)
    log_path = run_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(  # noqa: S603 - the command is built by our own code
            ["/bin/sh", "-c", _RECORD_EXIT, str(exit_path(run_dir, name)), *cmd],
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
        role=role,
    )
    tmp = state_path(run_dir, name).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(service), indent=2))
    tmp.replace(state_path(run_dir, name))  # atomic: a reader never sees half a file
    return service


def ensure(run_dir: Path, name: str, cmd: Sequence[str], **options: Any) -> tuple[Service, bool]:
    """(service, started): keep a running service with the same command and meta, else (re)start it.

    `options` are start()'s keyword arguments (port, env, cwd, meta, role).
    """
    current = running(run_dir, name)
    if current is not None and current.cmd == list(cmd) and current.meta == dict(options.get("meta") or {}):
        return current, False
    if current is not None:
        stop(run_dir, name)
    port = options.get("port")
    if port is not None and port_in_use(port):
        raise PortTaken(
            f"port {port} on 127.0.0.1 is taken by a process that is not the recorded {name!r} "
            "service; stop it or change the port setting"
        )
    return start(run_dir, name, cmd, **options), True


def http_status(url: str, timeout: float = 2) -> int | None:
    """The HTTP status `url` answers a GET with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback services
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def wait_until_ready(
    service: Service,
    url: str,
    *,
    timeout: float,
    ready: Callable[[int | None], bool] = lambda code: code == 200,
    poll_interval: float = 0.5,
) -> None:
    """Poll `url` until `ready(status)`; fail with the log's last lines if the service exits or times out."""
    wait_for(service, lambda: ready(http_status(url)), timeout=timeout, what=f"ready at {url}",
             poll_interval=poll_interval)


def wait_for(
    service: Service, check: Callable[[], bool], *, timeout: float, what: str, poll_interval: float = 0.5
) -> None:
    """Call `check` until it is true; raise ServiceExited or TimeoutError (with the log's last lines)
    if the service exits first or `timeout` passes. `what` names the awaited state in the timeout message."""
    deadline = time.monotonic() + timeout
    while True:
        if not is_running(service):
            _reap(service.pid)
            # The log and the exit file both live in the service's run directory.
            code = exit_code(Path(service.log).parent, service.name)
            raise ServiceExited(
                f"service {service.name!r} exited while starting (exit code {'?' if code is None else code}); "
                f"last lines of {service.log}:\n{log_tail(service.log)}"
            )
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"service {service.name!r} not {what} after {timeout:.0f}s; last lines of "
                f"{service.log}:\n{log_tail(service.log)}"
            )
        time.sleep(poll_interval)


def log_tail(path: str | Path, lines: int = 30) -> str:
    """The last lines of a log file, or "(no log)"."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def stop(run_dir: Path, name: str, timeout: float = 15) -> bool:
    """SIGTERM the service's process group, SIGKILL it after `timeout`, forget it; True if it was running."""
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
            if time.time() - service.started_at < STARTING_S:
                _signal_group(service.pid, signal.SIGTERM)
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
    exit_path(run_dir, name).unlink(missing_ok=True)
    supervise.state_file(run_dir, name).unlink(missing_ok=True)
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


def status(run_dir: Path) -> list[State]:
    """Every recorded service, running or stopped; nothing is forgotten until `stop`."""
    states = []
    for name in names(run_dir):
        service = load(run_dir, name)
        if service is not None:
            up = running(run_dir, name) is not None
            code = None if up else exit_code(run_dir, name)
            supervisor = supervise.read_state(run_dir, name) or supervise.SupervisorState()
            states.append(State(service, up, code, supervisor.restarts, supervisor.last_reason))
    return states


def stop_all(run_dir: Path, timeout: float = 15) -> list[str]:
    """Stop and forget every recorded service, in the order their roles ask for; the names that were running."""
    services = [s for s in (load(run_dir, n) for n in names(run_dir)) if s is not None]
    ordered = sorted(services, key=lambda s: (s.role.stop_order, s.name))
    return [s.name for s in ordered if stop(run_dir, s.name, timeout)]
