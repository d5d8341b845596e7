"""Outbound mail from real `mailgate serve` processes over real SMTP: sent at once after the commit,
two helpdesks writing to each other stop by themselves, and a kill -9 loses no mail and doubles none."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from mailgate.config import load_config
from mailgate.storage.models import Event, Message, Outbox
from tests.helpers import make_mail, send, wait_for, write_config
from tests.outbound_helpers import Sink, free_port, other_database


def query(config: Path, statement):
    engine = create_engine(load_config(config).db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(statement).all()
    finally:
        engine.dispose()


def count(config: Path, model, *where) -> int:
    return int(query(config, select(func.count()).select_from(model).where(*where))[0][0])


def test_a_new_mail_is_acknowledged_over_smtp_at_once_and_a_reply_joins_its_ticket(make_config, daemon_factory):
    with Sink() as sink:
        # The retry sweep runs hourly here: only the wake-up after the commit can send the mail in time.
        config = make_config(outbound={"smarthost": sink.address, "sweep_interval": "1h"})
        daemon = daemon_factory(config)
        daemon.send(make_mail(subject="Printer on fire", msgid="<p1@customer.example>"))
        # well inside the hour: only the wake-up after the commit can have sent it
        wait_for(lambda: sink.handler.accepted, timeout=60, message="the acknowledgment at the smarthost")
        [ack] = sink.handler.messages()
        assert ack["Subject"] == "[#1] Printer on fire"
        assert ack["In-Reply-To"] == "<p1@customer.example>"
        assert ack["Auto-Submitted"] == "auto-replied"
        daemon.send(make_mail(subject="Re: Printer on fire", in_reply_to=ack["Message-ID"]))
        wait_for(lambda: count(config, Message) == 2, message="the reply stored")
        assert query(config, select(Message.ticket_id).distinct()) == [(1,)]
        time.sleep(0.5)  # a reply is not acknowledged: nothing more arrives
        assert len(sink.handler.accepted) == 1


def helpdesk(tmp_path: Path, name: str, db_url: str, port: int, peer_port: int) -> Path:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    return write_config(
        directory,
        db_url,
        mailgate={"hostname": f"{name}.example"},
        smtp={"listen": f"127.0.0.1:{port}"},
        support={
            "name": f"Helpdesk {name.upper()}",
            "address": f"help@{name}.example",
            "accept": [f"help@{name}.example"],
            "token_prefix": name.upper(),
        },
        outbound={"smarthost": f"127.0.0.1:{peer_port}", "sweep_interval": "1s", "retry_base": "1s", "retry_max": "2s"},
    )


@pytest.fixture
def two_databases(tmp_path, db_url):
    with other_database(tmp_path, "b") as second:
        yield db_url, second


def test_two_helpdesks_writing_to_each_other_stop_by_themselves(tmp_path, daemon_factory, two_databases):
    port_a, port_b = free_port(), free_port()
    config_a = helpdesk(tmp_path, "a", two_databases[0], port_a, port_b)
    config_b = helpdesk(tmp_path, "b", two_databases[1], port_b, port_a)
    daemon_factory(config_a)
    daemon_factory(config_b)
    # Each is the other's customer: one mail from each support address to the other starts it.
    send(
        port_a,
        make_mail(subject="Hello from B", sender="Helpdesk B <help@b.example>", to="help@a.example"),
        mail_from="help@b.example",
        rcpt=["help@a.example"],
    )
    send(
        port_b,
        make_mail(subject="Hello from A", sender="Helpdesk A <help@a.example>", to="help@b.example"),
        mail_from="help@a.example",
        rcpt=["help@b.example"],
    )

    def exchanged() -> tuple[int, int]:
        return count(config_a, Message), count(config_b, Message)

    # each acknowledgment reaches the other side as an auto-reply that threads to no ticket: held, no ticket
    wait_for(
        lambda: all(count(c, Event, Event.kind == "mail.automatic_held") == 1 for c in (config_a, config_b)),
        timeout=30,
        message="each acknowledgment reached the other side and was held",
    )
    deadline = time.monotonic() + 5  # five sweep intervals: any loop would show by now
    while time.monotonic() < deadline:
        assert exchanged() == (1, 1), "the exchange went on"
        time.sleep(0.2)
    for config in (config_a, config_b):
        assert count(config, Outbox, Outbox.status == "sent") == 1
        assert count(config, Outbox, Outbox.status == "held") == 0, "nothing to hold: the auto-reply opened nothing"
        assert count(config, Event, Event.kind == "mail.automatic_held") == 1


def test_kill_9_between_commit_and_delivery_delivers_once_after_restart(make_config, daemon_factory):
    port = free_port()  # the smarthost is down: nothing listens there yet
    config = make_config(
        outbound={
            "smarthost": f"127.0.0.1:{port}",
            "sweep_interval": "1s",
            "retry_base": "1s",
            "retry_max": "1s",
            "timeout": "2s",
        }
    )
    daemon = daemon_factory(config)
    daemon.send(make_mail(subject="Printer on fire", msgid="<k9@customer.example>"))
    # Two attempts: the first right after the commit, the second from the scheduler's retry sweep.
    wait_for(
        lambda: query(config, select(Outbox.attempts).where(Outbox.attempts >= 2)),
        timeout=30,
        message="the acknowledgment committed and its delivery tried and retried",
    )
    daemon.kill()
    [(status, message_id)] = query(config, select(Outbox.status, Outbox.message_id))
    assert status == "pending"
    with Sink(port=port) as sink:
        daemon_factory(config)
        wait_for(lambda: sink.handler.accepted, timeout=90, message="the mail delivered after the restart")
        time.sleep(3)  # three sweep intervals: a second delivery would show by now
        assert [m["Message-ID"] for m in sink.handler.messages()] == [message_id]
        assert query(config, select(Outbox.status)) == [("sent",)]
