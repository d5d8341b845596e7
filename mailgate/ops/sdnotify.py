"""The systemd notify protocol, without a dependency.

Under ``Type=notify`` systemd waits for ``READY=1`` before it considers the
daemon started (so ``systemctl start`` returns only once SMTP is listening),
and with ``WatchdogSec=`` it restarts a daemon that stops sending
``WATCHDOG=1``. The protocol is one datagram of ``KEY=value`` lines to the
AF_UNIX socket named in ``$NOTIFY_SOCKET`` (a path, or an abstract socket
written with a leading ``@``), which is all this module does.

Outside systemd (tests, a terminal) ``$NOTIFY_SOCKET`` is unset and every call
is a cheap no-op returning False, so callers never need to check first.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("mailgate.sdnotify")


def notify(state: str) -> bool:
    """Send ``state`` (newline-separated ``KEY=value`` lines) to systemd.

    Returns True when the datagram was sent, False when not running under a
    notifying service manager or when sending failed (logged: a lost
    notification must not take the daemon down).
    """
    if not state:
        raise ValueError("empty notification")
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        target = "\0" + address[1:]
    elif address.startswith("/"):
        target = address
    else:
        log.warning("NOTIFY_SOCKET=%r is not a path or an abstract socket; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), target)
    except OSError as error:
        log.warning("could not notify systemd at %s: %s", address, error)
        return False
    return True


def ready() -> bool:
    """Startup is complete: listeners are bound and the spool is recovered."""
    return notify("READY=1")


def reloading() -> bool:
    """A reload (SIGHUP: rules and templates) has begun; follow with :func:`ready`.

    ``MONOTONIC_USEC`` is required by systemd's ``Type=notify-reload`` and
    harmless otherwise.
    """
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def stopping() -> bool:
    """Shutdown has begun, so systemd does not mistake the drain for a hang."""
    return notify("STOPPING=1")


def watchdog() -> bool:
    """Proof of life; send at least every :func:`watchdog_interval` / 2 seconds."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """A one-line status shown by ``systemctl status`` (newlines become spaces)."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds, or None when no watchdog applies to us.

    Read from ``$WATCHDOG_USEC``; when ``$WATCHDOG_PID`` is set it must be our
    pid (otherwise the variables were inherited from a parent that is the one
    being watched). Ping at half this interval, as systemd recommends.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID", "").strip()
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number of microseconds; watchdog off", usec)
        return None
    if value <= 0:
        return None
    return value / 1_000_000
