"""Bounces: a delivery status notification maps to the mail and recipient that failed, joins that
mail's ticket (never a new one), fails the outbox row and suppresses automatic mail to the address."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailgate.outbound import bounces
from mailgate.storage.models import Suppression, Ticket
from tests.helpers import make_mail
from tests.outbound_helpers import events, flush, outbox_rows, sent_mails

KEY = b"k" * 32


def dsn(
    to: str,
    original_msgid: str,
    *,
    recipient="alice@customer.example",
    status="5.1.1",
    action="failed",
    original_as="text/rfc822-headers",
    number=1,
) -> bytes:
    original_headers = (
        f"From: Example Support <support@example.com>\r\nTo: {recipient}\r\n"
        f"Subject: [#1] Printer on fire\r\nMessage-ID: {original_msgid}\r\n"
    )
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
        failed.id,
        "alice@customer.example",
        "5.1.1",
    )
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
def test_without_verp_the_original_message_id_finds_the_ticket_but_the_report_proves_nothing(harness, original_as):
    row = acknowledged(harness)
    harness.deliver(dsn("support@example.com", row.message_id, original_as=original_as), mail_from="")
    assert ticket_shape(harness) == {1: ["in", "in"]}, "kept in the ticket it names"
    assert outbox_rows(harness, kind="acknowledgment")[0].status == "sent"
    [event] = events(harness, "bounce.unproven")
    assert (event.detail["reported"], event.detail["changed"]) == (["alice@customer.example"], "nothing")
    assert "VERP" in event.detail["reason"]
    with harness.session() as s:
        assert s.get(Suppression, "alice@customer.example") is None


def two_agents_dsn() -> bytes:
    """A report no mail of ours caused, to the plain support address, naming both agents as failed."""
    blocks = "".join(
        f"Final-Recipient: rfc822; {a}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        for a in ("bob@example.com", "carol@example.com")
    )
    return (
        "From: MAILER-DAEMON@evil.test\r\nTo: support@example.com\r\nSubject: Delivery failure\r\n"
        "Message-ID: <forged-dsn@evil.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nUndeliverable.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; evil.test\r\n\r\n"
        f"{blocks}--B--\r\n"
    ).encode()


def test_a_forged_dsn_naming_two_agents_suppresses_nobody_and_the_next_ticket_notifies_them(
    make_config, harness_factory
):
    agents = [{"address": "bob@example.com"}, {"address": "carol@example.com"}]
    h = harness_factory(
        make_config(agents=agents, queues=[{"name": "support", "agents": ["bob@example.com", "carol@example.com"]}])
    )
    h.deliver(two_agents_dsn(), mail_from="")
    with h.session() as s:
        assert s.scalars(select(Suppression)).all() == []
    assert events(h, "bounce.unproven")[0].detail["reported"] == ["bob@example.com", "carol@example.com"]
    h.deliver(make_mail(subject="A new question"))
    notified = outbox_rows(h, kind="notify_new_ticket")
    assert sorted((r.rcpt_tos[0], r.status) for r in notified) == [
        ("bob@example.com", "pending"),
        ("carol@example.com", "pending"),
    ]


def test_a_proven_bounce_acts_only_on_the_addresses_its_mail_was_sent_to(harness):
    row = acknowledged(harness)
    harness.deliver(
        dsn(row.mail_from, row.message_id, recipient="bob@example.com"), mail_from="", rcpt_tos=(row.mail_from,)
    )
    assert outbox_rows(harness, kind="acknowledgment")[0].status == "sent"
    assert events(harness, "bounce.foreign_address")[0].detail["addresses"] == ["bob@example.com"]
    with harness.session() as s:
        assert s.scalars(select(Suppression)).all() == []


QMAIL = (
    "Hi. This is the qmail-send program at mx.customer.example.\r\n"
    "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
    "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
    "<alice@customer.example>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
    "--- Below this line is a copy of the message.\r\n\r\nSubject: [#1] Printer on fire\r\n\r\nhello\r\n"
)
SENDMAIL = (
    "The original message was received at Mon, 5 Jan 2026 09:00:00 +0100\r\n"
    "from support.example.com [192.0.2.1]\r\n\r\n"
    "   ----- The following addresses had permanent fatal errors -----\r\n<alice@customer.example>\r\n\r\n"
    "   ----- Transcript of session follows -----\r\n... while talking to mx.customer.example.:\r\n"
    ">>> RCPT To:<alice@customer.example>\r\n<<< 550 <alice@customer.example>... User unknown\r\n\r\n"
    "   ----- Original message follows -----\r\n\r\nSubject: [#1] Printer on fire\r\n"
)
EXCHANGE = (
    "Your message\r\n\r\n      Subject:  [#1] Printer on fire\r\n      Sent:     05/01/2026 09:00\r\n\r\n"
    "did not reach the following recipient(s):\r\n\r\nalice@customer.example on 05/01/2026 09:01\r\n"
    "    The recipient name is not recognized\r\n"
    "    MSEXCH:IMS:Customer:Main:MX01 0 (000C05A6) Unknown Recipient\r\n"
)


@pytest.mark.parametrize(
    ("sender", "subject", "text"),
    [
        ("MAILER-DAEMON@mx.customer.example", "failure notice", QMAIL),
        ("Mail Delivery Subsystem <MAILER-DAEMON@mx.customer.example>", "Returned mail: User unknown", SENDMAIL),
        ("postmaster@customer.example", "Undeliverable: [#1] Printer on fire", EXCHANGE),
    ],
    ids=["qmail", "sendmail", "exchange"],
)
def test_a_bounce_that_is_no_dsn_to_the_verp_address_fails_the_mail_and_suppresses(harness, sender, subject, text):
    row = acknowledged(harness)
    raw = (
        f"From: {sender}\r\nTo: {row.mail_from}\r\nSubject: {subject}\r\n"
        f"Message-ID: <b-{subject[:4]}@mx.customer.example>\r\n\r\n{text}"
    ).encode()
    harness.deliver(raw, mail_from="", rcpt_tos=(row.mail_from,))
    assert outbox_rows(harness, kind="acknowledgment")[0].status == "failed"
    assert events(harness, "mail.bounced")[0].detail["recipient"] == "alice@customer.example"
    with harness.session() as s:
        assert s.get(Suppression, "alice@customer.example") is not None


def test_flufl_reads_the_failed_address_of_each_format():
    for text in (QMAIL, SENDMAIL, EXCHANGE):
        assert bounces.scanned_failures(f"From: MAILER-DAEMON@x.example\r\n\r\n{text}".encode()) == [
            "alice@customer.example"
        ]


def test_a_delay_notice_is_recorded_and_fails_nothing(harness):
    row = acknowledged(harness)
    harness.deliver(
        dsn(row.mail_from, row.message_id, status="4.4.1", action="delayed"), mail_from="", rcpt_tos=(row.mail_from,)
    )
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
    assert [e.detail["original_message_id"] for e in unmatched] == [
        "<never-sent@example.com>",
        "<also-never@example.com>",
    ]
    assert harness.runtime.services.blobs.exists(unmatched[0].detail["raw_sha256"]), "its bytes are kept"
    assert harness.runtime.spool.depth()["quarantine"] == 0


def test_a_plain_text_bounce_to_the_verp_address_fails_the_mail(harness):
    row = acknowledged(harness)
    raw = (
        f"From: MAILER-DAEMON@mx.customer.example\r\nTo: {row.mail_from}\r\nSubject: failure notice\r\n"
        "Message-ID: <qmail@mx.customer.example>\r\n\r\nSorry, no mailbox here by that name.\r\n"
    ).encode()
    harness.deliver(raw, mail_from="", rcpt_tos=(row.mail_from,))
    assert ticket_shape(harness) == {1: ["in", "in"]}
    assert outbox_rows(harness, kind="acknowledgment")[0].status == "failed"
    assert events(harness, "mail.bounced")[0].detail["recipient"] == "alice@customer.example"


def test_an_out_of_office_answering_the_return_path_joins_the_ticket_unanswered(harness):
    row = acknowledged(harness)
    harness.deliver(
        make_mail(
            subject="Automatic reply: your request", to=row.mail_from, headers={"Auto-Submitted": "auto-replied"}
        ),
        mail_from="",
        rcpt_tos=(row.mail_from,),
    )
    assert ticket_shape(harness) == {1: ["in", "in"]}
    assert flush(harness) == 0
    assert len(sent_mails(harness.runtime.config.data_dir)) == 1
    assert outbox_rows(harness, kind="acknowledgment")[0].status == "sent", "an autoreply is not a bounce"
