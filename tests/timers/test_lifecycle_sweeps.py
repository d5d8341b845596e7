"""Pending reminder, auto-resolve, auto-close and the daily digest: at the configured days, each once,
each mail from its template (fake clock; several runs of every sweep at every step)."""

from __future__ import annotations

import email
import email.policy
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailgate.domain import lifecycle
from mailgate.ops.scheduler import run_all_once
from mailgate.storage.models import Event, Outbox, Ticket
from mailgate.timers import digest
from tests.helpers import make_mail

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


def mails(harness, kind: str) -> list[Outbox]:
    with harness.session() as session:
        return list(session.scalars(select(Outbox).where(Outbox.kind == kind).order_by(Outbox.id)))


def events(harness, kind: str) -> list[Event]:
    with harness.session() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def status(harness, number: int = 1) -> str:
    with harness.session() as session:
        return session.scalar(select(Ticket.status).where(Ticket.number == number))


def set_status(harness, target: str, number: int = 1) -> None:
    with harness.session() as session, session.begin():
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        lifecycle.set_status(ticket, target, harness.runtime.services.clock.now())


def at(harness, clock, when: datetime) -> None:
    """Time passes: the sweeps run, twice, as several daemons would."""
    clock.set(when)
    run_all_once(harness.runtime)
    run_all_once(harness.runtime)


def text_of(mail: Outbox) -> str:
    """Subject and plain-text body of a queued mail, decoded."""
    parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
    return f"{parsed['Subject']}\n{parsed.get_body(('plain',)).get_content()}".replace("\r\n", "\n")


@pytest.fixture
def desk(harness_factory, make_config, clock):
    clock.set(T0)
    harness = harness_factory(
        make_config(queues=[{"name": "support"}], sla={"pending_reminder_days": 3, "pending_resolve_days": 4})
    )
    harness.deliver(make_mail(subject="Printer on fire", msgid="<fire@customer.example>"))
    set_status(harness, "pending")
    return harness


def test_a_pending_ticket_is_reminded_after_3_days_then_resolved_4_days_later_each_once(desk, clock):
    at(desk, clock, T0 + 3 * DAY - MINUTE)
    assert mails(desk, "pending_reminder") == []
    at(desk, clock, T0 + 3 * DAY)
    at(desk, clock, T0 + 5 * DAY)
    [reminder] = mails(desk, "pending_reminder")
    assert reminder.rcpt_tos == ["alice@customer.example"]
    assert "we are still waiting for your answer on ticket [#1]" in text_of(reminder)
    assert "resolve the ticket in 4 days" in text_of(reminder)
    assert len(events(desk, "ticket.reminded")) == 1 and status(desk) == "pending"

    at(desk, clock, T0 + 7 * DAY - MINUTE)
    assert status(desk) == "pending" and mails(desk, "pending_resolved") == []
    at(desk, clock, T0 + 7 * DAY)
    at(desk, clock, T0 + 8 * DAY)
    assert status(desk) == "resolved"
    [notice] = mails(desk, "pending_resolved")
    assert "as we have not heard from you, we have resolved ticket [#1]" in text_of(notice)
    assert "within 7 days" in text_of(notice)
    [event] = [e for e in events(desk, "ticket.resolved") if e.actor == "mailgate"]
    assert event.detail["reason"] == "pending_timeout" and event.created_at == T0 + 7 * DAY


def test_a_resolved_ticket_is_closed_after_reopen_days_once_and_silently(desk, clock):
    set_status(desk, "resolved")  # at T0
    at(desk, clock, T0 + 7 * DAY)
    assert status(desk) == "resolved"  # still within the reopen window
    at(desk, clock, T0 + 7 * DAY + MINUTE)
    at(desk, clock, T0 + 9 * DAY)
    assert status(desk) == "closed"
    [event] = events(desk, "ticket.closed")
    assert event.created_at == T0 + 7 * DAY + MINUTE and event.detail["reason"] == "reopen_window_passed"
    with desk.session() as session:
        assert session.scalar(select(Ticket.closed_at)) == T0 + 7 * DAY + MINUTE
    assert mails(desk, "auto_closed") == []


def test_reopen_days_and_the_close_notice_come_from_config(harness_factory, make_config, clock):
    clock.set(T0)
    harness = harness_factory(
        make_config(
            queues=[{"name": "support", "locale": "ru"}], sla={"close_notice": True}, lifecycle={"reopen_days": 2}
        )
    )
    harness.deliver(make_mail(body="Ok.\n"))  # too short to tell its language: the queue's
    set_status(harness, "resolved")
    at(harness, clock, T0 + 2 * DAY + MINUTE)
    assert status(harness) == "closed"
    [notice] = mails(harness, "auto_closed")
    assert "Заявка [#1] «Printer on fire» закрыта." in text_of(notice)


def test_going_pending_again_earns_a_new_reminder(desk, clock):
    at(desk, clock, T0 + 3 * DAY)
    set_status(desk, "open")  # the customer answered
    at(desk, clock, T0 + 4 * DAY)
    set_status(desk, "pending")  # and we wait again
    at(desk, clock, T0 + 6 * DAY)
    assert len(mails(desk, "pending_reminder")) == 1 and status(desk) == "pending"  # 4 days after the 1st reminder
    at(desk, clock, T0 + 7 * DAY)
    assert len(mails(desk, "pending_reminder")) == 2
    at(desk, clock, T0 + 11 * DAY)
    assert status(desk) == "resolved"


def test_without_reminders_a_pending_ticket_is_resolved_from_when_it_went_pending(harness_factory, make_config, clock):
    clock.set(T0)
    harness = harness_factory(make_config(sla={"pending_reminder_days": 0, "pending_resolve_days": 5}))
    harness.deliver(make_mail())
    set_status(harness, "pending")
    at(harness, clock, T0 + 5 * DAY - MINUTE)
    assert status(harness) == "pending"
    at(harness, clock, T0 + 5 * DAY)
    assert status(harness) == "resolved" and mails(harness, "pending_reminder") == []
    assert len(mails(harness, "pending_resolved")) == 1


@pytest.fixture
def digest_desk(harness_factory, make_config, clock):
    config = make_config(
        queues=[{"name": "support", "escalation_address": "lead@example.com"}, {"name": "quiet"}],
        sla={"digest_at": "08:00", "timezone": "Europe/Paris", "queues": {"support": {"first_response": "1h"}}},
    )
    clock.set(datetime(2026, 3, 2, 6, 0, tzinfo=UTC))  # 07:00 in Paris
    harness = harness_factory(config)
    for n in range(3):
        harness.deliver(make_mail(subject=f"problem {n}", msgid=f"<p{n}@customer.example>"))
    with harness.session() as session, session.begin():
        session.scalar(select(Ticket).where(Ticket.number == 2)).assignee = "bob@example.com"
        session.scalar(select(Ticket).where(Ticket.number == 3)).status = "resolved"
    return harness, config


def test_the_daily_digest_goes_to_the_escalation_address_at_its_time_once_a_day(digest_desk, clock):
    desk, _config = digest_desk
    at(desk, clock, datetime(2026, 3, 2, 6, 59, tzinfo=UTC))
    assert mails(desk, "digest") == []
    at(desk, clock, datetime(2026, 3, 2, 7, 0, tzinfo=UTC))  # 08:00 in Paris
    at(desk, clock, datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    [mail] = mails(desk, "digest")
    assert mail.rcpt_tos == ["lead@example.com"] and mail.ticket_id is None
    text = text_of(mail)
    assert "support on 2026-03-02: 2 open, 2 overdue, 1 unassigned" in text
    assert "#1  0 days  new  unassigned  problem 0" in text and "#2  0 days  new  bob@example.com" in text
    at(desk, clock, datetime(2026, 3, 3, 7, 0, tzinfo=UTC))
    assert len(mails(desk, "digest")) == 2


def test_two_daemons_send_one_digest(digest_desk, harness_factory, clock):
    desk, config = digest_desk
    second = harness_factory(config)
    clock.set(datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    barrier = threading.Barrier(2)
    sent: list[int] = []

    def run(runtime) -> None:
        barrier.wait(timeout=30)
        sent.append(digest.sweep(runtime))

    threads = [threading.Thread(target=run, args=(r,)) for r in (desk.runtime, second.runtime)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(sent) == [0, 1]
    assert len(mails(desk, "digest")) == 1
