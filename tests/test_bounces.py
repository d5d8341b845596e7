"""Bounces: a delivery status notification maps to the mail and recipient that failed, joins that
mail's ticket (never a new one), fails the outbox row and suppresses automatic mail to the address."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailgate import bounces
from mailgate.models import Suppression, Ticket
from tests.helpers import make_mail
from tests.outbound_helpers import events, flush, outbox_rows, sent_mails

KEY = b"k" * 32


def dsn(to: str, original_msgid: str, *, recipient="alice@customer.example", status="5.1.1", action="failed",
        original_as="text/rfc822-headers", number=1) -> bytes:
    original_headers = (f"From: Example Support <support@example.com>\r\nTo: {recipient}\r\n"
                        f"Subject: [#1] Printer on fire\r\nMessage-ID: {original_msgid}\r\n")
    body = "\r\nthe original text\r\n" if original_as == "message/rfc822" else ""
    original = original_headers + body
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\nTo: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{number}@mx.customer.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"\r\n\r\n'
        "--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could "
        "not be delivered.\r\n\r\n"
        "--BOUNDARY\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected\r\n\r\n"
        f"--BOUNDARY\r\nContent-Type: {original_as}\r\n\r\n{original}\r\n"
        "--BOUNDARY--\r\n"
    ).encode()


def acknowledged(harness):
    """A ticket whose acknowledgment went out; returns the outbox row."""
    harness.deliver(make_mail(subject="Printer on fire", msgid="<q@customer.example>"))
    flush(harness)
    [row] = outbox_rows(harness, kind="acknowledgment")
    return row


def ticket_shape(harness):
    with harness.session() as s:
        return {t.number: [m.direction for m in t.messages] for t in s.scalars(select(Ticket))}


def test_verp_addresses_are_signed_and_checked():
    address = bounces.verp_address(KEY, "support@example.com", 42)
    assert address.startswith("support+bounce-42.") and address.endswith("@example.com")
    assert bounces.parse_verp(KEY, address, "support@example.com") == 42
    assert bounces.parse_verp(KEY, f"<{address.upper()}>", "support@example.com") == 42
    forged = address.replace("bounce-42.", "bounce-43.")
    assert bounces.parse_verp(KEY, forged, "support@example.com") is None
    assert bounces.parse_verp(b"another key" * 3, address, "support@example.com") is None
    assert bounces.parse_verp(KEY, address.replace("@example.com", "@evil.example"), "support@example.com") is None


def test_a_hard_bounce_to_the_verp_address_fails_the_mail_joins_its_ticket_and_suppresses(harness, clock):
    row = acknowledged(harness)
    harness.deliver(dsn(row.mail_from, row.message_id), mail_from="", rcpt_tos=(row.mail_from,))
    assert ticket_shape(harness) == {1: ["in", "in"]}, "attached to the ticket, not a new one"
    assert flush(harness) == 0, "no answer to a bounce"
    [failed] = outbox_rows(harness, kind="acknowledgment")
    assert failed.status == "failed" and "5.1.1" in failed.last_error
    [event] = events(harness, "mail.bounced")
    assert event.ticket_id == failed.ticket_id
    assert (event.detail["outbox"], event.detail["recipient"], event.detail["status"]) == (
        failed.id, "alice@customer.example", "5.1.1")
    with harness.session() as s:
        suppression = s.get(Suppression, "alice@customer.example")
        assert suppression is not None and suppression.until == clock.now() + timedelta(days=30)

    harness.deliver(make_mail(subject="Another question"))
    assert outbox_rows(harness)[-1].status == "held"
    assert "hard-bounced" in events(harness, "mail.held")[-1].detail["reason"]
    clock.advance(timedelta(days=31))
    harness.deliver(make_mail(subject="A month later"))
    assert outbox_rows(harness)[-1].status == "pending", "the suppression ends by itself"


@pytest.mark.parametrize("original_as", ["text/rfc822-headers", "message/rfc822"])
def test_without_verp_the_original_message_id_finds_the_mail(harness, original_as):
    row = acknowledged(harness)
    harness.deliver(dsn("support@example.com", row.message_id, original_as=original_as), mail_from="")
    assert ticket_shape(harness) == {1: ["in", "in"]}
    assert outbox_rows(harness, kind="acknowledgment")[0].status == "failed"


def test_a_delay_notice_is_recorded_and_fails_nothing(harness):
    row = acknowledged(harness)
    harness.deliver(dsn(row.mail_from, row.message_id, status="4.4.1", action="delayed"), mail_from="",
                    rcpt_tos=(row.mail_from,))
    assert outbox_rows(harness, kind="acknowledgment")[0].status == "sent"
    assert [e.detail["status"] for e in events(harness, "mail.delayed")] == ["4.4.1"]
    with harness.session() as s:
        assert s.get(Suppression, "alice@customer.example") is None


def test_a_bounce_of_nothing_we_sent_is_recorded_but_is_no_ticket(harness):
    harness.deliver(dsn("support@example.com", "<never-sent@example.com>"), mail_from="")
    forged = bounces.verp_address(b"not our key" * 3, "support@example.com", 1)
    harness.deliver(dsn(forged, "<also-never@example.com>", number=2), mail_from="", rcpt_tos=(forged,))
    assert ticket_shape(harness) == {}
    unmatched = events(harness, "bounce.unmatched")
    assert [e.detail["original_message_id"] for e in unmatched] == ["<never-sent@example.com>",
                                                                      "<also-never@example.com>"]
    assert harness.runtime.services.blobs.exists(unmatched[0].detail["raw_sha256"]), "its bytes are kept"
    assert harness.runtime.spool.depth()["quarantine"] == 0


def test_a_plain_text_bounce_to_the_verp_address_fails_the_mail(harness):
    row = acknowledged(harness)
    raw = (f"From: MAILER-DAEMON@mx.customer.example\r\nTo: {row.mail_from}\r\nSubject: failure notice\r\n"
           "Message-ID: <qmail@mx.customer.example>\r\n\r\nSorry, no mailbox here by that name.\r\n").encode()
    harness.deliver(raw, mail_from="", rcpt_tos=(row.mail_from,))
    assert ticket_shape(harness) == {1: ["in", "in"]}
    assert outbox_rows(harness, kind="acknowledgment")[0].status == "failed"
    assert events(harness, "mail.bounced")[0].detail["recipient"] == "alice@customer.example"


def test_an_out_of_office_answering_the_return_path_joins_the_ticket_unanswered(harness):
    row = acknowledged(harness)
    harness.deliver(make_mail(subject="Automatic reply: your request", to=row.mail_from,
                              headers={"Auto-Submitted": "auto-replied"}), mail_from="", rcpt_tos=(row.mail_from,))
    assert ticket_shape(harness) == {1: ["in", "in"]}
    assert flush(harness) == 0
    assert len(sent_mails(harness.runtime.config.data_dir)) == 1
    assert outbox_rows(harness, kind="acknowledgment")[0].status == "sent", "an autoreply is not a bounce"
