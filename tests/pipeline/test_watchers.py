"""Watchers are bounded: one mail adds at most max_new_watchers, a ticket has at most max_watchers,
and a relayed answer goes To the customer with the watchers in Cc, never more of them than the limit."""

from __future__ import annotations

import email
from email import policy
from email.utils import getaddresses
from pathlib import Path

import pytest
from sqlalchemy import select

from mailgate.config import load_config
from mailgate.mail import addresses
from mailgate.storage.models import Event, Message, Outbox, Watcher
from tests.helpers import make_mail, wait_for
from tests.outbound_helpers import sent_mails
from tests.pipeline.test_agents import AGENTS, QUEUES, agent_reply, only, open_ticket
from tests.pipeline.test_agents_e2e import reply_to

ROOT = Path(__file__).resolve().parents[2]


def with_cc(raw: bytes, addresses: list[str]) -> bytes:
    """``raw`` with a Cc header naming ``addresses``, folded the way a mail client folds a long list."""
    head, _, rest = raw.partition(b"\r\n")
    folded = ",\r\n ".join(addresses).encode()
    return head + b"\r\nCc: " + folded + b"\r\n" + rest


def crowd(count: int) -> list[str]:
    return [f"person{i}@crowd.example" for i in range(count)]


def watchers(h) -> list[str]:
    with h.session() as s:
        return list(s.scalars(select(Watcher.address).order_by(Watcher.id)).all())


def visible(message) -> list[str]:
    """Every address a recipient sees in To and Cc."""
    return [addr for _, addr in getaddresses([*message.get_all("To", []), *message.get_all("Cc", [])])]


@pytest.fixture
def desk(make_config, harness_factory):
    return harness_factory(make_config(agents=AGENTS, queues=QUEUES))


def test_a_mail_with_20000_addresses_in_cc_adds_the_first_10_as_watchers(desk):
    desk.deliver(with_cc(make_mail(subject="Printer on fire", msgid="<q1@customer.example>"), crowd(20_000)))
    assert watchers(desk) == crowd(10)
    with desk.session() as s:
        message = s.scalar(select(Message))
        # parsing reads the first MAX_ADDRESSES of a header (bounded work); the raw mail keeps every one
        assert len(message.cc_addrs) == addresses.MAX_ADDRESSES
        [event] = s.scalars(select(Event).where(Event.kind == "watchers.limited")).all()
        assert event.message_pk == message.id
        assert (event.detail["added"], event.detail["left_out"]) == (10, addresses.MAX_ADDRESSES - 10)


def test_the_answer_goes_to_the_customer_with_the_watchers_in_cc_within_the_limit(desk):
    notification = open_ticket(desk, cc=", ".join(crowd(30)))
    agent_reply(desk, notification, "Please unplug it.")
    answer = only(desk, "agent_reply")
    assert [a for _, a in getaddresses(answer.get_all("To"))] == ["alice@customer.example"]
    assert [a for _, a in getaddresses(answer.get_all("Cc"))] == crowd(10)
    assert len(visible(answer)) == 11
    with desk.session() as s:
        row = s.scalar(select(Outbox).where(Outbox.kind == "agent_reply"))
        assert row.rcpt_tos == ["alice@customer.example", *crowd(10)]


def test_a_ticket_never_has_more_than_max_watchers(make_config, harness_factory):
    h = harness_factory(make_config(agents=AGENTS, queues=QUEUES, support={"max_new_watchers": 100, "max_watchers": 5}))
    notification = open_ticket(h, cc=", ".join(crowd(8)))
    assert watchers(h) == crowd(5)
    agent_reply(h, notification, "#cc dan@customer.example\nWe are on it.")
    assert watchers(h) == crowd(5)
    with h.session() as s:
        limited = [e.detail for e in s.scalars(select(Event).where(Event.kind == "watchers.limited"))]
    assert [(d["added"], d["left_out"]) for d in limited] == [(5, 3), (0, 1)]  # the first mail, then the #cc
    answer = only(h, "agent_reply")
    assert len(visible(answer)) == 6


def test_an_agent_adds_a_watcher_while_there_is_room(make_config, harness_factory):
    h = harness_factory(make_config(agents=AGENTS, queues=QUEUES, support={"max_watchers": 3}))
    notification = open_ticket(h, cc=", ".join(crowd(2)))
    agent_reply(h, notification, "#cc dan@customer.example\nWe are on it.")
    assert watchers(h) == [*crowd(2), "dan@customer.example"]


def test_the_defaults_are_10_and_50_and_config_example_shows_them(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[mailgate]\nhostname = "support.example.com"\n')
    support = load_config(path).support
    assert (support.max_new_watchers, support.max_watchers) == (10, 50)
    example = (ROOT / "config.example.toml").read_text()
    assert "# max_new_watchers = 10 " in example and "# max_watchers = 50 " in example


def test_a_relayed_answer_with_watchers_has_a_cc_header_that_parses(desk):
    agent_reply(desk, open_ticket(desk, cc="Dan <dan@customer.example>"), "Please unplug it.")
    with desk.session() as s:
        raw = s.scalar(select(Outbox.raw).where(Outbox.kind == "agent_reply"))
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["Cc"] == "dan@customer.example"


def test_over_a_real_daemon_20000_cc_make_10_watchers_and_the_answer_shows_11_addresses(make_config, daemon_factory):
    config = make_config(agents=AGENTS, queues=QUEUES)
    daemon = daemon_factory(config)
    daemon.send(with_cc(make_mail(subject="Printer on fire", msgid="<crowd@customer.example>"), crowd(20_000)))
    data = config.parent / "data"

    def to_bob():
        return [m for m in sent_mails(data) if "bob@example.com" in str(m["To"])]

    [notification] = wait_for(to_bob, timeout=120, message="Bob's notification in the sent maildir")
    daemon.send(
        reply_to(notification, "Please unplug it.\n", "Bob <bob@example.com>", quote=False),
        mail_from="bob@example.com",
        rcpt=(notification["Reply-To"],),
    )

    def answers():
        return [m for m in sent_mails(data) if "Please unplug it." in m.get_body(("plain",)).get_content()]

    [answer] = wait_for(answers, timeout=120, message="the relayed answer in the sent maildir")
    assert visible(answer) == ["alice@customer.example", *crowd(10)]
    assert len(str(answer["Cc"])) < 1000
