"""From, Reply-To, To and Cc read leniently: the sender is salvaged from the shapes old mailers and spam write."""

from __future__ import annotations

import pytest

from mailgate.mail.parse import parse
from tests.reading import read


def mail_from(value: str, extra: str = "") -> bytes:
    return f"From: {value}\r\nTo: support@example.com\r\n{extra}Subject: hi\r\n\r\nbody\r\n".encode()


@pytest.mark.parametrize(
    ("header", "name", "address"),
    [
        ("jane@example.org (Jane Roe) via webform <<", "Jane Roe", "jane@example.org"),  # a bare address, then junk
        ('"Jane Roe <jane@example.org>', "Jane Roe", "jane@example.org"),  # an unbalanced quote
        ("Jane Roe <jane@example.org", "Jane Roe", "jane@example.org"),  # an unclosed angle bracket
        ("jane@example.org.", "", "jane@example.org"),  # a trailing dot
        ("Jane Roe <jane@example.org.>", "Jane Roe", "jane@example.org"),
        ("jane@example.org <real@example.net>", "jane@example.org", "real@example.net"),  # an address in the name
        ('"jane@example.org" <real@example.net>', "jane@example.org", "real@example.net"),
        ("Jane Roe<jane@example.org>", "Jane Roe", "jane@example.org"),  # no space before the bracket
        ("<JANE@Example.ORG>", "", "jane@example.org"),
    ],
)
def test_the_sender_is_salvaged_from_a_malformed_from_header(header, name, address):
    mail = parse(mail_from(header))
    assert (mail.from_name, mail.from_addr) == (name, address)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('"=?utf-8?q?M=C3=BCller=2C_Hans?=" <hans@example.de>', "Müller, Hans"),  # inside quotes
        ("=?utf-8?q?M=C3=BCller?==?utf-8?q?_Hans?= <hans@example.de>", "Müller Hans"),  # without a space
        ("=?iso-8859-1?q?M=FCller?= =?utf-8?q?_H=C3=A4ns?= <hans@example.de>", "Müller Häns"),  # two charsets
        ("=?utf-8?b?TcO8bGxlcg?= <hans@example.de>", "Müller"),  # base64 without its padding
    ],
)
def test_encoded_words_are_decoded_wherever_clients_put_them(header, name):
    mail = parse(mail_from(header))
    assert (mail.from_name, mail.from_addr) == (name, "hans@example.de")


def test_an_encoded_comma_or_bracket_in_a_name_cannot_split_or_fake_an_address():
    mail = parse(mail_from("=?utf-8?q?Eve_=3Cboss=40example=2Ecom=3E=2C?= <eve@example.net>"))
    assert (mail.from_name, mail.from_addr) == ("Eve <boss@example.com>,", "eve@example.net")


def test_to_cc_and_reply_to_are_read_by_the_same_lenient_reader():
    mail = parse(
        mail_from(
            "a@example.com",
            'Cc: "Doe, Jane" <jane@example.org>, bob@example.org.\r\nReply-To: Help Desk <help@example.org\r\n',
        )
    )
    assert mail.cc == ["jane@example.org", "bob@example.org"]
    assert mail.reply_to == ["help@example.org"]


def test_a_mail_with_junk_after_the_sender_keeps_its_sender():
    mail = read("from_junk.eml")
    assert (mail.from_name, mail.from_addr) == ("Jane Roe", "jane@example.org")


def test_a_group_with_no_address_yields_no_recipient():
    raw = mail_from("a@example.com").replace(b"To: support@example.com", b"To: undisclosed-recipients:;")
    assert parse(raw).to == []
