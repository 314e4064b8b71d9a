"""Run a program that can only listen on every interface inside its own network namespace, reachable
from the host's loopback through relays (a script: it is started as a process).

    python scripts/simcluster/netns.py --front-port HOST_PORT --inner-port PORT [--upstream PORT ...] -- COMMAND...

Used for KServe's InferenceGraph router (the serving tests) and KServe's controller manager
(`./scripts/sim-cluster.sh kserve`). The router binds `:8080`, a constant; the manager's webhook
server binds `:<webhook-port>`: on the host either would listen on every interface. A new network
namespace has only its own loopback, so there they listen on nothing reachable from outside, on
ports nothing else uses. Path-named Unix sockets belong to the file system, not to a network
namespace, so they carry the traffic across:

    host 127.0.0.1:HOST_PORT  -> front.sock   -> namespace 127.0.0.1:INNER_PORT   (requests to the program)
    namespace 127.0.0.1:PORT  -> up-PORT.sock -> host 127.0.0.1:PORT              (the program's own calls)

Each upstream keeps its port number, so the same URLs (http://127.0.0.1:PORT/...) work for a program
inside and outside the namespace; a port that is not relayed refuses connections inside as it does
outside, and no address outside 127.0.0.0/8 is even routable there. This process stays in the host
namespace; it re-runs itself with --inside in a child that unshares the network namespace and starts
COMMAND there.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # keep the other direction open: HTTP answers after the request ends
    except OSError:
        writer.close()


def _relay(connect: Connect) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            far_reader, far_writer = await connect()
        except OSError:
            writer.close()  # the far side is down: the caller sees its connection closed
            return
        await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))
        far_writer.close()
        writer.close()

    return handle


def _enter_network_namespace() -> None:
    """Unshare the network namespace (with a user namespace when not root) and bring its loopback up."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWNET | CLONE_NEWUSER
    if libc.unshare(flags) != 0:
        error = ctypes.get_errno()
        sys.exit(f"netns: cannot create a network namespace: {os.strerror(error)} (errno {error})")
    if uid != 0:
        # Map ourselves to root in the new user namespace, which owns the new network namespace.
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        current = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", current | IFF_UP))


async def _serve_until_done(servers: list[asyncio.AbstractServer], child: asyncio.subprocess.Process) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    waiting = asyncio.ensure_future(child.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.close()
    if child.returncode is None:
        return -1
    return child.returncode


async def _inside(args: argparse.Namespace) -> int:
    sockets = Path(args.socket_dir)
    servers = [
        await asyncio.start_unix_server(
            _relay(lambda: asyncio.open_connection("127.0.0.1", args.inner_port)), path=str(sockets / "front.sock")
        )
    ]
    for port in args.upstream:
        path = str(sockets / f"up-{port}.sock")
        servers.append(
            await asyncio.start_server(
                _relay(lambda path=path: asyncio.open_unix_connection(path)), "127.0.0.1", port
            )
        )
    program = await asyncio.create_subprocess_exec(*args.command)
    code = await _serve_until_done(servers, program)
    if program.returncode is None:
        # KServe's router sleeps 30 s on SIGTERM so that Kubernetes can drain it; nothing drains here.
        program.kill()
        await program.wait()
        return 0
    print(f"netns: {args.command[0]} exited with {code}", file=sys.stderr)
    return code or 1


def _socket_parent() -> str:
    """$TMPDIR unless its socket paths would pass the 107 bytes a Unix socket path may have; then /tmp."""
    parent = tempfile.gettempdir()
    return parent if len(parent) <= 64 else "/tmp"  # noqa: S108 - a private mkdtemp folder inside it


async def _outside(args: argparse.Namespace) -> int:
    sockets = Path(tempfile.mkdtemp(prefix="netns-", dir=_socket_parent()))
    try:
        servers = [
            await asyncio.start_server(
                _relay(lambda: asyncio.open_unix_connection(str(sockets / "front.sock"))),
                "127.0.0.1",
                args.front_port,
            )
        ]
        for port in args.upstream:
            servers.append(
                await asyncio.start_unix_server(
                    _relay(lambda port=port: asyncio.open_connection("127.0.0.1", port)),
                    path=str(sockets / f"up-{port}.sock"),
                )
            )
        inside = [sys.executable, __file__, "--inside", "--socket-dir", str(sockets),
                  "--inner-port", str(args.inner_port)]
        inside += [item for port in args.upstream for item in ("--upstream", str(port))]
        child = await asyncio.create_subprocess_exec(*inside, "--", *args.command)
        code = await _serve_until_done(servers, child)
        if child.returncode is None:
            child.terminate()
            return await child.wait()
        return code or 1
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front-port", type=int, default=0, help="host loopback port the program answers on")
    parser.add_argument("--inner-port", type=int, required=True, help="the port the program listens on inside")
    parser.add_argument("--upstream", type=int, action="append", default=[], help="host port the program may call")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--socket-dir", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    if args.inside:
        _enter_network_namespace()  # before asyncio starts: a user namespace needs a single thread
        sys.exit(asyncio.run(_inside(args)))
    sys.exit(asyncio.run(_outside(args)))


if __name__ == "__main__":
    main()
