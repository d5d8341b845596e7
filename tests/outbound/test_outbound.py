"""Outbound mail in process: acknowledgments, notifications, threading and the transactional outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mailgate.outbound import outbox as outbox_module
from mailgate.reports.views import show_ticket
from mailgate.storage.models import MessageRef, Ticket
from tests.helpers import mailgate, make_mail
from tests.outbound_helpers import events, flush, html_of, outbox_rows, sent_mails, text_of

AGENTS = [
    {"address": "bob@example.com", "name": "Bob", "queues": ["support"]},
    {"address": "carol@example.com", "name": "Carol Agent", "queues": ["billing"]},
]
QUEUES = [{"name": "support", "agents": ["dave@example.com"]}, {"name": "billing", "locale": "fr"}]


def data_dir(harness):
    return harness.runtime.config.data_dir


def tickets(harness):
    with harness.session() as s:
        return {t.number: len(t.messages) for t in s.scalars(select(Ticket))}


def test_a_new_mail_gets_exactly_one_threaded_acknowledgment_with_the_token(harness):
    harness.deliver(
        make_mail(subject="Printer on fire", msgid="<first@customer.example>", references="<older@customer.example>")
    )
    assert flush(harness) == 1
    assert flush(harness) == 0, "a second sweep sends nothing again"
    [ack] = sent_mails(data_dir(harness))
    assert ack["Subject"] == "[#1] Printer on fire"
    assert ack["To"] == "Alice <alice@customer.example>"
    assert ack["From"] == "Example Support <support@example.com>"
    assert ack["In-Reply-To"] == "<first@customer.example>"
    assert ack["References"].split() == ["<older@customer.example>", "<first@customer.example>"]
    assert ack["Message-ID"].endswith("@support.example.com>")
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Return-Path"].startswith("<support+bounce-1.")
    assert ack["Delivered-To"] == "alice@customer.example"
    assert "[#1]" in text_of(ack) and "reply to this mail" in text_of(ack)
    assert "<strong>[#1]</strong>" in html_of(ack)
    [row] = outbox_rows(harness)
    assert (row.status, row.kind, row.automatic, row.message_id) == ("sent", "acknowledgment", True, ack["Message-ID"])

    # A reply to the acknowledgment joins the ticket: by its Message-ID, its Reply-To address, or the token.
    harness.deliver(make_mail(subject="Re: printer", in_reply_to=ack["Message-ID"]))
    reply_to = ack["Reply-To"].addresses[0].addr_spec
    harness.deliver(make_mail(subject="no token here", to=reply_to), rcpt_tos=(reply_to,))
    harness.deliver(make_mail(subject="Re: [#1] Printer on fire"))
    assert tickets(harness) == {1: 4}
    assert flush(harness) == 0, "replies are not acknowledged"


def test_the_acknowledgment_is_kept_out_of_the_conversation_but_its_message_id_is_remembered(harness):
    harness.deliver(make_mail())
    assert len(outbox_rows(harness)) == 1
    with harness.session() as s:
        assert [m["direction"] for m in show_ticket(s, 1)["messages"]] == ["in"]
        assert s.scalar(select(func.count()).select_from(MessageRef)) == 2


def test_a_subject_is_never_doubled_or_stacked(harness):
    harness.deliver(make_mail(subject="Re: RE: Fwd: [#77] Re: Invoice"))
    flush(harness)
    assert sent_mails(data_dir(harness))[0]["Subject"] == "[#1] Invoice"


def test_outbox_rows_are_written_in_the_transaction_of_their_cause(harness):
    """A rolled-back change leaves no mail behind; a committed one always has its mail."""
    services = harness.runtime.services
    harness.deliver(make_mail())
    with harness.session() as s:
        ticket = s.scalar(select(Ticket))
        assert (
            outbox_module.enqueue(s, services, ticket=ticket, kind="resolved", recipients=[ticket.customer.address])
            is not None
        )
        s.rollback()
    assert [r.kind for r in outbox_rows(harness)] == ["acknowledgment"]
    with harness.session() as s, s.begin():
        ticket = s.scalar(select(Ticket))
        outbox_module.enqueue(s, services, ticket=ticket, kind="resolved", recipients=[ticket.customer.address])
    assert [r.kind for r in outbox_rows(harness)] == ["acknowledgment", "resolved"]


def test_a_new_ticket_notifies_its_queue_and_a_reply_the_assignee_else_the_queue(make_config, harness_factory):
    h = harness_factory(make_config(agents=AGENTS, queues=QUEUES))
    h.deliver(make_mail(subject="Broken", msgid="<b1@customer.example>"))
    flush(h)
    mails = sent_mails(data_dir(h))
    notes = {m["To"].addresses[0].addr_spec: m for m in mails if m["Auto-Submitted"] == "auto-generated"}
    assert set(notes) == {"bob@example.com", "dave@example.com"}, "both ways of naming a queue's agents count"
    note = notes["dave@example.com"]
    assert note["Subject"] == "[#1] Broken"
    assert note["In-Reply-To"] == "<b1@customer.example>"
    assert "New ticket [#1]" in text_of(note) and "my printer is on fire" in text_of(note)
    assert {r.kind for r in outbox_rows(h)} == {"acknowledgment", "notify_new_ticket"}

    reply_to = note["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("support+1.") and reply_to.endswith("@example.com"), "a reply address of ticket 1"

    # A reply to the notification joins the ticket through its Message-ID, and notifies the others only.
    h.deliver(
        make_mail(subject="a remark", sender="Dave <dave@example.com>", in_reply_to=note["Message-ID"]),
        mail_from="dave@example.com",
    )
    assert tickets(h) == {1: 2}
    replies = outbox_rows(h, kind="notify_reply")
    assert [r.recipient for r in replies] == ["bob@example.com"], "never notify the one who wrote"

    with h.session() as s, s.begin():
        s.scalar(select(Ticket)).assignee = "carol@example.com"
    h.deliver(make_mail(subject="Re: [#1] Broken", body="Any news?\n"))
    assert [r.recipient for r in outbox_rows(h, kind="notify_reply")][-1:] == ["carol@example.com"]
    flush(h)
    [to_carol] = [m for m in sent_mails(data_dir(h)) if "carol@example.com" in m["To"]]
    assert to_carol["To"] == "Carol Agent <carol@example.com>" and "Any news?" in text_of(to_carol)


def test_the_locale_comes_from_the_queue_when_the_mail_does_not_tell_with_english_as_fallback(
    make_config, harness_factory
):
    h = harness_factory(make_config(queues=[{"name": "support", "locale": "fr"}]))
    h.deliver(make_mail(body="Ok.\n"))  # too short to tell its language: the queue's
    flush(h)
    assert "Votre demande porte le numéro de ticket [#1]" in text_of(sent_mails(data_dir(h))[0])

    h2 = harness_factory(make_config(queues=[{"name": "support", "locale": "it"}]))  # no Italian templates
    h2.deliver(make_mail(subject="Zweite", body="Ok.\n"))
    flush(h2)
    [second] = [m for m in sent_mails(data_dir(h2)) if m["Subject"] == "[#2] Zweite"]
    assert "Your request is now ticket" in text_of(second)


def test_a_queue_can_override_a_template(tmp_path, make_config, harness_factory):
    override = tmp_path / "templates" / "queues" / "support" / "en"
    override.mkdir(parents=True)
    (override / "acknowledgment.j2").write_text(
        "{% block subject %}We got it{% endblock %}\n"
        "{% block text %}Dear {{ customer.name }}, noted: {{ ticket.token }}."
        "{% endblock %}\n"
    )
    h = harness_factory(make_config())
    h.deliver(make_mail(subject="Original"))
    flush(h)
    [ack] = sent_mails(data_dir(h))
    assert ack["Subject"] == "[#1] We got it"
    assert text_of(ack).strip() == "Dear Alice, noted: [#1]."
    assert ack.get_content_type() == "text/plain", "no html block, no html part"


def test_html_parts_escape_what_the_customer_wrote_and_text_parts_keep_it(harness):
    harness.deliver(
        make_mail(
            subject="<script>alert(1)</script> & more",
            sender="<b>Eve</b> <eve@customer.example>",
            msgid="<x1@customer.example>",
        ),
        mail_from="eve@customer.example",
    )
    flush(harness)
    [ack] = sent_mails(data_dir(harness))
    assert "<script>" not in html_of(ack)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html_of(ack)
    assert "<script>alert(1)</script> & more" in text_of(ack)


def test_a_held_mail_is_kept_and_can_be_sent_by_the_admin(harness, config_file, clock):
    harness.deliver(make_mail(headers={"Auto-Submitted": "auto-generated"}))
    [row] = outbox_rows(harness)
    assert row.status == "held" and "Auto-Submitted" in row.last_error
    assert flush(harness) == 0
    result = mailgate(config_file, "outbox", "list", "--format", "json")
    assert result.returncode == 0 and b'"status": "held"' in result.stdout
    assert mailgate(config_file, "outbox", "retry", str(row.id)).returncode == 0
    clock.set(datetime.now(UTC) + timedelta(seconds=1))  # the command ran on the real clock
    assert flush(harness) == 1
    assert [e.detail["was"] for e in events(harness, "mail.retried")] == ["held"]


def test_retry_refuses_what_is_not_failed_or_held(harness, config_file):
    harness.deliver(make_mail())
    flush(harness)
    result = mailgate(config_file, "outbox", "retry", "1")
    assert result.returncode == 1 and b"it is sent" in result.stderr
    assert mailgate(config_file, "outbox", "retry", "99").returncode == 1


@pytest.mark.parametrize("kind", ["acknowledgment", "notify_new_ticket", "notify_reply", "agent_reply", "resolved"])
def test_every_kind_renders_and_says_what_kind_of_mail_it_is(harness, kind):
    harness.deliver(make_mail())
    with harness.session() as s, s.begin():
        ticket = s.scalar(select(Ticket))
        automatic = kind != "agent_reply"
        row = outbox_module.enqueue(
            s,
            harness.runtime.services,
            ticket=ticket,
            kind=kind,
            automatic=automatic,
            recipients=[("Alice", "alice@customer.example")],
            in_reply_to=ticket.messages[0],
            context={"reply": {"text": "Unplug it.", "author_name": "Bob"}},
            incoming=None,
        )
        assert row is not None
        raw = row.raw
    from tests.outbound_helpers import parse

    mail = parse(raw)
    expected = {"acknowledgment": "auto-replied", "agent_reply": None}.get(kind, "auto-generated")
    assert mail["Auto-Submitted"] == expected
    assert mail["Subject"] == "[#1] Printer on fire"
    if kind == "agent_reply":
        assert "Unplug it." in text_of(mail) and "Unplug it." in html_of(mail)
        with harness.session() as s:
            assert [m["direction"] for m in show_ticket(s, 1)["messages"]] == ["in", "out"], (
                "mail a person wrote joins the conversation"
            )
