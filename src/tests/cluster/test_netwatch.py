"""The connection watch the cluster tests rely on must see a socket aimed outside 127.0.0.0/8.

A UDP socket's connect() only records the peer address in the kernel's table and sends nothing, so
the test can aim one at TEST-NET-1 (192.0.2.0/24, reserved for documentation) without any traffic.
"""

from __future__ import annotations

import os
import socket

from tests.support.netwatch import ConnectionWatch


def test_should_flag_a_socket_connected_outside_loopback():
    watch = ConnectionWatch(lambda: [os.getpid()])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))
        watch.sample()
    assert {(table, addr, port) for _, table, addr, port in watch.violations} == {("udp", "192.0.2.1", 9)}


def test_should_ignore_loopback_connections():
    watch = ConnectionWatch(lambda: [os.getpid()])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", 9))
        watch.sample()
    assert watch.violations == set()
