"""MAIL FROM and RCPT TO paths are read exactly as aiosmtpd reads them; a plain one without its parser.

aiosmtpd's ``_getaddr`` builds a class on every call and runs the email package's header parser; the
door reads a plain ``<local@domain>`` itself. Whatever the argument, the address and the rest must be
aiosmtpd's own.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from aiosmtpd.smtp import SMTP

from mailgate.doors.smtp import IntakeSMTP

ARGUMENTS = [
    "<alice@customer.example>",
    "<alice@customer.example> SIZE=1200 BODY=8BITMIME",
    "<a.b+tag@sub-1.example.COM>\tSMTPUTF8",
    "<bounce-12=x@lists.example>   ",
    "<>",
    "<> SIZE=10",
    "<a@b.c>(a comment) SIZE=1",
    "<a@b.c>x",
    "alice@customer.example",
    " <alice@customer.example>",
    '<"quoted local"@b.example>',
    "<a..b@c.example>",
    "<.a@c.example>",
    "<a@[192.0.2.1]>",
    "<@relay.example:a@b.example>",
    "<jos\u00e9@b.example>",
    "<a@b.example.>",
    "<a@-b.example>",
    "<a@b@c.example>",
    "<a@b.example",
    "<a b@c.example>",
    "",
    "<" + "x" * 70 + "@b.example>",
]


@pytest.fixture
def door():
    loop = asyncio.new_event_loop()
    try:
        yield IntakeSMTP(object(), loop=loop)
    finally:
        loop.close()


def _fuzzed(count: int) -> list[str]:
    rng = random.Random(7)
    alphabet = 'ab.@<>-+_ \t()"[]:=\\é'
    return ["<" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))) for _ in range(count)]


@pytest.mark.parametrize("argument", ARGUMENTS + _fuzzed(300))
def test_the_address_and_the_rest_are_aiosmtpds(door, argument):
    assert _outcome(door._getaddr, argument) == _outcome(lambda arg: SMTP._getaddr(door, arg), argument)


def _outcome(read, argument):
    try:
        return read(argument)
    except Exception as exc:  # aiosmtpd's parser breaks on some (its session answers 500): so must ours
        return type(exc).__name__


def test_the_local_part_limit_holds_on_the_plain_path_too(door):
    door.local_part_limit = 64
    for local in ("x" * 64, "x" * 65):
        argument = f"<{local}@b.example>"
        assert door._getaddr(argument) == SMTP._getaddr(door, argument)
    assert door._getaddr("<" + "x" * 65 + "@b.example>") == (None, None)


def test_a_plain_path_is_read_without_aiosmtpds_parser(door, monkeypatch):
    def refuse(self, arg):
        raise AssertionError(f"aiosmtpd's parser read {arg!r}")

    monkeypatch.setattr(SMTP, "_getaddr", refuse)
    assert door._getaddr("<alice@customer.example> SIZE=1") == ("alice@customer.example", "SIZE=1")
    with pytest.raises(AssertionError):
        door._getaddr('<"quoted"@b.example>')
