"""Spam: upstream SpamAssassin and rspamd headers, sender lists, rules, and the agents' #spam / #notspam."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailgate.config import load_config
from mailgate.mail.parse import parse
from mailgate.routing import spam
from mailgate.routing.spam import SpamSettings, upstream_verdict
from mailgate.storage.models import Event, Outbox, SenderList, Ticket
from tests.helpers import make_mail
from tests.rulekit import last_ticket, write_rules

# An agent who works the default queue and reviews the spam queue: a notification to them is a failure.
AGENTS = [{"address": "bob@example.com", "name": "Bob", "queues": ["support", "spam"]}]


def verdict(headers, **settings):
    return upstream_verdict(parse(make_mail(headers=headers)), SpamSettings(**settings))


@pytest.mark.parametrize(
    "headers, spam, score",
    [
        ({"X-Spam-Flag": "YES"}, True, None),
        ({"X-Spam-Status": "Yes, score=7.1 required=5.0 tests=BAYES_99,URIBL_BLACK autolearn=no"}, True, 7.1),
        ({"X-Spam-Status": "No, score=1.3 required=5.0 tests=none"}, False, 1.3),
        ({"X-Spam-Score": "5.0", "X-Spam-Flag": "NO"}, True, 5.0),
        ({"X-Spam-Score": "4.9"}, False, 4.9),
        ({"X-Spamd-Result": "default: True [16.20 / 15.00]; BAYES_SPAM(5.10)[99.99%]"}, True, 16.2),
        ({"X-Spamd-Result": "default: False [3.40 / 15.00]; MIME_GOOD(-0.10)[text/plain]"}, False, 3.4),
        ({"X-Spam": "Yes"}, True, None),
        ({}, None, None),
    ],
)
def test_upstream_headers_give_a_verdict_and_a_score(headers, spam, score):
    found = verdict(headers)
    assert (found.spam, found.score) == (spam, score)


def test_the_configured_threshold_decides_when_there_is_a_score():
    sa = {"X-Spam-Status": "Yes, score=7.1 required=5.0"}
    assert verdict(sa, threshold=8.0).spam is False
    assert verdict({"X-Spamd-Result": "default: False [6.5 / 15.00]"}, rspamd_threshold=6.0).spam is True
    assert verdict(sa, upstream=False).spam is None


def test_the_topmost_header_is_the_filters_not_one_the_sender_wrote_below_it():
    raw = make_mail(headers={"X-Spam-Status": "No, score=0.1 required=5.0"})
    forged_below = raw.replace(b"\r\n\r\n", b"\r\nX-Spam-Status: Yes, score=99 required=5.0\r\n\r\n", 1)
    assert upstream_verdict(parse(forged_below), SpamSettings()).spam is False


@pytest.fixture
def spam_harness(tmp_path, make_config, harness_factory):
    def _make(rules: str = "", **spam_section):
        directory = write_rules(tmp_path / "rules", **({"10-spam": rules} if rules else {}))
        return harness_factory(
            make_config(rules={"dir": str(directory)}, agents=AGENTS, queues=[{"name": "vip"}], spam=spam_section)
        )

    return _make


def outbox_rows(h, number):
    with h.session() as s:
        ticket = s.scalars(select(Ticket).where(Ticket.number == number)).one()
        return s.scalar(select(func.count(Outbox.id)).where(Outbox.ticket_id == ticket.id))


def spam_event(h, number):
    with h.session() as s:
        ticket = s.scalars(select(Ticket).where(Ticket.number == number)).one()
        return s.scalars(select(Event).where(Event.ticket_id == ticket.id, Event.kind == "ticket.spam")).one().detail


SPAM_MAILS = {
    "SpamAssassin": ({"headers": {"X-Spam-Status": "Yes, score=8.2 required=5.0 tests=BAYES_99"}}, "SpamAssassin"),
    "rspamd": ({"headers": {"X-Spamd-Result": "default: True [17.00 / 15.00]; BAYES_SPAM(5.10)"}}, "rspamd"),
    "blocklist in the config": ({"sender": "x@junk.example"}, "@junk.example is in [spam] block"),
}


@pytest.mark.parametrize("mail, reason", SPAM_MAILS.values(), ids=SPAM_MAILS.keys())
def test_spam_goes_to_the_spam_queue_with_no_acknowledgment_and_no_notification(spam_harness, mail, reason):
    h = spam_harness(block=["@junk.example"])
    h.deliver(make_mail(subject="A real question"))
    assert outbox_rows(h, 1) == 2, "a normal ticket is acknowledged and Bob is notified"
    h.deliver(make_mail(subject="Cheap watches", **mail))
    ticket = last_ticket(h)
    assert (ticket["queue"], ticket["spam"], ticket["assignee"]) == ("spam", True, None)
    assert outbox_rows(h, 2) == 0
    event = spam_event(h, 2)
    assert reason in event["reason"]
    assert event["from_queue"] == "support"


def test_a_sender_blocked_in_the_database_is_spam_and_allowed_is_not(spam_harness, clock):
    h = spam_harness()
    with h.session() as s, s.begin():
        s.add(SenderList(entry="@junk.example", verdict="block", actor="bob@example.com", created_at=clock.now()))
        s.add(SenderList(entry="friend@junk.example", verdict="allow", actor="bob@example.com", created_at=clock.now()))
    h.deliver(make_mail(sender="x@junk.example"))
    assert last_ticket(h)["spam"] is True
    h.deliver(make_mail(sender="friend@junk.example", headers={"X-Spam-Flag": "YES"}))
    assert (last_ticket(h)["spam"], last_ticket(h)["queue"]) == (False, "support")


def test_sender_lists_beat_rules_and_rules_beat_upstream_headers(spam_harness):
    h = spam_harness(
        """
        [[rule]]
        name = "vip-never-spam"
        queue = "vip"
        spam = false
        match = { from_domain = "vip.example" }
        """,
        block=["boss@vip.example"],
    )
    h.deliver(make_mail(sender="ann@vip.example", headers={"X-Spam-Status": "Yes, score=9.0 required=5.0"}))
    assert (last_ticket(h)["queue"], last_ticket(h)["spam"]) == ("vip", False)
    h.deliver(make_mail(sender="boss@vip.example"))
    assert (last_ticket(h)["queue"], last_ticket(h)["spam"]) == ("spam", True)
    assert spam_event(h, 2)["from_queue"] == "vip"


def test_the_spam_queue_is_configurable(spam_harness):
    h = spam_harness(queue="junk", threshold=3.0)
    h.deliver(make_mail(headers={"X-Spam-Score": "3.2"}))
    assert (last_ticket(h)["queue"], last_ticket(h)["spam"]) == ("junk", True)


def test_a_reply_to_a_spam_ticket_is_not_answered_either(spam_harness):
    h = spam_harness()
    h.deliver(make_mail(subject="Offer", headers={"X-Spam-Flag": "YES"}))
    h.deliver(make_mail(subject="Re: Offer [#1]"))
    assert (last_ticket(h)["messages"], outbox_rows(h, 1)) == (2, 0)


def test_bad_spam_settings_stop_the_start(make_config):
    from mailgate.errors import ConfigError

    for section, wanted in (
        ({"threshold": "high"}, "spam.threshold: expected a number"),
        ({"block": ["nobody"]}, "spam.block: expected addresses or @domain"),
        ({"allow": ["a@b.example"], "block": ["a@b.example"]}, "in both allow and block"),
        ({"treshold": 5}, "spam.treshold: unknown key"),
    ):
        with pytest.raises(ConfigError, match=wanted):
            spam.parse_settings(load_config(make_config(spam=section)))


def ticket(session, number):
    return session.scalars(select(Ticket).where(Ticket.number == number)).one()


def test_mark_spam_moves_the_ticket_and_can_block_the_sender(spam_harness):
    h = spam_harness()
    h.deliver(make_mail(sender="pest@nuisance.example", to="support@example.com"))
    services = h.runtime.services
    with h.session() as s, s.begin():
        spam.mark_spam(s, services, ticket(s, 1), "bob@example.com", add_to_blocklist=True)
    with h.session() as s:
        t = ticket(s, 1)
        assert (t.queue, t.spam) == ("spam", True)
        assert s.get(SenderList, "pest@nuisance.example").verdict == "block"
        event = s.scalars(select(Event).where(Event.kind == "ticket.spam")).one()
        assert (event.actor, event.detail["from_queue"], event.detail["blocklisted"]) == (
            "bob@example.com",
            "support",
            "pest@nuisance.example",
        )
    h.deliver(make_mail(sender="pest@nuisance.example", subject="again"))
    assert (last_ticket(h)["queue"], last_ticket(h)["spam"]) == ("spam", True)


def test_mark_not_spam_moves_it_back_to_where_the_rules_sent_it_and_can_allow_the_sender(spam_harness):
    h = spam_harness("""
        [[rule]]
        name = "vip"
        queue = "vip"
        match = { from_domain = "vip.example" }
        """)
    flagged = {"X-Spam-Status": "Yes, score=6.0 required=5.0"}
    h.deliver(make_mail(sender="ann@vip.example", headers=flagged))
    assert last_ticket(h)["queue"] == "spam"
    with h.session() as s, s.begin():
        spam.mark_not_spam(s, h.runtime.services, ticket(s, 1), "bob@example.com", add_to_allowlist=True)
    with h.session() as s:
        t = ticket(s, 1)
        assert (t.queue, t.spam) == ("vip", False)
        assert s.get(SenderList, "ann@vip.example").verdict == "allow"
        event = s.scalars(select(Event).where(Event.kind == "ticket.notspam")).one()
        assert (event.detail["from_queue"], event.detail["queue"]) == ("spam", "vip")
    h.deliver(make_mail(sender="ann@vip.example", headers=flagged, subject="another"))
    assert (last_ticket(h)["queue"], last_ticket(h)["spam"]) == ("vip", False)


def test_mark_not_spam_after_mark_spam_restores_the_queue_and_an_allow_replaces_a_block(spam_harness):
    h = spam_harness()
    h.deliver(make_mail(sender="pest@nuisance.example"))
    services = h.runtime.services
    with h.session() as s, s.begin():
        spam.mark_spam(s, services, ticket(s, 1), "bob@example.com", add_to_blocklist=True)
    with h.session() as s, s.begin():
        spam.mark_not_spam(s, services, ticket(s, 1), "carol@example.com", add_to_allowlist=True)
    with h.session() as s:
        assert (ticket(s, 1).queue, ticket(s, 1).spam) == ("support", False)
        row = s.get(SenderList, "pest@nuisance.example")
        assert (row.verdict, row.actor) == ("allow", "carol@example.com")


def test_entries_read_already_decide_without_a_read_and_the_address_comes_before_its_domain():
    settings = SpamSettings(block=["@spam.example"])
    listed = {"ann@spam.example": "allow", "@spam.example": "block"}
    assert spam.list_verdict(None, "Ann@Spam.example", settings, listed=listed) == (
        "allow",
        "ann@spam.example is on the allow list",
    )
    assert spam.list_verdict(None, "bob@spam.example", settings, listed={}) == (
        "block",
        "@spam.example is in [spam] block",
    )
    assert spam.listing_read("not an address") is None


def test_on_postgresql_the_sender_lists_are_read_with_the_dedupe_lookup(spam_harness, monkeypatch):
    from mailgate.storage import direct

    h = spam_harness()
    if h.runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no round trips: the route step reads the lists itself, for a new ticket only")
    with h.session() as session, session.begin():
        spam.set_sender(session, "mallory@spam.example", "block", "bob@example.com", h.runtime.services)
    trips: list[list[str]] = []
    real = direct._run

    def run(conn, items, **kw):
        trips.append([plan.sql for plan, _parameters, _many in items])
        return real(conn, items, **kw)

    monkeypatch.setattr(direct, "_run", run)
    h.deliver(make_mail(sender="mallory@spam.example"))

    [reading_lists] = [trip for trip in trips if any("FROM sender_lists" in s for s in trip)]
    assert any("messages.dedupe_key" in s for s in reading_lists), "one round trip with the dedupe lookup"
    assert (last_ticket(h)["queue"], last_ticket(h)["spam"]) == ("spam", True)
