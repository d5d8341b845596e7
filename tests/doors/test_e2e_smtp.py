"""Against a real `mailgate serve` process over real SMTP: the core promises of intake."""

from __future__ import annotations

import json
import smtplib
import socket

import pytest

from tests.helpers import mailgate, make_mail, wait_for


def tickets_json(config):
    result = mailgate(config, "tickets", "list", "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def ticket_messages(config):
    return {t["number"]: t["messages"] for t in tickets_json(config)}


def test_mail_becomes_ticket_and_replies_thread_into_it(daemon, config_file):
    daemon.send(make_mail(subject="Printer on fire", msgid="<first@customer.example>"))
    wait_for(lambda: ticket_messages(config_file) == {1: 1}, message="ticket 1")
    daemon.send(make_mail(subject="Re: Printer on fire [#1]"))
    daemon.send(make_mail(subject="answer without token", in_reply_to="<first@customer.example>"))
    wait_for(lambda: ticket_messages(config_file) == {1: 3}, message="two replies in ticket 1")

    duplicate = make_mail(subject="Second problem", msgid="<dup@customer.example>")
    daemon.send(duplicate)
    daemon.send(duplicate)
    wait_for(lambda: ticket_messages(config_file) == {1: 3, 2: 1}, message="the duplicate stored once")

    tickets = tickets_json(config_file)
    assert set(tickets[0]) >= {
        "number",
        "subject",
        "status",
        "queue",
        "customer",
        "messages",
        "created_at",
        "updated_at",
    }
    assert tickets[0]["customer"] == "alice@customer.example"
    show = json.loads(mailgate(config_file, "tickets", "show", "1", "--format", "json").stdout)
    assert [m["direction"] for m in show["messages"]] == ["in", "in", "in"]
    assert set(show["messages"][0]) >= {"direction", "from", "to", "subject", "date", "text", "attachments"}
    assert "msg=message" in daemon.log() and "ticket=1" in daemon.log()


def test_recipients_outside_accept_are_refused_and_never_relayed(daemon):
    with smtplib.SMTP("127.0.0.1", daemon.port) as client:
        code, _ = client.ehlo()
        assert code == 250
        client.mail("someone@elsewhere.example")
        code, _reply = client.rcpt("victim@other.example")
        assert code == 550
        code, _ = client.rcpt("support+anything@example.com")
        assert code == 250


def test_a_mail_over_the_size_limit_gets_552(make_config, daemon_factory):
    config = make_config(smtp={"max_message_size": "100KB"})
    d = daemon_factory(config)
    big = make_mail(body="x" * 200_000)
    with pytest.raises(smtplib.SMTPResponseException) as info:
        d.send(big)
    assert info.value.smtp_code == 552


def test_not_a_mail_is_refused_with_a_permanent_error(daemon):
    with pytest.raises(smtplib.SMTPDataError) as info:
        daemon.send(b"just some words without any header\r\n")
    assert info.value.smtp_code == 550


def test_smtp_smuggling_cannot_split_one_message_into_two(daemon, config_file):
    """CVE-2024-27305: a bare-LF dot inside DATA must not end the message."""
    smuggled = (
        b"From: alice@customer.example\r\nTo: support@example.com\r\nSubject: outer\r\n"
        b"Message-ID: <outer@customer.example>\r\n\r\nfirst part\n.\r\n"
        b"MAIL FROM:<evil@customer.example>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
        b"From: evil@customer.example\r\nSubject: smuggled\r\n\r\nsecond\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    reader = sock.makefile("rb")
    reader.readline()
    for line in (
        b"HELO test\r\n",
        b"MAIL FROM:<alice@customer.example>\r\n",
        b"RCPT TO:<support@example.com>\r\n",
        b"DATA\r\n",
    ):
        sock.sendall(line)
        reader.readline()
    sock.sendall(smuggled + b"\r\n.\r\n")
    assert reader.readline().startswith(b"250")
    sock.sendall(b"QUIT\r\n")
    sock.close()
    wait_for(lambda: ticket_messages(config_file) == {1: 1}, message="one ticket")
    assert [t["subject"] for t in tickets_json(config_file)] == ["outer"]


def test_sigterm_stops_the_daemon_cleanly(daemon):
    assert daemon.stop() == 0
    assert "msg=stopped" in daemon.log()


def test_a_wrong_config_stops_serve_with_one_clear_line(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[smtp]\nlisten = "nowhere"\n')
    result = mailgate(bad, "serve", timeout=30)
    assert result.returncode == 78
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert str(bad) in lines[0] and "smtp.listen" in lines[0] and "host:port" in lines[0]


def test_sigterm_finishes_the_mail_in_hand_and_refuses_new_ones(daemon, config_file):
    """A mail whose transmission started before SIGTERM is answered 250 and stored."""
    import signal
    import time

    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    reader = sock.makefile("rb")
    reader.readline()
    for line in (
        b"HELO test\r\n",
        b"MAIL FROM:<alice@customer.example>\r\n",
        b"RCPT TO:<support@example.com>\r\n",
        b"DATA\r\n",
    ):
        sock.sendall(line)
        reader.readline()
    raw = make_mail(subject="in hand", msgid="<inhand@customer.example>")
    sock.sendall(raw[: len(raw) // 2])
    daemon.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: 'msg="stopping' in daemon.log(), message="daemon stopping")
    with pytest.raises(OSError), smtplib.SMTP("127.0.0.1", daemon.port, timeout=5) as late:
        late.sendmail("a@customer.example", ["support@example.com"], make_mail())
    time.sleep(0.3)
    sock.sendall(raw[len(raw) // 2 :] + b"\r\n.\r\n")
    assert reader.readline().startswith(b"250")
    sock.close()
    assert daemon.proc.wait(30) == 0
    assert "verdict=new" in daemon.log() and "<inhand@customer.example>" in daemon.log()
