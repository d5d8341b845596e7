"""Two daemons on two machines: two data directories that share no file, one PostgreSQL database.

What one machine received, the other serves (attachments, the raw mail in an export); an address signed by
one is proven at the other, which relays the answer with its file; either's notification carries the
customer's file; each says who it is in its logs. The key is the installation's: a daemon with
another key file refuses to start.
"""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from mailgate.storage.models import Event, Message
from tests import fresh_database
from tests.helpers import address_of, mailgate, make_mail, wait_for, write_config
from tests.pipeline.test_agents_e2e import Inbox, reply_to, text

fresh_pg_url = fresh_database.fresh_pg_url  # a fixture: a database of its own

PDF = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"
ANSWER_PDF = b"%PDF-1.4\n% the reset guide\n" + bytes(reversed(range(256))) * 16 + b"\n%%EOF\n"
FORM_PDF = b"%PDF-1.4\n% a signed form\n" + bytes(range(128, 256)) * 32 + b"\n%%EOF\n"
AGENTS = [{"address": "bob@example.com", "name": "Bob"}]
QUEUES = [{"name": "support", "agents": ["bob@example.com"]}]


def machine(tmp_path: Path, name: str, url: str, secret_file: str = "") -> Path:
    """One machine's config: its own directory and data directory, the shared database."""
    directory = tmp_path / name
    directory.mkdir()
    main = {"node": name, **({"secret_file": secret_file} if secret_file else {})}
    return write_config(directory, url, agents=AGENTS, queues=QUEUES, mailgate=main)


def files(message) -> dict[str, bytes]:
    return {
        part.get_filename(): part.get_payload(decode=True)
        for part in message.walk()
        if part.get_filename() and not part.is_multipart()
    }


def events(url: str, kind: str) -> list[Event]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(Event).where(Event.kind == kind)))
    finally:
        engine.dispose()


def test_what_machine_a_received_machine_b_serves_and_proves(tmp_path, daemon_factory, fresh_pg_url):
    a_config, b_config = machine(tmp_path, "mx-a", fresh_pg_url), machine(tmp_path, "mx-b", fresh_pg_url)
    a, b = daemon_factory(a_config), daemon_factory(b_config)
    bob_at_a, alice_from_b = Inbox(a_config, "bob@example.com"), Inbox(b_config, "alice@customer.example")

    raw = make_mail(
        subject="Invoice 1043 is wrong",
        body="Hello,\nthe invoice attached is wrong.\n",
        attachments=[("invoice-1043.pdf", "application/pdf", PDF)],
    )
    a.send(raw)
    notification = bob_at_a.wait("A's notification", "the invoice attached is wrong")
    assert files(notification) == {"invoice-1043.pdf": PDF}, "the notification carries the customer's file"
    assert address_of(notification["Reply-To"]).startswith("support+1.")

    served = mailgate(b_config, "tickets", "attachment", "1", "1")
    assert served.returncode == 0, served.stderr.decode()
    assert served.stdout == PDF, "B serves the bytes A stored"
    mbox = tmp_path / "ticket-1.mbox"
    assert mailgate(b_config, "tickets", "export", "1", "--mbox", str(mbox)).returncode == 0
    exported = [m.as_bytes() for m in mailbox.mbox(str(mbox))]
    assert any(raw.replace(b"\r\n", b"\n").strip() in m.replace(b"\r\n", b"\n") for m in exported), (
        "B's export keeps the raw mail A received, byte for byte"
    )

    answer = make_mail(
        subject="Re: " + notification["Subject"],
        sender="Bob <bob@example.com>",
        to=notification["Reply-To"],
        in_reply_to=notification["Message-ID"],
        body="Here is the corrected invoice and the reset guide.\n",
        attachments=[("reset-guide.pdf", "application/pdf", ANSWER_PDF)],
    )
    b.send(answer, mail_from="bob@example.com", rcpt=[notification["Reply-To"]])
    relayed = alice_from_b.wait("B's relay of the answer", "the corrected invoice")
    assert files(relayed) == {"reset-guide.pdf": ANSWER_PDF}, "relayed with its attachment"
    assert "Here is the corrected invoice" in text(relayed)
    assert not events(fresh_pg_url, "mail.unproven"), "the address A signed is proven at B"

    follow_up = make_mail(
        subject="Re: " + relayed["Subject"],
        to=relayed["Reply-To"],
        in_reply_to=relayed["Message-ID"],
        body="Thanks, here is the signed form.\n",
        attachments=[("signed-form.pdf", "application/pdf", FORM_PDF)],
    )
    b.send(follow_up, rcpt=[relayed["Reply-To"]])
    notified = Inbox(b_config, "bob@example.com").wait("B's notification of the reply", "here is the signed form")
    assert files(notified) == {"signed-form.pdf": FORM_PDF}, "B's notification carries the customer's file too"

    engine = create_engine(fresh_pg_url)
    with engine.connect() as conn:
        directions = list(conn.execute(select(Message.direction).order_by(Message.id)).scalars())
    engine.dispose()
    assert directions == ["in", "out", "in"], "the customer's mail at A, the answer B relayed, the reply at B"
    assert not list((tmp_path / "mx-b" / "data").rglob("blobs/??/??/*")), "no blob on B's disk"
    assert "node=mx-a" in a.log() and "node=mx-b" in b.log()


def test_a_daemon_signing_with_another_key_refuses_to_start(tmp_path, daemon_factory, fresh_pg_url):
    first = machine(tmp_path, "mx-a", fresh_pg_url)
    daemon_factory(first)  # creates the installation's key in the database
    (tmp_path / "other.key").write_text("AOTHERKEYOFTHIRTYTWOBYTESATLEAST\n")
    stranger = machine(tmp_path, "mx-c", fresh_pg_url, secret_file="../other.key")
    refused = mailgate(stranger, "tickets", "list")
    assert refused.returncode == 78
    assert b"is not the key of this installation" in refused.stderr
    assert b"other.key" in refused.stderr
    with pytest.raises(RuntimeError, match="is not the key of this installation"):
        daemon_factory(stranger)  # `serve` stops at start, before it takes any mail


def test_a_secret_file_holding_the_installations_key_is_accepted(tmp_path, daemon_factory, fresh_pg_url):
    from mailgate.storage.models import Installation

    daemon_factory(machine(tmp_path, "mx-a", fresh_pg_url))
    engine = create_engine(fresh_pg_url)
    with engine.connect() as conn:
        key = conn.execute(select(Installation.value).where(Installation.name == "signing_key")).scalar_one()
    engine.dispose()
    (tmp_path / "shared.key").write_text(key + "\n")
    with_file = machine(tmp_path, "mx-d", fresh_pg_url, secret_file="../shared.key")
    listed = mailgate(with_file, "tickets", "list")
    assert listed.returncode == 0, listed.stderr.decode()


def test_an_agents_files_command_at_b_mails_the_file_a_stored(tmp_path, daemon_factory, fresh_pg_url):
    a_config, b_config = machine(tmp_path, "mx-a", fresh_pg_url), machine(tmp_path, "mx-b", fresh_pg_url)
    a, b = daemon_factory(a_config), daemon_factory(b_config)
    a.send(
        make_mail(
            subject="Scan attached",
            body="Hello,\nthe scan is attached.\n",
            attachments=[("scan.pdf", "application/pdf", PDF)],
        )
    )
    notification = Inbox(a_config, "bob@example.com").wait("A's notification", "the scan is attached")
    b.send(
        reply_to(notification, "#files\n", "Bob <bob@example.com>", quote=False),
        mail_from="bob@example.com",
        rcpt=[notification["Reply-To"]],
    )
    bob_at_b = Inbox(b_config, "bob@example.com")
    sent = wait_for(
        lambda: [m for m in bob_at_b.mails() if "Files" in m["Subject"]],
        timeout=120,
        message="B's mail of the ticket's files",
    )
    assert files(sent[0]) == {"scan.pdf": PDF}, "B read from the database the bytes A received"
