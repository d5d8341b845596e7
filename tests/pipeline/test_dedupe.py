"""A Message-ID is not a key a stranger can take: a known Message-ID is a duplicate only for the same mail,
the same author and the same content (the digest of mailgate.mail.sameness)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from mailgate.mail.sameness import content_digest, dedupe_key
from mailgate.storage.models import Event, Message, Outbox
from tests.helpers import mailgate, make_mail, wait_for
from tests.outbound_helpers import sent_mails

MID = "<2026-12-01.printer@customer.example>"


def customer_mail(**kwargs) -> bytes:
    return (
        "From: Alice <alice@customer.example>\r\n"
        "To: support@example.com\r\n"
        "Subject: Printer on fire\r\n"
        f"Message-ID: {MID}\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Hello,\r\nmy printer is on fire.\r\n"
    ).encode()


def stranger_mail() -> bytes:
    """Mallory saw Alice's Message-ID coming and sends first with it."""
    return (
        "From: Mallory <mallory@evil.test>\r\n"
        "To: support@example.com\r\n"
        "Subject: Nothing to see\r\n"
        f"Message-ID: {MID}\r\n"
        "Date: Tue, 01 Dec 2026 09:59:00 +0000\r\n"
        "\r\n"
        "Taken.\r\n"
    ).encode()


def with_trace(raw: bytes, *lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode() + raw


def count(h, model=Message) -> int:
    with h.session() as s:
        return s.scalar(select(func.count(model.id)))


def test_the_digest_leaves_out_trace_headers_and_line_endings():
    raw = customer_mail()
    delivered = with_trace(
        raw,
        "Return-Path: <alice@customer.example>",
        "Delivered-To: help@example.com",
        "X-Original-To: help@example.com",
        "Received: from mx.customer.example by mx.example.com; Tue, 01 Dec 2026 10:00:01 +0000",
        "Authentication-Results: mx.example.com; dkim=pass header.d=customer.example",
        "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.com; s=a; b=abc",
        "DKIM-Signature: v=1; d=customer.example; s=s1; b=xyz",
        "Received-SPF: pass",
        "X-Spam-Score: 0.1",
    )
    assert content_digest(delivered) == content_digest(raw)
    assert content_digest(raw.replace(b"\r\n", b"\n")) == content_digest(raw)  # the pipe door's LF


def test_the_digest_changes_with_the_body_the_subject_and_the_author():
    raw = customer_mail()
    assert content_digest(raw.replace(b"on fire", b"on ice")) != content_digest(raw)
    assert content_digest(raw.replace(b"Subject: Printer", b"Subject: Scanner")) != content_digest(raw)
    assert content_digest(raw.replace(b"alice@", b"mallory@")) != content_digest(raw)


def test_one_mail_delivered_to_two_of_our_addresses_is_one_message(harness):
    raw = customer_mail()
    harness.deliver(with_trace(raw, "Delivered-To: support@example.com", "Received: by mx; 1"))
    harness.deliver(
        with_trace(raw, "Delivered-To: help@example.com", "Received: by mx; 2"), rcpt_tos=("help@example.com",)
    )
    assert count(harness) == 1
    with harness.session() as s:
        assert s.scalar(select(Message.content_sha256)) == content_digest(raw)


def test_the_same_mail_fetched_twice_over_imap_is_one_message(harness):
    harness.deliver(customer_mail(), source="imap")
    harness.deliver(customer_mail(), source="imap")
    assert count(harness) == 1


def test_a_strangers_mail_with_the_customers_message_id_does_not_take_it(harness):
    harness.deliver(stranger_mail(), mail_from="mallory@evil.test")
    harness.deliver(customer_mail())
    with harness.session() as s:
        messages = s.scalars(select(Message).order_by(Message.id)).all()
        assert [(m.from_addr, m.ticket.number) for m in messages] == [
            ("mallory@evil.test", 1),
            ("alice@customer.example", 2),
        ]
        [event] = s.scalars(select(Event).where(Event.kind == "message.id_collision")).all()
        assert event.message_pk == messages[1].id
        assert event.detail["message_id"] == MID and event.detail["first_message_pk"] == messages[0].id
        acks = s.scalars(select(Outbox).where(Outbox.kind == "acknowledgment")).all()
        assert "alice@customer.example" in [a for row in acks for a in row.rcpt_tos]


def test_threading_by_a_taken_message_id_keeps_to_the_first_mail(harness):
    harness.deliver(stranger_mail(), mail_from="mallory@evil.test")
    harness.deliver(customer_mail())
    harness.deliver(
        make_mail(subject="about that", sender="carol@third.example", in_reply_to=MID, msgid="<r1@third.example>"),
        mail_from="carol@third.example",
    )
    with harness.session() as s:
        reply = s.scalar(select(Message).where(Message.message_id == "<r1@third.example>"))
        assert reply.ticket.number == 1


def test_the_same_message_id_and_body_from_another_author_is_stored(harness):
    harness.deliver(customer_mail())
    harness.deliver(
        customer_mail().replace(b"alice@customer.example", b"mallory@evil.test"), mail_from="mallory@evil.test"
    )
    assert count(harness) == 2


def test_a_message_stored_before_digests_still_catches_its_copy(harness):
    harness.deliver(customer_mail())
    with harness.session() as s:  # what an earlier version stored: the Message-ID alone as the key
        message = s.scalar(select(Message))
        message.dedupe_key, message.content_sha256 = dedupe_key(MID, ""), ""
        s.commit()
    harness.deliver(customer_mail())
    assert count(harness) == 1


def test_over_a_real_daemon_the_customers_mail_is_stored_and_acknowledged(daemon, config_file):
    daemon.send(stranger_mail(), mail_from="mallory@evil.test")
    daemon.send(customer_mail())

    def tickets():
        return json.loads(mailgate(config_file, "tickets", "list", "--format", "json").stdout)

    wait_for(lambda: len(tickets()) == 2, timeout=60, message="both mails stored")
    assert sorted(t["customer"] for t in tickets()) == ["alice@customer.example", "mallory@evil.test"]
    sent = config_file.parent / "data"
    wait_for(
        lambda: any("alice@customer.example" in str(m["To"]) for m in sent_mails(sent)),
        timeout=60,
        message="Alice's acknowledgment in the sent maildir",
    )
