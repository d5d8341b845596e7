"""SLA timers on a fake clock: warn before a target is missed, escalate once when it is.

Acceptance: a ticket in a queue with a 4-business-hour first-response target,
created Friday 16:00, is escalated on Monday at 12:00 sharp, exactly once —
also when two daemons (two runtimes, two database engines) run the sweep at
the same instant on one database.
"""

from __future__ import annotations

import email
import email.policy
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from mailgate.ops.scheduler import run_all_once
from mailgate.storage.models import Event, Outbox, Ticket
from mailgate.timers import escalation
from tests.helpers import make_mail

PARIS = ZoneInfo("Europe/Paris")
FRIDAY_4PM = datetime(2026, 1, 9, 16, 0, tzinfo=PARIS)
MONDAY_NOON = datetime(2026, 1, 12, 12, 0, tzinfo=PARIS)
WEEKDAYS = {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}


SECTIONS = {
    "queues": [{"name": "support", "escalation_address": "escalations@example.com"}],
    "agents": [{"address": "bob@example.com", "name": "Bob", "queues": ["support"]}],
    "sla": {
        "warn_before": "1h",
        "queues": {
            "support": {
                "first_response": "4h",
                "resolution": "16h",
                "business_hours": {"timezone": "Europe/Paris", "hours": WEEKDAYS},
            }
        },
    },
}


@pytest.fixture
def sla_config(make_config):
    return make_config(**SECTIONS)


@pytest.fixture
def desk(harness_factory, sla_config, clock):
    clock.set(FRIDAY_4PM)
    harness = harness_factory(sla_config)
    harness.deliver(make_mail(subject="Printer on fire", msgid="<fire@customer.example>"))
    return harness


def mails(harness, kind: str) -> list[Outbox]:
    with harness.session() as session:
        return list(session.scalars(select(Outbox).where(Outbox.kind == kind).order_by(Outbox.id)))


def text_of(mail: Outbox) -> str:
    """Subject and plain-text body of a queued mail, decoded."""
    parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
    return f"{parsed['Subject']}\n{parsed.get_body(('plain',)).get_content()}".replace("\r\n", "\n")


def events(harness, kind: str) -> list[Event]:
    with harness.session() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def ticket(harness, number: int = 1) -> Ticket:
    with harness.session() as session:
        return session.scalar(select(Ticket).where(Ticket.number == number))


def test_a_new_ticket_gets_its_due_times_in_business_hours(desk):
    t = ticket(desk)
    assert t.first_response_due_at == MONDAY_NOON
    assert t.resolution_due_at == datetime(2026, 1, 13, 16, 0, tzinfo=PARIS)  # 1h Fri + 8h Mon + 7h Tue


def test_friday_ticket_is_escalated_on_monday_at_noon_exactly_once(desk, clock):
    for when in (
        datetime(2026, 1, 9, 16, 59, tzinfo=PARIS),
        datetime(2026, 1, 10, 12, 0, tzinfo=PARIS),
        datetime(2026, 1, 12, 9, 0, tzinfo=PARIS),
    ):
        clock.set(when)
        run_all_once(desk.runtime)
    assert events(desk, "sla.escalated") == [] and events(desk, "sla.warning") == []

    escalated_at = []
    minute = datetime(2026, 1, 12, 10, 55, tzinfo=PARIS)
    while minute <= datetime(2026, 1, 12, 12, 5, tzinfo=PARIS):
        clock.set(minute)
        run_all_once(desk.runtime)
        if events(desk, "sla.escalated") and not escalated_at:
            escalated_at.append(minute)
        minute += timedelta(minutes=1)
    assert escalated_at == [MONDAY_NOON]
    clock.set(datetime(2026, 1, 13, 9, 0, tzinfo=PARIS))
    run_all_once(desk.runtime)

    [event] = events(desk, "sla.escalated")
    assert event.detail["target"] == "first_response" and event.created_at == MONDAY_NOON
    assert (event.detail["priority_from"], event.detail["priority_to"]) == ("normal", "high")
    assert event.detail["notified"] == ["escalations@example.com"]
    t = ticket(desk)
    assert t.priority == "high" and t.sla_escalated_at == MONDAY_NOON
    [mail] = mails(desk, "sla_escalation")
    assert mail.rcpt_tos == ["escalations@example.com"]
    text = text_of(mail)
    assert text.startswith("[#1] Escalated: first response missed – Printer on fire\n")
    assert "Priority raised from normal to high." in text
    assert "missed its\nfirst response target, due Mon 2026-01-12 12:00 (Europe/Paris)." in text


def test_the_queue_is_warned_an_hour_before_once(desk, clock):
    clock.set(datetime(2026, 1, 12, 10, 59, tzinfo=PARIS))
    run_all_once(desk.runtime)
    assert mails(desk, "sla_warning") == []
    for minute in range(0, 50, 10):
        clock.set(datetime(2026, 1, 12, 11, minute, tzinfo=PARIS))
        run_all_once(desk.runtime)
    [warning] = mails(desk, "sla_warning")
    assert warning.rcpt_tos == ["bob@example.com"]  # no assignee: the queue's agents
    assert "must have its\nfirst response by Mon 2026-01-12 12:00 (Europe/Paris)." in text_of(warning)
    [event] = events(desk, "sla.warning")
    assert event.detail["target"] == "first_response"


def test_the_assignee_is_the_one_warned(desk, clock):
    with desk.session() as session, session.begin():
        session.scalar(select(Ticket)).assignee = "carol@example.com"
    clock.set(datetime(2026, 1, 12, 11, 30, tzinfo=PARIS))
    run_all_once(desk.runtime)
    assert [m.rcpt_tos for m in mails(desk, "sla_warning")] == [["carol@example.com"]]


def test_a_target_met_in_time_is_neither_warned_nor_escalated(desk, clock):
    with desk.session() as session, session.begin():
        session.scalar(select(Ticket)).first_response_at = datetime(2026, 1, 12, 9, 30, tzinfo=PARIS)
    clock.set(datetime(2026, 1, 12, 12, 30, tzinfo=PARIS))
    run_all_once(desk.runtime)
    assert events(desk, "sla.escalated") == [] and events(desk, "sla.warning") == []


def test_the_resolution_target_escalates_on_its_own_once(desk, clock):
    with desk.session() as session, session.begin():
        session.scalar(select(Ticket)).first_response_at = datetime(2026, 1, 12, 9, 30, tzinfo=PARIS)
    for day, hour in ((13, 15), (13, 16), (13, 17), (14, 10)):
        clock.set(datetime(2026, 1, day, hour, 0, tzinfo=PARIS))
        run_all_once(desk.runtime)
    [event] = events(desk, "sla.escalated")
    assert event.detail["target"] == "resolution" and event.created_at == datetime(2026, 1, 13, 16, tzinfo=PARIS)
    assert [e.detail["target"] for e in events(desk, "sla.warning")] == ["resolution"]
    assert len(mails(desk, "sla_escalation")) == 1


def test_pending_and_spam_tickets_are_not_escalated(desk, clock):
    with desk.session() as session, session.begin():
        session.scalar(select(Ticket)).status = "pending"
    desk.deliver(make_mail(subject="Cheap pills", msgid="<spam@spam.example>"))
    with desk.session() as session, session.begin():
        session.scalar(select(Ticket).where(Ticket.number == 2)).spam = True
    clock.set(datetime(2026, 1, 20, 12, 0, tzinfo=PARIS))
    run_all_once(desk.runtime)
    assert events(desk, "sla.escalated") == []


def test_tickets_created_before_the_sla_existed_get_due_times_from_the_sweep(harness_factory, make_config, clock):
    clock.set(FRIDAY_4PM)
    before = harness_factory(make_config(queues=[{"name": "support"}]))
    before.deliver(make_mail())
    assert ticket(before).first_response_due_at is None
    after = harness_factory(make_config(**SECTIONS))  # the admin adds [sla] and restarts
    run_all_once(after.runtime)
    assert ticket(after).first_response_due_at == MONDAY_NOON


def _race(runtimes, action):
    """Run ``action(runtime)`` in one thread per runtime, all released at the same instant."""
    barrier = threading.Barrier(len(runtimes))
    results: list[object] = [None] * len(runtimes)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = action(runtimes[index])
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(runtimes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_two_daemons_claiming_the_same_ticket_at_once_escalate_it_once(desk, harness_factory, sla_config, clock):
    second = harness_factory(sla_config)
    assert second.runtime.engine is not desk.runtime.engine
    clock.set(MONDAY_NOON)
    runtimes = [desk.runtime, second.runtime]
    for runtime in runtimes:  # both saw the ticket as due before either claimed it
        with runtime.sessions() as session:
            assert escalation.due_for_escalation(session, escalation.FIRST_RESPONSE, clock.now()) == [1]
    won = _race(runtimes, lambda runtime: escalation.escalate(runtime, 1, escalation.FIRST_RESPONSE))
    assert sorted(won) == [False, True]
    assert len(events(desk, "sla.escalated")) == 1 and len(mails(desk, "sla_escalation")) == 1
    assert ticket(desk).priority == "high"  # raised once, not twice


def test_two_daemons_sweeping_at_the_same_instant_escalate_each_ticket_once(desk, harness_factory, sla_config, clock):
    for n in range(2, 13):
        desk.deliver(make_mail(subject=f"problem {n}", msgid=f"<p{n}@customer.example>"))
    second = harness_factory(sla_config)
    clock.set(MONDAY_NOON)
    results = _race([desk.runtime, second.runtime], escalation.sweep)
    assert sum(r["escalated"] for r in results) == 12
    with desk.session() as session:
        per_ticket = session.execute(
            select(Event.ticket_id, func.count()).where(Event.kind == "sla.escalated").group_by(Event.ticket_id)
        ).all()
        assert len(per_ticket) == 12 and {count for _, count in per_ticket} == {1}
        assert set(session.scalars(select(Ticket.priority))) == {"high"}
    assert len(mails(desk, "sla_escalation")) == 12


def test_each_escalation_counts_as_an_sla_breach_in_the_metrics(harness_factory, make_config, clock):
    clock.set(FRIDAY_4PM)
    desk = harness_factory(make_config(**SECTIONS, metrics={"listen": "127.0.0.1:0"}))
    desk.deliver(make_mail())
    clock.set(MONDAY_NOON)
    run_all_once(desk.runtime)
    run_all_once(desk.runtime)
    text = desk.runtime.services.metrics.render().decode()
    assert 'mailgate_sla_breaches_total{queue="support",target="first_response"} 1.0' in text


def test_tickets_that_will_never_have_a_target_do_not_starve_the_others(
    harness_factory, make_config, clock, monkeypatch
):
    clock.set(FRIDAY_4PM)
    before = harness_factory(make_config(queues=[{"name": "support"}]))
    before.deliver(make_mail(subject="normal", msgid="<n@customer.example>"))
    before.deliver(make_mail(subject="urgent", msgid="<u@customer.example>"))
    with before.session() as session, session.begin():
        session.scalar(select(Ticket).where(Ticket.number == 2)).priority = "urgent"
    after = harness_factory(
        make_config(
            queues=[{"name": "support"}],
            sla={"queues": {"support": {"priority": {"urgent": {"first_response": "1h"}}}}},
        )
    )  # only urgent tickets have a target
    monkeypatch.setattr(escalation, "BATCH", 1)  # one ticket per pass: the normal one must not take the slot
    assert escalation.fill_deadlines(after.runtime) == 1
    assert ticket(after, 1).first_response_due_at is None
    assert ticket(after, 2).first_response_due_at == FRIDAY_4PM + timedelta(hours=1)
