"""Every mail that got 250 becomes a message: 8-bit Message-ID, In-Reply-To and References (RFC 6532)
are stored as proper text and thread, whether the bytes are UTF-8 or not."""

from __future__ import annotations

import json
import smtplib

from sqlalchemy import select

from mailgate.mail.parse import parse
from mailgate.storage.models import Message, Ticket
from tests.helpers import mailgate, wait_for

UTF8_ID = "<a3@b\xc3\xbccher.example>".encode("latin-1")  # the raw bytes of <a3@bücher.example>
LATIN1_ID = b"<a4@b\xfccher.example>"  # not UTF-8: one latin-1 byte


def raw_mail(headers: bytes, subject: bytes = b"B\xc3\xbccher bestellt") -> bytes:
    """A mail with raw 8-bit header bytes, as an SMTPUTF8 client (or a careless one) sends it."""
    return (
        b"From: Alice <alice@customer.example>\r\n"
        b"To: support@example.com\r\n"
        b"Subject: " + subject + b"\r\n"
        b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n" + headers + b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Hallo, wo bleibt mein Buch?\r\n"
    )


def test_a_utf8_message_id_is_read_as_utf8_text():
    mail = parse(raw_mail(b"Message-ID: " + UTF8_ID + b"\r\nReferences: <r1@x.example> " + UTF8_ID + b"\r\n"))
    assert mail.message_id == "<a3@bücher.example>"
    assert mail.references == ["<r1@x.example>", "<a3@bücher.example>"]
    assert mail.subject == "Bücher bestellt"


def test_an_invalid_8bit_message_id_becomes_text_with_a_replacement_character():
    mail = parse(raw_mail(b"Message-ID: " + LATIN1_ID + b"\r\n", subject=b"Caf\xe9"))
    assert mail.message_id == "<a4@b\ufffdcher.example>"
    for value in (mail.message_id, mail.subject, *mail.headers["message-id"]):
        value.encode("utf-8")  # what the database driver does with it: no lone surrogate is left


def test_8bit_ids_are_stored_and_a_reply_naming_them_threads_into_the_same_ticket(harness):
    harness.deliver(raw_mail(b"Message-ID: " + UTF8_ID + b"\r\n"))
    harness.deliver(raw_mail(b"Message-ID: " + LATIN1_ID + b"\r\n", subject=b"Second question"))
    harness.deliver(
        raw_mail(
            b"Message-ID: <reply1@customer.example>\r\nIn-Reply-To: " + UTF8_ID + b"\r\n", subject=b"no token here"
        )
    )
    harness.deliver(
        raw_mail(
            b"Message-ID: <reply2@customer.example>\r\nReferences: <x@y.example> " + LATIN1_ID + b"\r\n",
            subject=b"nor here",
        )
    )
    with harness.session() as s:
        threads = {t.number: sorted(m.message_id for m in t.messages) for t in s.scalars(select(Ticket))}
        stored = s.scalars(select(Message).where(Message.message_id == "<a3@bücher.example>")).one()
        assert stored.in_reply_to == ""
    assert threads == {
        1: ["<a3@bücher.example>", "<reply1@customer.example>"],
        2: ["<a4@b\ufffdcher.example>", "<reply2@customer.example>"],
    }


def test_over_smtputf8_a_utf8_message_id_is_stored_and_its_reply_threads(daemon, config_file):
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        client.ehlo()
        assert client.has_extn("smtputf8")
        refused = client.sendmail(
            "alice@customer.example",
            ["support@example.com"],
            raw_mail(b"Message-ID: " + UTF8_ID + b"\r\n"),
            mail_options=["SMTPUTF8"],
        )
        assert refused == {}
        refused = client.sendmail(
            "alice@customer.example",
            ["support@example.com"],
            raw_mail(b"Message-ID: <answer@customer.example>\r\nIn-Reply-To: " + UTF8_ID + b"\r\n", subject=b"Antwort"),
            mail_options=["SMTPUTF8"],
        )
        assert refused == {}

    def tickets():
        result = mailgate(config_file, "tickets", "list", "--format", "json")
        return {t["number"]: t["messages"] for t in json.loads(result.stdout)} if result.returncode == 0 else {}

    wait_for(lambda: tickets() == {1: 2}, timeout=60, message="the UTF-8 mail and its reply in ticket 1")
    show = json.loads(mailgate(config_file, "tickets", "show", "1", "--format", "json").stdout)
    assert show["subject"] == "Bücher bestellt"
