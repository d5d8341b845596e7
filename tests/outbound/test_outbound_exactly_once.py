"""Outbound exactly once where the transport allows it: the 250 to DATA is the delivery, whatever QUIT
answers or if the connection drops right after it; a mail cut off before its 250 is retried and arrives
once; the maildir writes each outbox row once, even when a crash comes between the write and the commit."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select, update

from mailgate.config import load_config
from mailgate.errors import TemporaryDeliveryError
from mailgate.outbound import sender, transports
from mailgate.storage.models import Outbox
from tests.helpers import make_mail, send, wait_for
from tests.outbound.test_outbound_daemon import count, query
from tests.outbound_helpers import outbox_rows, sent_mails
from tests.smarthost import QUIT_421, Smarthost

MAILS = 60


def smarthost_config(make_config, address: str, **outbound):
    return make_config(
        outbound={"smarthost": address, "retry_base": "1m", "retry_max": "10m", "timeout": "5s", **outbound}
    )


def customer(n: int) -> str:
    return f"customer{n}@customer.example"


def deliver_new_tickets(h, n: int) -> None:
    """``n`` new tickets from ``n`` customers: ``n`` acknowledgments in the outbox (no agents here)."""
    for i in range(n):
        h.deliver(make_mail(subject=f"Question {i}", sender=f"Customer {i} <{customer(i)}>"), mail_from=customer(i))


def run_sender_for_hours(h, clock, hours: int = 5) -> None:
    """The delivery loop as the daemon runs it, now and then once an hour: every retry has come due."""
    sender.sweep(h.runtime)
    for _ in range(hours):
        clock.advance(timedelta(hours=1))
        sender.sweep(h.runtime)


@pytest.mark.parametrize(
    "misbehaviour",
    [{"quit_reply": QUIT_421}, {"drop_after_250": True}],
    ids=["quit-answered-421", "dropped-right-after-250"],
)
def test_sixty_rows_are_sixty_deliveries_whatever_follows_the_250(make_config, harness_factory, clock, misbehaviour):
    with Smarthost(**misbehaviour) as host:
        h = harness_factory(smarthost_config(make_config, host.address))
        deliver_new_tickets(h, MAILS)
        run_sender_for_hours(h, clock)
        assert host.deliveries() == MAILS
        assert len(host.delivered) == MAILS and set(host.delivered.values()) == {1}
        assert [(r.status, r.attempts, r.last_error) for r in outbox_rows(h)] == [("sent", 1, "")] * MAILS


def test_a_mail_cut_off_before_its_250_is_retried_and_arrives_once(make_config, harness_factory, clock):
    with Smarthost(drops_before_250=5) as host:
        h = harness_factory(smarthost_config(make_config, host.address))
        deliver_new_tickets(h, MAILS)
        sender.sweep(h.runtime)
        assert host.deliveries() == MAILS - 5
        retried = outbox_rows(h, status="pending")
        assert len(retried) == 5 and all(r.attempts == 1 for r in retried), "no 250: not delivered, kept"
        run_sender_for_hours(h, clock)
        assert host.transfers == MAILS + 5
        assert len(host.delivered) == MAILS and set(host.delivered.values()) == {1}
        assert {r.status for r in outbox_rows(h)} == {"sent"}


def test_the_smtp_sender_reports_a_delivery_whose_quit_got_421_as_delivered(make_config, harness_factory):
    with Smarthost(quit_reply=QUIT_421) as host:
        h = harness_factory(smarthost_config(make_config, host.address))
        smtp = h.runtime.services.sender
        refused = smtp.send("support@example.com", [customer(1)], make_mail(msgid="<q1@example.com>"), key="7.x")
        assert refused == {}
        assert host.delivered == {"<q1@example.com>": 1}


def test_the_row_is_marked_sent_before_quit_is_even_said(make_config, harness_factory):
    seen_at_quit: list[list[str]] = []
    engine = None

    def look() -> None:  # the smarthost, at QUIT, asks the database what we recorded
        with engine.connect() as conn:
            seen_at_quit.append(list(conn.execute(select(Outbox.status).order_by(Outbox.id)).scalars()))

    with Smarthost(quit_reply=QUIT_421, on_quit=look) as host:
        config = smarthost_config(make_config, host.address)
        engine = create_engine(load_config(config).db_url)
        h = harness_factory(config)
        deliver_new_tickets(h, 3)
        assert sender.deliver_due(h.runtime.sessions, h.runtime.services) == 3
    engine.dispose()
    assert seen_at_quit == [["sent", "pending", "pending"], ["sent", "sent", "pending"], ["sent"] * 3]


class RaisesAfterDelivery:
    """A sender that delivers, says so, then fails on its way out (as a QUIT that breaks would)."""

    def __init__(self) -> None:
        self.deliveries = 0

    def send(self, mail_from, rcpt_tos, raw, key="", on_delivered=None):
        self.deliveries += 1
        on_delivered({})
        raise TemporaryDeliveryError("421 4.3.2 closing after the delivery", 421)


def test_a_row_whose_delivery_raised_after_it_was_delivered_is_not_retried(make_config, harness_factory, clock):
    h = harness_factory(make_config())
    deliver_new_tickets(h, 2)
    flaky = RaisesAfterDelivery()
    runtime = h.runtime
    assert sender.deliver_due(runtime.sessions, runtime.services, flaky) == 2
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        assert sender.deliver_due(runtime.sessions, runtime.services, flaky) == 0
    assert flaky.deliveries == 2
    assert [(r.status, r.attempts, r.last_error) for r in outbox_rows(h)] == [("sent", 1, "")] * 2


def test_a_real_daemon_behind_a_smarthost_answering_quit_421_delivers_each_row_once(make_config, daemon_factory):
    with Smarthost(quit_reply=QUIT_421) as host:
        config = smarthost_config(make_config, host.address, sweep_interval="1s", retry_base="1s", retry_max="1s")
        daemon = daemon_factory(config)
        for i in range(20):
            send(
                daemon.port,
                make_mail(subject=f"Question {i}", sender=f"Customer {i} <{customer(i)}>"),
                mail_from=customer(i),
            )
        wait_for(
            lambda: count(config, Outbox, Outbox.status == "sent") == 20,
            timeout=120,
            message="twenty acknowledgments marked sent",
        )
        assert count(config, Outbox) == 20
        assert host.deliveries() == 20 and set(host.delivered.values()) == {1}
        assert query(config, select(func.max(Outbox.attempts))) == [(1,)]


class Crash(BaseException):
    """The process dies: nothing after this line runs, not even the sender's own error handling."""


class CrashAfterWrite:
    """The real maildir sender, then a crash before the sweep can commit the row as sent."""

    def __init__(self, inner: transports.MaildirSender) -> None:
        self.inner = inner

    def send(self, mail_from, rcpt_tos, raw, key="", on_delivered=None):
        self.inner.send(mail_from, rcpt_tos, raw, key=key)
        raise Crash


def maildir_files(h) -> list[str]:
    sent = h.runtime.config.sent_dir
    return sorted(os.listdir(sent / "new")) + sorted(os.listdir(sent / "cur"))


def test_a_crash_between_the_maildir_write_and_the_commit_makes_no_second_copy(make_config, harness_factory, clock):
    h = harness_factory(make_config())
    deliver_new_tickets(h, 3)
    runtime = h.runtime
    with pytest.raises(Crash):
        sender.deliver_due(runtime.sessions, runtime.services, CrashAfterWrite(runtime.services.sender))
    first = outbox_rows(h)[0]
    assert first.status == "pending" and first.claimed_until is not None, "the commit never happened"
    assert len(maildir_files(h)) == 1

    clock.advance(sender.lease_seconds(runtime.config) + 1)  # the claim of the dead process runs out
    assert sender.deliver_due(runtime.sessions, runtime.services) == 3
    assert {r.status for r in outbox_rows(h)} == {"sent"}
    assert maildir_files(h) == sorted(transports.delivery_key(r.id, r.message_id) for r in outbox_rows(h))
    ids = [m["Message-ID"] for m in sent_mails(runtime.config.data_dir)]
    assert len(ids) == 3 and len(set(ids)) == 3


def test_a_claim_stranded_by_a_crash_holds_seconds_for_the_maildir_and_a_conversation_for_a_smarthost(
    make_config, harness_factory, clock
):
    h = harness_factory(make_config())
    deliver_new_tickets(h, 1)
    runtime = h.runtime
    with pytest.raises(Crash):
        sender.deliver_due(runtime.sessions, runtime.services, CrashAfterWrite(runtime.services.sender))
    clock.advance(5)
    assert sender.deliver_due(runtime.sessions, runtime.services) == 0, "the claim still holds"
    clock.advance(11)
    assert sender.deliver_due(runtime.sessions, runtime.services) == 1, "a killed process delays a mail by seconds"
    assert len(maildir_files(h)) == 1
    smarthost = load_config(make_config(outbound={"smarthost": "127.0.0.1:2525", "timeout": "30s"}))
    assert sender.lease_seconds(smarthost) >= 90, "never shorter than three SMTP timeouts"


def test_a_row_whose_file_a_mail_client_has_read_is_not_written_again(make_config, harness_factory):
    h = harness_factory(make_config())
    deliver_new_tickets(h, 1)
    runtime = h.runtime
    assert sender.deliver_due(runtime.sessions, runtime.services) == 1
    sent = runtime.config.sent_dir
    [name] = os.listdir(sent / "new")
    os.rename(sent / "new" / name, sent / "cur" / f"{name}:2,S")  # read by a mail client
    with h.session() as session, session.begin():  # as if the commit marking it sent had been lost
        session.execute(update(Outbox).values(status="pending", claimed_until=None))
    assert sender.deliver_due(runtime.sessions, runtime.services) == 1
    assert maildir_files(h) == [f"{name}:2,S"]
    assert os.listdir(sent / "tmp") == []


def crashing_at_record(sessions):
    """The session factory of a process that dies as it opens the round's record (its third transaction)."""
    opened = []

    def factory():
        opened.append(1)
        if len(opened) == 3:  # the lookup, the claim, then the record of what was written
            raise Crash
        return sessions()

    return factory


def test_a_crash_before_a_maildir_rounds_record_makes_no_second_copy(make_config, harness_factory, clock):
    h = harness_factory(make_config())
    deliver_new_tickets(h, 3)
    runtime = h.runtime
    assert runtime.services.sender.once_per_key, "the maildir claims and records a round at once"
    with pytest.raises(Crash):
        sender.deliver_due(crashing_at_record(runtime.sessions), runtime.services)
    assert len(maildir_files(h)) == 3, "every file of the round was written"
    assert {(r.status, r.claimed_until is not None) for r in outbox_rows(h)} == {("pending", True)}

    assert sender.deliver_due(runtime.sessions, runtime.services) == 0, "claimed by the dead process: not yet"
    clock.advance(sender.lease_seconds(runtime.config) + 1)
    assert sender.deliver_due(runtime.sessions, runtime.services) == 3
    assert {(r.status, r.attempts) for r in outbox_rows(h)} == {("sent", 1)}
    ids = [m["Message-ID"] for m in sent_mails(runtime.config.data_dir)]
    assert len(ids) == 3 and len(set(ids)) == 3
