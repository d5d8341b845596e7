"""A real `mailgate serve` tells systemd over $NOTIFY_SOCKET: READY once listening, WATCHDOG, STOPPING."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import make_mail


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """What systemd listens on: an AF_UNIX datagram socket (abstract, so no path length limit)."""
    name = f"mailgate-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(30)
    yield sock, "@" + name
    sock.close()


def receive_until(sock: socket.socket, wanted: str) -> list[str]:
    """Every notification up to and including the first that carries ``wanted`` (bounded by the timeout)."""
    seen = []
    for _ in range(1000):
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message.splitlines():
            return seen
    raise AssertionError(f"{wanted} never came; got {seen}")


def test_the_daemon_reports_ready_only_once_it_accepts_mail_then_stopping(daemon_factory, config_file, notify_socket):
    sock, address = notify_socket
    daemon = daemon_factory(config_file, env={"NOTIFY_SOCKET": address})
    assert receive_until(sock, "READY=1")[-1] == "READY=1"
    assert daemon.send(make_mail()) == {}  # READY meant it: the SMTP door takes mail
    assert daemon.stop() == 0
    assert "STOPPING=1" in receive_until(sock, "STOPPING=1")[-1].splitlines()


def test_the_daemon_pings_the_watchdog_when_systemd_asks(daemon_factory, config_file, notify_socket):
    sock, address = notify_socket
    daemon_factory(config_file, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
    seen = receive_until(sock, "WATCHDOG=1")
    assert "READY=1" in seen
    assert receive_until(sock, "WATCHDOG=1")  # and again: it keeps proving it is alive
