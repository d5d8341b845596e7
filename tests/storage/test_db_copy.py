"""`mailgate db copy --to URL`: an installation on SQLite moves to an empty PostgreSQL database whole, and a
daemon started on the copy (its own, empty data directory) carries on where the old one stopped."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, func, select

from mailgate.storage.models import Attachment, Event, Installation, Outbox, Ticket
from tests import fresh_database
from tests.helpers import mailgate, make_mail, wait_for, write_config

fresh_pg_url = fresh_database.fresh_pg_url  # a fixture: a database of its own

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
AGENTS = [{"address": "bob@example.com", "name": "Bob", "queues": ["support"]}]
SLA = {"queues": {"support": {"first_response": "4h", "resolution": "16h"}}}


def old_installation(tmp_path: Path, harness_factory) -> tuple[Path, list[bytes]]:
    """Three tickets on SQLite: messages, a PDF, events, pending outbox rows and SLA deadlines."""
    directory = tmp_path / "old"
    directory.mkdir()
    config = write_config(directory, f"sqlite:///{directory / 'data' / 'mailgate.sqlite3'}", agents=AGENTS, sla=SLA)
    harness = harness_factory(config)
    mails = [
        make_mail(subject="Invoice 1043 is wrong", attachments=[("invoice.pdf", "application/pdf", PDF)]),
        make_mail(subject="Cannot log in", sender="Carol <carol@customer.example>"),
        make_mail(subject="Where is my parcel?", sender="Dan <dan@customer.example>"),
    ]
    for raw in mails:
        harness.deliver(raw, mail_from="someone@customer.example")
    harness.runtime.close()
    return config, mails


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                model.__tablename__: conn.execute(select(func.count()).select_from(model)).scalar_one()
                for model in (Ticket, Attachment, Event, Outbox)
            }
    finally:
        engine.dispose()


def sla_and_key(url: str) -> tuple[list[object], list[tuple[str, str]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            due = list(
                conn.execute(
                    select(Ticket.number, Ticket.first_response_due_at, Ticket.resolution_due_at).order_by(
                        Ticket.number
                    )
                )
            )
            key = list(conn.execute(select(Installation.name, Installation.value).order_by(Installation.name)))
            return due, key
    finally:
        engine.dispose()


def show(config: Path, number: int) -> dict[str, object]:
    result = mailgate(config, "tickets", "show", str(number), "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_sqlite_installation_is_copied_whole_and_a_daemon_on_the_copy_carries_on(
    tmp_path, harness_factory, daemon_factory, fresh_pg_url
):
    old, mails = old_installation(tmp_path, harness_factory)
    old_url = f"sqlite:///{old.parent / 'data' / 'mailgate.sqlite3'}"

    copied = mailgate(old, "db", "copy", "--to", fresh_pg_url)
    assert copied.returncode == 0, copied.stderr.decode()
    assert f'database_url = "{fresh_pg_url}"' in copied.stdout.decode()
    assert 'backend = "database"' in copied.stdout.decode()
    assert b"referenced blobs verified" in copied.stderr and b"tickets" in copied.stderr  # the progress bars

    source_counts = counts(old_url)
    assert source_counts["outbox"] > 0 and source_counts["events"] > 0 and source_counts["attachments"] == 1
    assert counts(fresh_pg_url) == source_counts
    assert sla_and_key(fresh_pg_url) == sla_and_key(old_url), "SLA deadlines and the signing key come along"

    again = mailgate(old, "db", "copy", "--to", fresh_pg_url)
    assert again.returncode == 1 and b"already holds tables" in again.stderr, "a copy never merges"
    assert counts(fresh_pg_url) == source_counts

    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new = write_config(new_dir, fresh_pg_url, agents=AGENTS, sla=SLA)  # a data directory of its own, empty
    for number in (1, 2, 3):
        assert show(new, number) == show(old, number)
    attachment = mailgate(new, "tickets", "attachment", "1", "1")
    assert attachment.returncode == 0 and attachment.stdout == PDF, "served from the database, no file copied"

    daemon = daemon_factory(new)
    daemon.send(
        make_mail(subject="A new question", sender="Erin <erin@customer.example>"), mail_from="erin@customer.example"
    )
    daemon.send(
        make_mail(
            subject="Re: Cannot log in", sender="Carol <carol@customer.example>", in_reply_to=_message_id(mails[1])
        ),
        mail_from="carol@customer.example",
    )
    wait_for(lambda: len(show(new, 2)["messages"]) >= 2, timeout=60, message="the follow-up threaded to #2")
    wait_for(lambda: mailgate(new, "tickets", "show", "4").returncode == 0, timeout=60, message="ticket #4")
    fresh = show(new, 4)
    assert fresh["subject"] == "A new question", "ticket numbers continue after the copied ones"
    assert mailgate(new, "tickets", "show", "5").returncode == 1


def _message_id(raw: bytes) -> str:
    from email import message_from_bytes

    return str(message_from_bytes(raw)["Message-ID"])


def test_a_target_that_is_not_postgresql_is_refused_before_anything_is_read_or_written(tmp_path):
    config = write_config(tmp_path, "")
    target = tmp_path / "copy.sqlite3"
    refused = mailgate(config, "db", "copy", "--to", f"sqlite:///{target}")
    assert refused.returncode == 2
    assert b"into an empty PostgreSQL database; 'sqlite' is not one" in refused.stderr
    assert not target.exists() and not (tmp_path / "data" / "mailgate.sqlite3").exists()
