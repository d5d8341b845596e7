"""The systemd notify protocol, spoken to a real AF_UNIX datagram socket."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.ops import sdnotify


class Manager:
    """Stands where systemd would: a bound datagram socket that reads notifications."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(5)

    def receive(self) -> str:
        return self.sock.recv(4096).decode("utf-8")

    def nothing_received(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(5)
        return False


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield Manager(sock)


@pytest.fixture
def abstract_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    name = f"mailgate-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        yield Manager(sock)


class TestNotify:
    def test_without_notify_socket_nothing_is_sent(self) -> None:
        assert sdnotify.notify("READY=1") is False
        assert sdnotify.ready() is False

    def test_sends_to_a_socket_path(self, manager: Manager) -> None:
        assert sdnotify.notify("READY=1\nSTATUS=up") is True
        assert manager.receive() == "READY=1\nSTATUS=up"

    def test_sends_to_an_abstract_socket(self, abstract_manager: Manager) -> None:
        assert sdnotify.notify("READY=1") is True
        assert abstract_manager.receive() == "READY=1"

    def test_each_call_is_one_datagram(self, manager: Manager) -> None:
        sdnotify.ready()
        sdnotify.watchdog()
        assert [manager.receive(), manager.receive()] == ["READY=1", "WATCHDOG=1"]
        assert manager.nothing_received()

    def test_text_is_sent_as_utf8(self, manager: Manager) -> None:
        sdnotify.status("file d'attente: 3 mails reçus")
        assert manager.receive() == "STATUS=file d'attente: 3 mails reçus"

    def test_a_missing_socket_returns_false_and_logs(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
        with caplog.at_level(logging.WARNING, logger="mailgate.sdnotify"):
            assert sdnotify.ready() is False
        assert "could not notify systemd" in caplog.text

    def test_an_unsupported_address_returns_false_and_logs(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
        with caplog.at_level(logging.WARNING, logger="mailgate.sdnotify"):
            assert sdnotify.ready() is False
        assert "vsock:2:1234" in caplog.text

    def test_an_empty_notification_is_a_programming_error(self, manager: Manager) -> None:
        with pytest.raises(ValueError):
            sdnotify.notify("")


class TestStandardNotifications:
    def test_ready(self, manager: Manager) -> None:
        assert sdnotify.ready() is True
        assert manager.receive() == "READY=1"

    def test_stopping(self, manager: Manager) -> None:
        assert sdnotify.stopping() is True
        assert manager.receive() == "STOPPING=1"

    def test_watchdog(self, manager: Manager) -> None:
        assert sdnotify.watchdog() is True
        assert manager.receive() == "WATCHDOG=1"

    def test_status(self, manager: Manager) -> None:
        assert sdnotify.status("12 tickets open") is True
        assert manager.receive() == "STATUS=12 tickets open"

    def test_status_stays_one_line(self, manager: Manager) -> None:
        sdnotify.status("rules reloaded\nREADY=1")
        assert manager.receive() == "STATUS=rules reloaded READY=1"

    def test_reloading_carries_the_monotonic_time(self, manager: Manager) -> None:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert sdnotify.reloading() is True
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        first, second = manager.receive().split("\n")
        assert first == "RELOADING=1"
        key, value = second.split("=")
        assert key == "MONOTONIC_USEC"
        assert before <= int(value) <= after


class TestWatchdogInterval:
    def test_none_without_a_watchdog(self) -> None:
        assert sdnotify.watchdog_interval() is None

    def test_seconds_from_microseconds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        assert sdnotify.watchdog_interval() == 30.0

    def test_our_pid_applies(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("WATCHDOG_USEC", "1500000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        assert sdnotify.watchdog_interval() == 1.5

    def test_another_pid_means_the_watchdog_is_not_ours(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getppid()))
        assert sdnotify.watchdog_interval() is None

    @pytest.mark.parametrize("value", ["0", "-5", "thirty", "30s"])
    def test_unusable_values_mean_no_watchdog(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        monkeypatch.setenv("WATCHDOG_USEC", value)
        assert sdnotify.watchdog_interval() is None
