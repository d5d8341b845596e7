"""The loop guard's one query: the breaker's count is read once per batch session, then only what it added;
a tripped breaker is looked up once per batch transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event

from mailgate.outbound.loopguard import FIXED_RECIPIENTS, SYSTEM_CACHE_SECONDS, Limits, gather_counts
from mailgate.outbound.outbox import trip_breaker
from mailgate.storage.models import Outbox, Suppression
from tests.helpers import make_mail
from tests.outbound_helpers import events, outbox_rows

LIMITS = Limits(system_limit=5, system_window=600.0)


def _automatic(session, now, n: int, status: str = "pending") -> None:
    for i in range(n):
        session.add(
            Outbox(
                ticket_id=None,
                kind="acknowledgment",
                message_id=f"<o{now.timestamp()}-{i}@x>",
                mail_from="",
                rcpt_tos=[f"c{i}@customer.example"],
                raw=b"",
                status=status,
                attempts=0,
                next_attempt_at=now,
                last_error="",
                created_at=now,
                automatic=True,
                recipient=f"c{i}@customer.example",
            )
        )
    session.flush()


def _system(session, now) -> int:
    return gather_counts(
        session, now, recipients=["x@customer.example"], sender=None, ticket_id=None, limits=LIMITS
    ).system_in_window


def test_rows_a_batch_adds_after_the_first_count_are_counted_so_the_breaker_still_trips(harness, clock):
    now = clock.now()
    with harness.runtime.sessions() as session, session.begin():
        _automatic(session, now, 2)
        assert _system(session, now) == 2  # read in full once
        _automatic(session, now, 2)
        _automatic(session, now, 1, status="held")  # held-back mail does not count
        assert _system(session, now) == 4  # the cached count plus what was added since
        _automatic(session, now, 3)
        assert _system(session, now) >= LIMITS.system_limit


def test_a_count_older_than_its_freshness_or_in_a_new_session_is_read_again(harness, clock):
    now = clock.now()
    with harness.runtime.sessions() as session, session.begin():
        _automatic(session, now - timedelta(seconds=590), 3)
        assert _system(session, now) == 3
        later = now + timedelta(seconds=SYSTEM_CACHE_SECONDS + 20)  # the three left the window meanwhile
        assert _system(session, later) == 0
    with harness.runtime.sessions() as session, session.begin():
        assert _system(session, now) == 3


@pytest.mark.parametrize("count", [1, 2, FIXED_RECIPIENTS, FIXED_RECIPIENTS + 1, 9])
def test_a_suppressed_recipient_is_found_among_any_number_of_recipients(harness, clock, count):
    """Up to FIXED_RECIPIENTS they are parameters of their own, past that an expanding IN: both find it."""
    now = clock.now()
    recipients = [f"r{i}@customer.example" for i in range(count)]
    with harness.runtime.sessions() as session, session.begin():
        session.add(Suppression(address=recipients[-1], reason="hard bounce", until=None, created_at=now))
        session.add(Suppression(address="gone@customer.example", reason="lifted", until=now, created_at=now))
        session.flush()

        def suppressed(addresses: list[str]) -> tuple[str, ...]:
            return gather_counts(
                session, now, recipients=addresses, sender=None, ticket_id=None, limits=LIMITS
            ).suppressed

        assert suppressed(recipients) == (recipients[-1],)
        assert suppressed([*recipients[:-1], "gone@customer.example"]) == ()


def _spool_from_many_senders(harness, count: int) -> None:
    from mailgate.spool.disk import SpoolMeta

    for n in range(count):
        sender = f"c{n}@customer.example"
        meta = SpoolMeta(id="", source="smtp", mail_from=sender, rcpt_tos=["support@example.com"])
        harness.runtime.spool.put(make_mail(sender=sender, subject=f"Request {n}"), meta)


def test_a_batch_of_mail_held_by_the_tripped_breaker_looks_the_trip_up_once(make_config, harness_factory):
    h = harness_factory(make_config(loop={"system_limit": 2, "system_window": "10m"}))
    _spool_from_many_senders(h, 7)
    looked_up: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if "FROM events WHERE events.kind" in " ".join(statement.split()):
            looked_up.append(statement)

    event.listen(h.runtime.engine, "before_cursor_execute", seen)
    try:
        assert h.worker.drain() == 7
    finally:
        event.remove(h.runtime.engine, "before_cursor_execute", seen)

    statuses = [r.status for r in outbox_rows(h) if r.kind == "acknowledgment"]
    assert statuses == ["pending"] * 2 + ["held"] * 5
    assert len(events(h, "loop.breaker_tripped")) == 1
    assert len(looked_up) == 1, "one lookup for the batch, not one a held mail"


def test_a_trip_recorded_in_a_savepoint_that_rolls_back_is_recorded_again(harness, clock):
    services, now = harness.runtime.services, clock.now()
    with harness.runtime.sessions() as session, session.begin():
        savepoint = session.begin_nested()
        trip_breaker(session, services, now, 5)
        savepoint.rollback()
        trip_breaker(session, services, now, 5)
    assert len(events(harness, "loop.breaker_tripped")) == 1


def test_a_new_transaction_looks_the_trip_up_again(harness, clock):
    services, now = harness.runtime.services, clock.now()
    with harness.runtime.sessions() as session:
        with session.begin():
            trip_breaker(session, services, now, 5)
            session.rollback()
        with session.begin():
            trip_breaker(session, services, now, 5)
    assert len(events(harness, "loop.breaker_tripped")) == 1
