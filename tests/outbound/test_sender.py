"""Delivery: a real SMTP smarthost that refuses, then accepts; backoff on the clock; exactly once;
a 5xx fails the mail for good and the ticket shows it."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import timedelta

from aiosmtpd.smtp import AuthResult
from sqlalchemy import event, select

from mailgate.outbound import sender, transports
from mailgate.storage.models import Event, Outbox, Ticket
from tests.helpers import mailgate, make_mail
from tests.outbound_helpers import Sink, events, flush, free_port, outbox_rows

AGENT = [{"address": "bob@example.com", "name": "Bob", "queues": ["support"]}]


def smarthost_harness(make_config, harness_factory, address, **outbound):
    return harness_factory(
        make_config(
            agents=AGENT,
            outbound={"smarthost": address, "retry_base": "1m", "retry_max": "10m", "timeout": "5s", **outbound},
        )
    )


def test_a_refusing_smarthost_gets_every_mail_exactly_once_after_it_recovers_with_backoff(
    make_config, harness_factory, clock
):
    with Sink() as sink:
        h = smarthost_harness(make_config, harness_factory, sink.address)
        sink.handler.script.extend(["451 4.3.0 try later"] * 4)  # two rounds of two mails
        h.deliver(make_mail(subject="Printer on fire"))  # acknowledgment + notification
        assert flush(h) == 0 and sink.handler.attempts == 2
        rows = outbox_rows(h)
        assert [(r.status, r.attempts) for r in rows] == [("pending", 1), ("pending", 1)]
        assert all(r.next_attempt_at == clock.now() + timedelta(minutes=1) for r in rows)
        assert "451" in rows[0].last_error

        assert flush(h) == 0 and sink.handler.attempts == 2, "not before its time"
        clock.advance(59)
        assert flush(h) == 0 and sink.handler.attempts == 2
        clock.advance(1)
        assert flush(h) == 0 and sink.handler.attempts == 4, "the first retry after retry_base"
        assert all(r.next_attempt_at == clock.now() + timedelta(minutes=2) for r in outbox_rows(h)), "then doubled"
        clock.advance(119)
        assert flush(h) == 0 and sink.handler.attempts == 4
        clock.advance(1)
        assert flush(h) == 2, "the smarthost takes them now"
        for _ in range(5):
            clock.advance(timedelta(hours=1))
            assert flush(h) == 0
        assert sink.handler.attempts == 6
        received = sink.handler.messages()
        assert sorted(m["To"].addresses[0].addr_spec for m in received) == ["alice@customer.example", "bob@example.com"]
        assert len({m["Message-ID"] for m in received}) == 2
        assert [(r.status, r.attempts, r.last_error) for r in outbox_rows(h)] == [("sent", 3, "")] * 2
        envelope_senders = [mail_from for mail_from, _, _ in sink.handler.accepted]
        assert all(s.startswith("support+bounce-") for s in envelope_senders), "VERP envelope sender"


def test_a_smarthost_that_is_down_then_up(make_config, harness_factory, clock):
    port = free_port()
    h = smarthost_harness(make_config, harness_factory, f"127.0.0.1:{port}")
    h.deliver(make_mail())
    assert flush(h) == 0
    assert "ConnectionRefusedError" in outbox_rows(h)[0].last_error
    with Sink(port=port) as sink:
        clock.advance(60)
        assert flush(h) == 2
        assert flush(h) == 0
        assert len(sink.handler.accepted) == 2


def test_a_550_fails_the_mail_for_good_and_the_ticket_shows_it(make_config, harness_factory, clock):
    with Sink() as sink:
        h = smarthost_harness(make_config, harness_factory, sink.address)
        sink.handler.script.extend(["550 5.1.1 no such user", "250 OK"])
        h.deliver(make_mail())
        assert flush(h) == 1
        failed = [r for r in outbox_rows(h) if r.status == "failed"]
        assert len(failed) == 1 and failed[0].last_error.startswith("550")
        clock.advance(timedelta(days=1))
        assert flush(h) == 0 and sink.handler.attempts == 2, "a permanent failure is not retried"
        with h.session() as s:
            ticket = s.scalar(select(Ticket))
            [event] = s.scalars(select(Event).where(Event.ticket_id == ticket.id, Event.kind == "mail.failed"))
        assert event.detail["code"] == 550 and event.detail["outbox"] == failed[0].id

        config = h.runtime.config.path
        listed = mailgate(config, "outbox", "list", "--failed", "--format", "json")
        assert listed.returncode == 0
        [shown] = json.loads(listed.stdout)
        assert (shown["id"], shown["ticket"], shown["status"]) == (failed[0].id, 1, "failed")
        assert shown["error"].startswith("550 5.1.1")
        assert b"550 5.1.1" in mailgate(config, "outbox", "list", "--failed").stdout
        assert mailgate(config, "outbox", "retry", "--all").returncode == 0
        assert [r.status for r in outbox_rows(h) if r.id == failed[0].id] == ["pending"]


def test_a_mail_that_cannot_be_delivered_in_max_age_fails(make_config, harness_factory, clock):
    h = smarthost_harness(make_config, harness_factory, f"127.0.0.1:{free_port()}", max_age="30m")
    h.deliver(make_mail())
    for _ in range(10):
        clock.advance(timedelta(minutes=10))
        flush(h)
    rows = outbox_rows(h)
    assert {r.status for r in rows} == {"failed"}
    assert "not delivered after 1800s" in rows[0].last_error
    assert len(events(h, "mail.failed")) == 2


def test_auth_from_config_and_a_wrong_password_keeps_the_mail(make_config, harness_factory, clock):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) in ((b"mailgate", b"s3cret"), ("mailgate", "s3cret"))
        return AuthResult(success=ok, handled=False)

    with Sink(authenticator=authenticator, auth_require_tls=False) as sink:
        h = smarthost_harness(make_config, harness_factory, sink.address, username="mailgate", password="wrong")
        h.deliver(make_mail())
        assert flush(h) == 0
        assert "refused our login" in outbox_rows(h)[0].last_error
        assert {r.status for r in outbox_rows(h)} == {"pending"}, "a login problem is ours: keep the mail"
        fixed = dataclasses.replace(h.runtime.config.outbound, password="s3cret")  # the admin fixes the password
        h.runtime.services.sender = transports.SmtpSender(fixed, "support.example.com")
        clock.advance(60)
        assert flush(h) == 2 and len(sink.handler.accepted) == 2


def test_starttls_required_but_not_offered_never_falls_back_to_plain_text(make_config, harness_factory):
    with Sink() as sink:
        h = smarthost_harness(make_config, harness_factory, sink.address, starttls=True)
        h.deliver(make_mail())
        assert flush(h) == 0
        assert sink.handler.attempts == 0
        assert "STARTTLS" in outbox_rows(h)[0].last_error


class Recorder:
    """The Sender seam: records instead of sending; can hold a delivery until told."""

    def __init__(self, refuse: dict[str, str] | None = None, hold: threading.Event | None = None) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []
        self.refuse = refuse or {}
        self.hold = hold
        self.started = threading.Event()

    def send(self, mail_from, rcpt_tos, raw, key="", on_delivered=None):
        self.started.set()
        if self.hold is not None:
            assert self.hold.wait(30)
        self.sent.append((mail_from, list(rcpt_tos), raw))
        return dict(self.refuse)


def test_two_sweeps_at_once_send_each_mail_once(make_config, harness_factory):
    h = harness_factory(make_config(agents=AGENT))
    h.deliver(make_mail())
    release = threading.Event()
    slow, fast = Recorder(hold=release), Recorder()
    runtime = h.runtime
    worker = threading.Thread(target=sender.deliver_due, args=(runtime.sessions, runtime.services, slow, 1))
    worker.start()
    assert slow.started.wait(30)
    second = sender.deliver_due(runtime.sessions, runtime.services, fast)
    release.set()
    worker.join(30)
    assert second == 1, "the other sweep takes only what is not claimed"
    assert len(slow.sent) + len(fast.sent) == 2
    assert {r.status for r in outbox_rows(h)} == {"sent"}


def test_recipients_refused_while_others_were_accepted_are_recorded(make_config, harness_factory):
    h = harness_factory(make_config())
    h.deliver(make_mail())
    recorder = Recorder(refuse={"alice@customer.example": "550 5.1.1 gone"})
    assert sender.deliver_due(h.runtime.sessions, h.runtime.services, recorder) == 1
    [event] = events(h, "mail.refused")
    assert event.detail["refused"] == {"alice@customer.example": "550 5.1.1 gone"}
    assert outbox_rows(h)[0].last_error.startswith("refused: alice@customer.example")


def test_backoff_doubles_up_to_its_ceiling():
    assert [sender.backoff(n, 60, 600) for n in range(1, 7)] == [60, 120, 240, 480, 600, 600]


def test_a_delivered_mail_costs_the_sweep_two_statements_after_its_lookup(make_config, harness_factory):
    """Its claim, which reads the mail back, and its end, which reads what the log line names."""
    h = harness_factory(make_config())
    h.deliver(make_mail())
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            statements.append(statement)

    event.listen(h.runtime.engine, "before_cursor_execute", seen)
    try:
        assert sender.deliver_due(h.runtime.sessions, h.runtime.services, Recorder()) == 1
    finally:
        event.remove(h.runtime.engine, "before_cursor_execute", seen)
    lookup, claim, end = statements
    assert lookup.lstrip().upper().startswith("SELECT") and "UPDATE" in claim.upper() and "UPDATE" in end.upper()
    [row] = outbox_rows(h)
    assert (row.status, row.attempts, row.claimed_until, row.last_error) == ("sent", 1, None, "")
    assert row.sent_at == h.runtime.services.clock.now()


class FullDiskFor(transports.MaildirSender):
    """The maildir, with no room left for the mails to one address."""

    def __init__(self, directory, address: str) -> None:
        super().__init__(directory)
        self.address = address

    def send(self, mail_from, rcpt_tos, raw, key="", on_delivered=None):
        if self.address in rcpt_tos:
            raise transports.TemporaryDeliveryError("cannot write: No space left on device")
        return super().send(mail_from, rcpt_tos, raw, key=key, on_delivered=on_delivered)


def test_a_maildir_round_is_claimed_in_one_statement_and_recorded_in_one_more(make_config, harness_factory, clock):
    h = harness_factory(make_config())
    for i in range(3):
        h.deliver(make_mail(subject=f"Question {i}", sender=f"C{i} <c{i}@customer.example>"), mail_from=f"c{i}@x")
    maildir = FullDiskFor(h.runtime.config.sent_dir, "c1@customer.example")
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            statements.append(statement.lstrip().split()[0].upper())

    event.listen(h.runtime.engine, "before_cursor_execute", seen)
    try:
        assert sender.deliver_due(h.runtime.sessions, h.runtime.services, maildir) == 2
    finally:
        event.remove(h.runtime.engine, "before_cursor_execute", seen)
    assert statements[:2] == ["SELECT", "UPDATE"] and statements[-1] == "UPDATE"
    assert len(statements) == 3 + 2, "lookup, claim, the retry of the one that failed (read, update), record"
    rows = outbox_rows(h)
    assert [(r.status, r.attempts, r.claimed_until) for r in rows] == [
        ("sent", 1, None),
        ("pending", 1, None),
        ("sent", 1, None),
    ]
    assert "No space left" in rows[1].last_error and rows[1].next_attempt_at > clock.now()
    clock.advance(timedelta(hours=1))
    assert sender.deliver_due(h.runtime.sessions, h.runtime.services) == 1, "the room came back"
    assert {r.status for r in outbox_rows(h)} == {"sent"}


class OncePerKeyRecorder(Recorder):
    once_per_key = True


def test_a_round_delivers_the_longest_due_first(make_config, harness_factory, clock):
    h = harness_factory(make_config())
    for i in range(3):
        h.deliver(make_mail(subject=f"Question {i}", sender=f"C{i} <c{i}@customer.example>"), mail_from=f"c{i}@x")
    with h.session() as session, session.begin():  # the last row has waited longest (a retry come due)
        last = session.scalars(select(Outbox).order_by(Outbox.id.desc())).first()
        last.next_attempt_at = clock.now() - timedelta(hours=1)
    recorder = OncePerKeyRecorder()
    assert sender.deliver_due(h.runtime.sessions, h.runtime.services, recorder) == 3
    assert [rcpt for _, [rcpt], _ in recorder.sent] == [
        "c2@customer.example",
        "c0@customer.example",
        "c1@customer.example",
    ]
