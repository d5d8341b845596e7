"""Bounces prove themselves, over a real `mailgate serve` and real SMTP, and the admin sees and lifts suppressions.

A forged report naming both agents, sent to the plain support address,
suppresses nobody: the next new ticket notifies them. A real bounce of our
acknowledgment, sent back to the VERP return path it left with, fails that
row and suppresses Alice until an admin lifts it.
"""

from __future__ import annotations

import json

from tests.helpers import mailgate, make_mail, wait_for
from tests.outbound.test_bounces import dsn, two_agents_dsn
from tests.pipeline.test_agents_e2e import AGENTS, QUEUES, Inbox


def cli_json(config, *args: str) -> list[dict]:
    result = mailgate(config, *args)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def test_a_forged_report_suppresses_nobody_and_a_real_bounce_suppresses_until_lifted(make_config, daemon_factory):
    config = make_config(agents=AGENTS, queues=QUEUES)
    daemon = daemon_factory(config)
    alice, bob = Inbox(config, "alice@customer.example"), Inbox(config, "bob@example.com")

    daemon.send(two_agents_dsn(), mail_from="")
    wait_for(
        lambda: cli_json(config, "spool", "list", "--format", "json") == [],
        timeout=60,
        message="the forged report processed before the next ticket",
    )
    daemon.send(make_mail(subject="Printer on fire"))
    assert bob.wait("the notification of the ticket after the forged report", "New ticket")
    assert cli_json(config, "outbox", "suppressed", "--json") == []

    ack = alice.wait("the acknowledgment", "Your request is now ticket")
    verp = ack["Return-Path"].strip("<>")
    assert verp.startswith("support+bounce-")
    daemon.send(dsn(verp, ack["Message-ID"]), mail_from="", rcpt=[verp])
    failed = wait_for(
        lambda: cli_json(config, "outbox", "list", "--failed", "--format", "json"),
        timeout=60,
        message="the bounced acknowledgment failed",
    )
    assert [(r["kind"], r["to"]) for r in failed] == [("acknowledgment", "alice@customer.example")]
    [entry] = cli_json(config, "outbox", "suppressed", "--json")
    assert entry["address"] == "alice@customer.example" and "5.1.1" in entry["reason"]
    table = mailgate(config, "outbox", "suppressed").stdout.decode()
    assert "alice@customer.example" in table and "REASON" in table

    lifted = mailgate(config, "outbox", "unsuppress", "Alice@Customer.example")
    assert lifted.returncode == 0, lifted.stderr.decode()
    assert cli_json(config, "outbox", "suppressed", "--json") == []
    again = mailgate(config, "outbox", "unsuppress", "alice@customer.example")
    assert again.returncode == 1 and b"not suppressed" in again.stderr
