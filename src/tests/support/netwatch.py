"""Watch the sockets of a set of processes and record every connection to an address outside 127.0.0.0/8.

These machines forbid traffic to private and public ranges, and the simulated cluster must never dial a
ClusterIP or pod IP. The kernel's socket tables (/proc/net/tcp, tcp6, udp, udp6) list every socket with
its inode; /proc/<pid>/fd links name the inodes a process holds. Sampling both a few times a second
catches connection attempts, which to an unreachable address sit in SYN_SENT for seconds.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

TABLES = ("tcp", "tcp6", "udp", "udp6")
TCP_LISTEN = "0A"


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    # IPv6 is four 32-bit words, each in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return ipaddress.IPv6Address(words)


def is_loopback(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_unspecified


def remote_endpoints() -> dict[str, tuple[str, str, int]]:
    """inode -> (table, remote address, remote port) for every socket with a remote end."""
    found = {}
    for table in TABLES:
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if table.startswith("tcp") and state == TCP_LISTEN:
                continue
            addr_hex, port_hex = remote.split(":")
            addr = _address(addr_hex)
            if not is_loopback(addr):
                found[inode] = (table, str(addr), int(port_hex, 16))
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def descendants(roots: Iterable[int]) -> set[int]:
    """The given pids and all their descendants (by /proc/<pid>/stat's parent field)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    seen, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


class ConnectionWatch:
    """Sample in a thread until stopped; `violations` holds what was seen outside 127.0.0.0/8."""

    def __init__(self, roots: Callable[[], Iterable[int]], interval: float = 0.2) -> None:
        self._roots = roots
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.violations: set[tuple[int, str, str, int]] = set()
        self.samples = 0

    def sample(self) -> None:
        remote = remote_endpoints()
        if remote:
            for pid in descendants(self._roots()):
                for inode in socket_inodes(pid) & remote.keys():
                    self.violations.add((pid, *remote[inode]))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
