"""Customers are proven the way agents are, over a real `mailgate serve` and real SMTP.

A From header is anyone's to write. A mail that says it is Alice's but came
neither to her signed reply address nor with a trusted Authentication-Results
pass is stored in her ticket, flagged, notifies the agents, and changes
nothing. Alice's plain Reply, which goes to the signed Reply-To of our mail,
closes the ticket with "close" and rates it with "good".
"""

from __future__ import annotations

from tests.helpers import make_mail, wait_for
from tests.pipeline.test_agents_e2e import AGENTS, QUEUES, Inbox, reply_to, show

ALICE = "Alice <alice@customer.example>"


def forged(body: str) -> bytes:
    """What `swaks --from mallory@evil.test --h-From alice@customer.example` writes, to the plain support address."""
    return make_mail(
        subject="Re: [#1] Printer on fire",
        sender="alice@customer.example",
        body=body + "\n",
        msgid="<forged-" + body.replace(" ", "-") + "@evil.test>",
    )


def stored(config, count: int) -> dict:
    return wait_for(
        lambda: len((d := show(config))["messages"]) == count and d, timeout=60, message=f"{count} messages in ticket 1"
    )


def test_a_forged_close_is_stored_flagged_and_changes_nothing_while_alices_reply_closes_and_rates(
    make_config, daemon_factory
):
    config = make_config(agents=AGENTS, queues=QUEUES)
    daemon = daemon_factory(config)
    alice, bob = Inbox(config, "alice@customer.example"), Inbox(config, "bob@example.com")
    daemon.send(make_mail(subject="Printer on fire", body="Hello,\nmy printer is on fire.\n", sender=ALICE))
    ack = alice.wait("the acknowledgment", "Your request is now ticket")

    daemon.send(forged("close"), mail_from="mallory@evil.test")
    data = stored(config, 2)
    assert data["status"] == "new" and data["resolved_at"] is None
    assert data["messages"][1]["from"] == "alice@customer.example"
    assert "unproven sender" in data["messages"][1]["defects"]
    assert bob.wait("the notification of the forged mail", "wrote in ticket", "\nclose\n")

    daemon.send(reply_to(ack, "close", ALICE), rcpt=[ack["Reply-To"]])
    data = stored(config, 3)
    assert data["status"] == "resolved"
    assert "unproven sender" not in data["messages"][2]["defects"]
    notice = alice.wait("the one resolved notice", "is now resolved")

    daemon.send(forged("bad"), mail_from="mallory@evil.test")
    data = stored(config, 4)
    assert data["csat"] is None and data["status"] == "resolved"

    daemon.send(reply_to(notice, "good", ALICE), rcpt=[notice["Reply-To"]])
    data = wait_for(lambda: (d := show(config))["csat"] == "good" and d, timeout=60, message="the rating")
    assert data["status"] == "resolved"
    assert [m["defects"] for m in data["messages"]] == [[], ["unproven sender"], [], ["unproven sender"], []]
    alice.wait("still one resolved notice", "is now resolved")
