"""Test helpers: build mails, configs, runtimes and real daemon processes."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parent.parent


def make_mail(
    subject: str = "Printer on fire",
    body: str = "Hello,\nmy printer is on fire.\n",
    sender: str = "Alice <alice@customer.example>",
    to: str = "support@example.com",
    msgid: str | None = "auto",
    in_reply_to: str | None = None,
    references: str | None = None,
    cc: str | None = None,
    headers: dict[str, str] | None = None,
    html: str | None = None,
    attachments: Iterable[tuple[str, str, bytes]] = (),
) -> bytes:
    """A well-formed mail as bytes (CRLF), the way a mail client would send it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(__import__("datetime").datetime.now(__import__("datetime").UTC))
    if msgid == "auto":
        msgid = make_msgid(domain="customer.example")
    if msgid:
        msg["Message-ID"] = msgid
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


# Every test daemon maps one unpacked language model instead of unpacking its own (about 1 s of CPU each).
TEST_CACHE = Path(tempfile.gettempdir()) / f"mailgate-test-cache-{os.getuid()}"


def write_config(directory: Path, db_url: str, **sections: dict[str, Any]) -> Path:
    """A config.toml in ``directory``: the embedded defaults on a free port, plus ``sections``."""
    data: dict[str, Any] = {
        "mailgate": {
            "hostname": "support.example.com",
            "data_dir": "data",
            "cache_dir": str(TEST_CACHE),
            "database_url": db_url,
            "log_level": "info",
        },
        "smtp": {"listen": "127.0.0.1:0", "max_message_size": "25MB"},
        "support": {
            "name": "Example Support",
            "address": "support@example.com",
            "accept": ["support@example.com", "help@example.com"],
        },
        "spool": {"max_attempts": 3, "batch_size": 50},
        "outbound": {"smarthost": "", "starttls": False},  # the test smarthosts are loopback ones, in clear text
    }
    for name, values in sections.items():
        if isinstance(values, list):
            data[name] = values
        else:
            data.setdefault(name, {}).update(values)
    path = directory / "config.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def send(
    port: int, raw: bytes, mail_from: str = "alice@customer.example", rcpt: Iterable[str] = ("support@example.com",)
) -> dict[str, Any]:
    """Send over SMTP; a recipient may be a header's value (``"Support" <support+…>``), as a client copies it."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail(mail_from, [address_of(r) for r in rcpt], raw)


def address_of(value: Any) -> str:
    """The bare address of a header value or an address (a Reply-To carries the support name)."""
    return parseaddr(str(value))[1] or str(value)


def mailgate(
    config: Path, *args: str, input: bytes | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the real `mailgate` CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mailgate", "--config", str(config), *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


class Daemon:
    """A real `mailgate serve` process, its log in a file, its SMTP port read from the log."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 30) -> Daemon:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "--config", str(self.config), "serve"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"msg=listening addr=[\d.]+:(\d+)", self.log())
            if match:
                self.port = int(match.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise TimeoutError(f"daemon did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send(self, raw: bytes, **kwargs: Any) -> dict[str, Any]:
        return send(self.port, raw, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.05, message: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy (real processes need real time; bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def stored_message_ids(config: Path) -> list[str]:
    """The Message-IDs of every stored message, read straight from the database the config names."""
    from sqlalchemy import create_engine, select

    from mailgate.config import load_config
    from mailgate.storage.models import Message

    engine = create_engine(load_config(config).db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(Message.message_id)).scalars())
    finally:
        engine.dispose()


def drop_schema(admin: Any, schema: str, attempts: int = 10) -> None:
    """Drop a test's schema. A daemon the test stopped a moment ago may have a backend still finishing
    its last statement (PostgreSQL notices a gone client only after it): the DROP may then meet its
    locks, or be the side a deadlock aborts. It is retried a bounded number of times."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    for attempt in range(attempts):
        try:
            with admin.connect() as conn:
                conn.execute(text("SET lock_timeout = '5s'"))
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            return
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def spool_mails(harness: Any, *mails: bytes) -> None:
    """Put mails in the harness's spool as the SMTP door would, without draining it: one batch for the worker."""
    from mailgate.spool.disk import SpoolMeta

    for raw in mails:
        meta = SpoolMeta(id="", source="smtp", mail_from="alice@customer.example", rcpt_tos=["support@example.com"])
        harness.runtime.spool.put(raw, meta)
