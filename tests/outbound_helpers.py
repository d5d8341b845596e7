"""Test helpers for outgoing mail: a real SMTP sink, and readers for the sent maildir and the outbox."""

from __future__ import annotations

import contextlib
import email
import email.policy
import mailbox
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, select, text

from mailgate.outbound import sender
from mailgate.storage.models import Event, Outbox
from tests.helpers import drop_schema


class SinkHandler:
    """Answers each DATA from a script of replies ("451 …", "550 …"), then 250; keeps what it accepted."""

    def __init__(self) -> None:
        self.script: deque[str] = deque()
        self.default = "250 2.0.0 OK"
        self.accepted: list[tuple[str, list[str], bytes]] = []
        self.attempts = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.attempts += 1
            reply = self.script.popleft() if self.script else self.default
            if reply.startswith("250"):
                self.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return reply

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [parse(raw) for _, _, raw in self.accepted]


class _PortZeroController(Controller):
    """aiosmtpd's Controller on port 0: learn the port the kernel chose before the readiness probe."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class Sink:
    """A real SMTP server on 127.0.0.1 (port 0 unless told), run in a thread."""

    def __init__(self, port: int = 0, **smtp: Any) -> None:
        self.handler = SinkHandler()
        self.controller = _PortZeroController(self.handler, hostname="127.0.0.1", port=port, **smtp)

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def free_port() -> int:
    """A port nobody listens on right now (for a server that must be named before it starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def sent_mails(data_dir: Path) -> list[EmailMessage]:
    """What the sender wrote to the ``sent`` maildir (in no reliable order within one second)."""
    directory = data_dir / "sent"
    if not directory.exists():
        return []
    box = mailbox.Maildir(str(directory), create=False)
    items = sorted(box.iterkeys())
    return [parse(box.get_bytes(key)) for key in items]


def flush(harness: Any) -> int:
    """One delivery sweep, as the daemon's sender runs it."""
    runtime = harness.runtime
    return sender.deliver_due(runtime.sessions, runtime.services)


def outbox_rows(harness: Any, **where: Any) -> list[Outbox]:
    with harness.session() as session:
        query = select(Outbox).order_by(Outbox.id)
        for name, value in where.items():
            query = query.where(getattr(Outbox, name) == value)
        return list(session.scalars(query))


def events(harness: Any, kind: str) -> list[Event]:
    with harness.session() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    return part.get_content() if part is not None else ""


@contextlib.contextmanager
def other_database(tmp_path: Path, name: str) -> Iterator[str]:
    """Another empty database (a second helpdesk), on the same backend as the tests' own."""
    pg = os.environ.get("MAILGATE_TEST_DATABASE_URL", "")
    if not pg:
        yield f"sqlite:///{tmp_path / name / 'data' / 'mailgate.sqlite3'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
    finally:
        drop_schema(admin, schema)
        admin.dispose()
