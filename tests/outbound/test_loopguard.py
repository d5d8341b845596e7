"""No mail loops: automatic, bulk and list mail, bounces and out-of-office replies get no answer;
rate limits per sender, per ticket and system-wide; every held-back mail is recorded with its reason."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from mailgate.context import Envelope
from mailgate.mail.parse import ParsedMail
from mailgate.outbound.loopguard import Counts, Incoming, Limits, automatic_reason, incoming_from, may_auto_reply
from mailgate.storage.models import Message, Ticket
from tests.helpers import make_mail
from tests.outbound_helpers import events, flush, other_database, outbox_rows, sent_mails


def incoming(
    headers=None,
    subject="Printer on fire",
    sender="alice@customer.example",
    return_path: str | None = "alice@customer.example",
):
    return Incoming(
        sender=sender,
        return_path=return_path,
        subject=subject,
        headers={k.lower(): [v] for k, v in (headers or {}).items()},
    )


NO_COUNTS, DEFAULT_LIMITS = Counts(), Limits()


def decide(mail, counts=NO_COUNTS, limits=DEFAULT_LIMITS, recipients=("alice@customer.example",)):
    return may_auto_reply(
        recipients=list(recipients),
        incoming=mail,
        counts=counts,
        limits=limits,
        is_ours=lambda a: a.endswith("@example.com"),
    )


LOOP_HEADERS = {
    "Auto-Submitted: auto-replied": {"Auto-Submitted": "auto-replied"},
    "Auto-Submitted: auto-generated": {"Auto-Submitted": "auto-generated"},
    "Auto-Submitted with a comment": {"Auto-Submitted": "auto-notified; owner-email=x@y"},
    "Precedence: bulk": {"Precedence": "bulk"},
    "Precedence: junk": {"Precedence": "junk"},
    "Precedence: list": {"Precedence": "List"},
    "List-Id": {"List-Id": "<users.lists.example>"},
    "List-Unsubscribe": {"List-Unsubscribe": "<mailto:leave@lists.example>"},
    "X-Auto-Response-Suppress": {"X-Auto-Response-Suppress": "OOF, AutoReply"},
    "X-Autoreply": {"X-Autoreply": "yes"},
    "X-Loop": {"X-Loop": "helpdesk@elsewhere.example"},
}


@pytest.mark.parametrize("headers", LOOP_HEADERS.values(), ids=LOOP_HEADERS.keys())
def test_automatic_and_list_mail_gets_no_auto_reply(headers):
    allowed, reason = decide(incoming(headers))
    assert not allowed and reason


def test_auto_submitted_no_is_a_person():
    assert decide(incoming({"Auto-Submitted": "no"})) == (True, "")
    assert decide(incoming({"Precedence": "first-class"})) == (True, "")


@pytest.mark.parametrize(
    "return_path, sender, expected",
    [
        ("", "alice@customer.example", "empty return path"),
        ("MAILER-DAEMON@mx.customer.example", "alice@customer.example", "MAILER-DAEMON"),
        ("alice@customer.example", "postmaster@customer.example", "postmaster"),
        ("alice@customer.example", "mailer-daemon@customer.example", "MAILER-DAEMON"),
    ],
)
def test_bounces_get_no_auto_reply(return_path, sender, expected):
    allowed, reason = decide(incoming(return_path=return_path, sender=sender), recipients=(sender,))
    assert not allowed and expected in reason


def test_an_unknown_return_path_is_not_a_bounce():
    assert decide(incoming(return_path=None)) == (True, "")


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Printer on fire",
        "Automatic reply: Printer",
        "Autoreply",
        "Abwesenheitsnotiz: Drucker",
        "Réponse automatique : Imprimante",
        "Автоответ: Принтер",
        "Out of Office AutoReply: question",
    ],
)
def test_out_of_office_subjects_get_no_auto_reply(subject):
    allowed, reason = decide(incoming(subject=subject))
    assert not allowed and "out-of-office" in reason


@pytest.mark.parametrize("subject", ["Vacation rental question", "Absence of invoice", "Automatic replies annoy me"])
def test_ordinary_subjects_are_not_mistaken_for_out_of_office(subject):
    assert automatic_reason(incoming(subject=subject)) is None


def test_our_own_addresses_get_no_auto_reply():
    allowed, reason = decide(
        incoming(sender="help@example.com", return_path="help@example.com"), recipients=("help@example.com",)
    )
    assert not allowed and "our own" in reason


def test_limits_per_sender_per_ticket_and_system_wide():
    limits = Limits(per_sender_per_hour=3, per_ticket_limit=5, system_limit=10)
    assert decide(incoming(), Counts(to_sender_last_hour=2), limits)[0]
    assert "max_autoreplies_per_sender_per_hour = 3" in decide(incoming(), Counts(to_sender_last_hour=3), limits)[1]
    assert "per_ticket_limit = 5" in decide(incoming(), Counts(ticket_in_window=5), limits)[1]
    assert decide(incoming(), Counts(system_in_window=10), limits)[1].startswith("circuit breaker")
    assert "suppressed" in decide(incoming(), Counts(suppressed=("alice@customer.example",)), limits)[1]


def test_a_notification_to_an_agent_is_not_an_auto_reply_to_the_sender():
    """The header rules guard the sender of the mail; an agent still hears of an automatic mail's ticket."""
    mail = incoming({"Precedence": "bulk"})
    assert decide(mail, recipients=("bob@agents.example",)) == (True, "")


# --- end to end, in process -----------------------------------------------------------------------------------


def held_reasons(h):
    return [e.detail["reason"] for e in events(h, "mail.held")]


@pytest.mark.parametrize("headers", LOOP_HEADERS.values(), ids=LOOP_HEADERS.keys())
def test_each_loop_header_stores_the_mail_sends_nothing_and_records_why(harness_factory, make_config, headers):
    # An auto-reply that threads to nothing opens no ticket by default (tests/test_reading_automatic.py);
    # with tickets for them, the loop guard still keeps every one unanswered.
    harness = harness_factory(make_config(reading={"unthreaded_automatic": "ticket"}))
    harness.deliver(make_mail(headers=headers))
    with harness.session() as s:
        assert len(s.scalars(select(Message)).all()) == 1, "the mail itself is stored in its ticket"
    assert flush(harness) == 0
    assert sent_mails(harness.runtime.config.data_dir) == []
    [row] = outbox_rows(harness)
    assert row.status == "held" and row.kind == "acknowledgment"
    [reason] = held_reasons(harness)
    assert reason == row.last_error and reason


def test_an_out_of_office_reply_and_a_null_sender_get_no_acknowledgment(harness):
    """(Bounces are never tickets at all: see test_bounces.py.)"""
    harness.deliver(make_mail(subject="Out of Office: your message"))
    harness.deliver(make_mail(subject="a null sender, as RFC 3834 autoresponders use"), mail_from="")
    assert flush(harness) == 0
    with harness.session() as s:
        assert len(s.scalars(select(Ticket)).all()) == 2
    reasons = held_reasons(harness)
    assert "out-of-office" in reasons[0] and "empty return path" in reasons[1]


def test_a_mail_from_our_own_address_gets_no_acknowledgment(harness):
    harness.deliver(make_mail(sender="Help <help@example.com>"), mail_from="help@example.com")
    assert flush(harness) == 0
    assert "our own addresses" in held_reasons(harness)[0]


def test_at_most_three_auto_replies_per_sender_per_hour(harness, clock):
    for n in range(5):
        harness.deliver(make_mail(subject=f"question {n}"))
        clock.advance(60)
    assert flush(harness) == 3
    assert [r.status for r in outbox_rows(harness)] == ["sent"] * 3 + ["held"] * 2
    assert all("rate limit" in r for r in held_reasons(harness))
    clock.advance(timedelta(hours=1))
    harness.deliver(make_mail(subject="an hour later"))
    assert flush(harness) == 1


def test_the_per_ticket_window_holds_notifications_of_a_chatty_ticket(make_config, harness_factory, clock):
    h = harness_factory(
        make_config(
            agents=[{"address": "bob@example.com", "name": "Bob", "queues": ["support"]}],
            loop={"per_ticket_limit": 3, "per_ticket_window": "1h"},
        )
    )
    h.deliver(make_mail(subject="Chatty"))  # acknowledgment + notification: 2
    for n in range(3):
        clock.advance(60)
        h.deliver(make_mail(subject=f"Re: [#1] Chatty {n}"))
    assert [r.status for r in outbox_rows(h)] == ["pending", "pending", "pending", "held", "held"]
    assert "per_ticket_limit = 3" in held_reasons(h)[0]


def test_the_circuit_breaker_stops_automatic_mail_alerts_once_and_resumes_by_itself(
    make_config, harness_factory, clock
):
    h = harness_factory(
        make_config(outbound={"admin_address": "admin@ops.example"}, loop={"system_limit": 4, "system_window": "10m"})
    )
    for n in range(7):
        h.deliver(make_mail(sender=f"c{n}@customer.example"), mail_from=f"c{n}@customer.example")
        clock.advance(10)
    rows = outbox_rows(h)
    acks = [r for r in rows if r.kind == "acknowledgment"]
    assert [r.status for r in acks] == ["pending"] * 4 + ["held"] * 3
    assert all(r.last_error.startswith("circuit breaker") for r in acks[4:])
    [alert] = [r for r in rows if r.kind == "loop_alert"]
    assert alert.rcpt_tos == ["admin@ops.example"] and alert.status == "pending"
    assert len(events(h, "loop.breaker_tripped")) == 1, "one alert, not one per held mail"
    flush(h)
    [mail] = [m for m in sent_mails(h.runtime.config.data_dir) if m["To"] == "admin@ops.example"]
    assert "circuit breaker" in mail["Subject"] and mail["Auto-Submitted"] == "auto-generated"

    clock.advance(timedelta(minutes=11))  # the window clears
    h.deliver(make_mail(sender="late@customer.example"), mail_from="late@customer.example")
    assert outbox_rows(h)[-1].status == "pending", "automatic mail resumes by itself"


def test_two_helpdesks_whose_relay_strips_every_loop_header_still_stop(
    make_config, harness_factory, tmp_path, second_db_url
):
    """Defence in depth: even when a relay removes Auto-Submitted, X-Loop and the rest, and the token and
    references too (so every mail looks like a new request), the per-sender limit ends the exchange."""
    import tomllib

    from tests.helpers import write_config

    a = harness_factory(make_config(support={"address": "help@a.example", "accept": ["help@a.example"]}))
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    b = harness_factory(
        write_config(b_dir, second_db_url, support={"address": "help@b.example", "accept": ["help@b.example"]})
    )
    assert tomllib.loads((b_dir / "config.toml").read_text())["support"]["address"] == "help@b.example"

    def relay(raw: bytes) -> bytes:
        kept = []
        header, _, body = raw.partition(b"\n\n")
        for line in header.split(b"\n"):
            name = line.split(b":", 1)[0].lower()
            if name in (
                b"auto-submitted",
                b"x-auto-response-suppress",
                b"x-loop",
                b"in-reply-to",
                b"references",
                b"return-path",
                b"delivered-to",
            ):
                continue
            kept.append(line.replace(b"[#", b"[no "))
        return b"\r\n".join(kept) + b"\r\n\r\n" + body

    a.deliver(
        make_mail(sender="help@b.example", to="help@a.example"),
        mail_from="help@b.example",
        rcpt_tos=("help@a.example",),
    )
    exchanged = 0
    relayed: dict[int, set[str]] = {id(a): set(), id(b): set()}
    for _ in range(50):
        flush(a)
        flush(b)
        moved = 0
        for source, target, address in ((a, b, "help@b.example"), (b, a, "help@a.example")):
            seen = relayed[id(source)]
            for mail in sent_mails(source.runtime.config.data_dir):
                if mail["Message-ID"] in seen:
                    continue
                seen.add(mail["Message-ID"])
                target.deliver(
                    relay(mail.as_bytes()), mail_from=mail["From"].addresses[0].addr_spec, rcpt_tos=(address,)
                )
                moved += 1
        exchanged += moved
        if not moved:
            break
    assert 2 < exchanged <= 2 * 3, "a real ping-pong, ended by max_autoreplies_per_sender_per_hour each way"
    assert any("rate limit" in r for r in held_reasons(a) + held_reasons(b))


@pytest.fixture
def second_db_url(tmp_path):
    with other_database(tmp_path, "b") as url:
        yield url


def test_a_mail_fetched_by_imap_with_an_empty_return_path_is_a_bounce_for_every_step():
    """One view of an incoming mail (loopguard.incoming_from) for the agents' step and the acknowledgment alike:
    a mail fetched from a mailbox has no envelope, so its Return-Path header is the return path."""
    mail = ParsedMail(
        from_addr="mailer@customer.example",
        subject="Delivery failure",
        headers={"return-path": ["<>"], "from": ["mailer@customer.example"]},
    )
    ctx = SimpleNamespace(mail=mail, envelope=Envelope(source="imap"))
    incoming = incoming_from(ctx)  # type: ignore[arg-type]
    assert incoming.return_path == "<>"
    assert automatic_reason(incoming) == "empty return path (a bounce)"
    over_smtp = SimpleNamespace(mail=mail, envelope=Envelope(source="smtp", mail_from="alice@customer.example"))
    assert incoming_from(over_smtp).return_path == "alice@customer.example"  # type: ignore[arg-type]
