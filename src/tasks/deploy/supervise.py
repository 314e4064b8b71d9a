"""Keep one local service running: restart it when it crashes, with backoff and a cap, and say why.

    python -m tasks.deploy.supervise --name model [--max-restarts 5] [--window-s 600] -- CMD ...

The local model servers and the router run under this small supervisor (written here rather than
taking supervisord or circus, whose daemons and config files would be a second process manager
beside the project's own state files). It runs in the service's process group, so stopping the
service (SIGTERM to the group) stops both; a child that exits on its own is restarted after 1, 2,
4, ... seconds (at most `--max-backoff-s`). More than `--max-restarts` restarts within `--window-s`
seconds means the crash is not passing: it gives up and exits with the child's code, and the
service shows as stopped. Exit codes in `--no-restart-on` (default 2 = usage error, 78 = a
configuration problem such as an unreachable tracking server) are never retried: restarting
cannot fix them. Every decision is one line in the service's log, which is also the child's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

NO_RESTART_EXIT_CODES = (2, 78)


@dataclass
class SupervisorState:
    """What `status` shows about a supervised service (written next to its state file)."""

    child_pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    last_reason: str = ""
    gave_up: bool = False


def state_file(run_dir: Path, name: str) -> Path:
    """Where the supervisor of service `name` records its child's pid and restarts.

    Not `*.json`: that suffix marks the services' own state files in the same folder.
    """
    return run_dir / f"{name}.supervisor"


def supervised(python: str, name: str, run_dir: Path, cmd: Sequence[str]) -> list[str]:
    """`cmd` run under this supervisor by `python` (any interpreter with src/ on its path)."""
    return [python, "-m", "tasks.deploy.supervise", "--name", name, "--run-dir", str(run_dir), "--", *cmd]


def read_state(run_dir: Path, name: str) -> SupervisorState | None:
    """The supervisor's record of `name`, or None when it is not supervised (or not yet started)."""
    try:
        return SupervisorState(**json.loads(state_file(run_dir, name).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def describe_exit(code: int) -> str:
    """'exit code 1' or 'killed by SIGKILL' for a Popen return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Runs the command, restarts it on crashes, stops it when asked."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = SupervisorState()
        self.child: subprocess.Popen | None = None
        self.stopping = False
        self.starts: deque[float] = deque()

    def say(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        print(f"{stamp} [supervisor {self.args.name}] {message}", flush=True)

    def save(self) -> None:
        if self.args.run_dir is None:
            return
        path = state_file(self.args.run_dir, self.args.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.state)))
        tmp.replace(path)

    def on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            # Usually the child got the same signal from the group already; this covers a
            # signal sent to the supervisor's pid alone.
            self.child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        first_backoff = min(1.0, self.args.max_backoff_s)
        backoff = first_backoff
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(self.args.command)  # noqa: S603 - our own service command
            self.state.child_pid = self.child.pid
            self.save()
            code = self.child.wait()
            self.state.last_exit = code
            if self.stopping:
                self.save()
                return 0
            reason = describe_exit(code)
            if code in self.args.no_restart_on:
                self.give_up(f"exited with {reason}, which a restart cannot fix; not restarting")
                return code
            now = time.monotonic()
            self.starts.append(now)
            while self.starts and now - self.starts[0] > self.args.window_s:
                self.starts.popleft()
            if len(self.starts) > self.args.max_restarts:
                self.give_up(
                    f"exited with {reason}; {len(self.starts)} crashes within {self.args.window_s:.0f}s "
                    f"(more than --max-restarts {self.args.max_restarts}): giving up"
                )
                return code if code > 0 else 1
            # A child that ran for a while crashed for a new reason: start the backoff afresh.
            if now - started > self.args.window_s:
                backoff = first_backoff
            self.state.restarts += 1
            self.state.last_reason = reason
            self.save()
            self.say(f"exited with {reason}; restart {self.state.restarts} in {backoff:.0f}s")
            if self.sleep_unless_stopped(backoff):
                return 0
            backoff = min(backoff * 2, self.args.max_backoff_s)

    def sleep_unless_stopped(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.stopping:
                return True
            time.sleep(0.1)
        return self.stopping

    def give_up(self, message: str) -> None:
        self.state.gave_up = True
        self.state.last_reason = message
        self.save()
        self.say(message)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tasks.deploy.supervise", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="service name (for the log and the state file)")
    parser.add_argument("--run-dir", type=Path, default=None, help="where to write <name>.supervisor.json")
    parser.add_argument("--max-restarts", type=int, default=5)
    parser.add_argument("--window-s", type=float, default=600.0)
    parser.add_argument("--max-backoff-s", type=float, default=30.0)
    parser.add_argument(
        "--no-restart-on", type=lambda s: tuple(int(c) for c in s.split(",") if c), default=NO_RESTART_EXIT_CODES
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("give the command to supervise after --")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return Supervisor(parse_args(sys.argv[1:] if argv is None else argv)).run()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
