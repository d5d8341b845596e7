"""The pipeline, in process: threading, dedupe, storage of text, HTML and attachments."""

from __future__ import annotations

import base64
import hashlib

from sqlalchemy import func, select

from mailgate.reports.views import show_ticket
from mailgate.storage.models import Attachment, Event, Message, Ticket
from tests.helpers import make_mail


def tickets(h):
    with h.session() as s:
        return {t.number: len(t.messages) for t in s.scalars(select(Ticket)).all()}


def test_a_new_mail_opens_ticket_1_with_its_customer(harness):
    harness.deliver(make_mail(subject="Printer on fire"))
    with harness.session() as s:
        data = show_ticket(s, 1)
    assert data["subject"] == "Printer on fire"
    assert data["customer"] == "alice@customer.example"
    assert data["status"] == "new"
    assert data["queue"] == "support"
    assert [m["direction"] for m in data["messages"]] == ["in"]
    assert "my printer is on fire" in data["messages"][0]["text"]


def test_a_reply_with_the_subject_token_joins_the_ticket_through_any_prefix(harness):
    harness.deliver(make_mail(subject="Printer on fire"))
    for prefix in ("Re:", "RE: Fwd:", "AW:", "SV:", "Ответ:", "Re[2]:"):
        harness.deliver(make_mail(subject=f"{prefix} Printer on fire [#1]"))
    assert tickets(harness) == {1: 7}


def test_a_reply_with_only_in_reply_to_joins_the_ticket(harness):
    harness.deliver(make_mail(subject="Question", msgid="<q1@customer.example>"))
    harness.deliver(make_mail(subject="something else", in_reply_to="<q1@customer.example>"))
    harness.deliver(make_mail(subject="third", references="<unknown@x> <q1@customer.example>"))
    assert tickets(harness) == {1: 3}


def test_an_unknown_token_or_reference_opens_a_new_ticket(harness):
    harness.deliver(make_mail(subject="First"))
    harness.deliver(make_mail(subject="Re: hello [#99]", in_reply_to="<nobody@nowhere>"))
    assert tickets(harness) == {1: 1, 2: 1}


def test_the_same_message_twice_is_stored_once(harness):
    raw = make_mail(msgid="<dup@customer.example>")
    harness.deliver(raw)
    harness.deliver(raw)
    with harness.session() as s:
        assert s.scalar(select(func.count(Message.id))) == 1


def test_a_different_mail_with_a_known_message_id_is_not_a_duplicate(harness):
    harness.deliver(make_mail(msgid="<dup@customer.example>"))
    harness.deliver(make_mail(msgid="<dup@customer.example>", body="a different body, same Message-ID"))
    with harness.session() as s:
        assert s.scalar(select(func.count(Message.id))) == 2


def test_without_message_id_the_same_bytes_are_stored_once(harness):
    raw = make_mail(msgid=None)
    harness.deliver(raw)
    harness.deliver(raw)
    harness.deliver(make_mail(msgid=None, body="other bytes"))
    with harness.session() as s:
        assert s.scalar(select(func.count(Message.id))) == 2


def test_one_mail_to_several_of_our_addresses_is_one_ticket(harness):
    raw = make_mail(to="support@example.com", cc="help@example.com, bob@customer.example")
    harness.deliver(raw, rcpt_tos=("support@example.com", "help@example.com"))
    assert tickets(harness) == {1: 1}


def test_people_in_cc_of_the_first_mail_become_watchers(harness):
    from mailgate.storage.models import Watcher

    harness.deliver(make_mail(cc="help@example.com, Bob <bob@customer.example>"))
    with harness.session() as s:
        assert [w.address for w in s.scalars(select(Watcher))] == ["bob@customer.example"]


def test_html_is_sanitized_and_attachments_are_stored_by_hash(harness):
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    exe = b"MZ\x90\x00" + b"\x00" * 200
    raw = make_mail(
        html="<p>Hi <script>alert(1)</script><a href='javascript:x()'>x</a></p>",
        attachments=[("../../etc/passwd", "image/png", png), ("photo.png", "image/png", exe)],
    )
    harness.deliver(raw)
    with harness.session() as s:
        message = s.scalar(select(Message))
        assert "<script>" not in message.html and "javascript:" not in message.html
        atts = s.scalars(select(Attachment).order_by(Attachment.id)).all()
        assert [a.filename for a in atts] == ["passwd", "photo.png"]
        assert atts[0].sniffed_type == "image/png"
        assert atts[1].content_type == "image/png" and atts[1].sniffed_type != "image/png"
        blobs = harness.runtime.services.blobs
        assert blobs.get(atts[0].sha256) == png
        assert atts[0].sha256 == hashlib.sha256(png).hexdigest(), "a blob is named by its hash, never a filename"
        assert blobs.get(message.raw_sha256) == raw, "the raw mail is kept byte for byte"


def test_every_change_leaves_an_audit_event(harness):
    harness.deliver(make_mail(subject="One"))
    harness.deliver(make_mail(subject="Re: One [#1]"))
    with harness.session() as s:
        kinds = [e.kind for e in s.scalars(select(Event).order_by(Event.id))]
    # the reply names the ticket by its token only, not by the signed address: stored, and flagged unproven
    assert kinds == ["ticket.created", "message.received", "message.received", "mail.unproven"]


def test_encoded_headers_and_charsets_are_decoded(harness):
    raw = (
        b"From: =?utf-8?B?0JjQstCw0L0=?= <ivan@customer.example>\r\nTo: support@example.com\r\n"
        b"Subject: =?koi8-r?B?8NLJ18XU?=\r\nMessage-ID: <k@x>\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n"
        + "Привет".encode("koi8-r")
        + b"\r\n"
    )
    harness.deliver(raw)
    with harness.session() as s:
        data = show_ticket(s, 1)
    assert data["subject"] == "Привет"
    assert data["messages"][0]["text"].strip() == "Привет"
