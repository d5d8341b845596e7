"""A plain address header is read by one expression, to exactly what the stdlib's parser and the salvage give.

Nearly every From, To and Cc is ``addr``, ``Name <addr>``, ``"Name" <addr>`` or a list of them; the
stdlib's address parser spends some fifty microseconds on each. Whatever the value, the pairs must be
those of the long way; a value that is not plain must not be read by the short one at all.
"""

from __future__ import annotations

import email.utils
import random

import pytest

from mailgate.mail import addresses

PLAIN = [
    "alice@customer.example",
    "Alice@Customer.EXAMPLE",
    "Alice Smith <alice@customer.example>",
    "Alice   Smith <alice@customer.example>",
    "J. R. Smith <j.r@customer.example>",
    '"Alice Smith" <alice@customer.example>',
    '"" <alice@customer.example>',
    '" spaced " <alice@customer.example>',
    '"a@b.example" <real@customer.example>',
    "=?utf-8?q?M=C3=BCller?= <hans@example.de>",
    "=?utf-8?b?0JDQvdC90LA=?= <anna@example.ru>",
    "alice@customer.example, Bob <bob@customer.example>",
    "a+tag@sub-1.example.com,b@c.example",
    "o'brien@example.ie",
    "support@example.com",
    "bounce-12=x@lists.example",
]
NOT_PLAIN = [
    "",
    " ",
    '"Doe, Jane" <jane@example.org>, bob@example.org.',
    "Jane Roe<jane@example.org>",
    "<JANE@Example.ORG>",
    "jane@example.org.",
    "jane@example.org (Jane Roe)",
    '"Jane \\"JR\\" Roe" <jane@example.org>',
    "Jos\u00e9 <jose@example.es>",
    "a..b@example.org",
    ".a@example.org",
    "a@example.org,",
    "Undisclosed recipients:;",
    "x" * 70 + "@example.org",
    "Name <a@b.example> trailing",
    "a@b@c.example",
    "a\t<b@c.example>",
]


def long_way(value: str) -> list[tuple[str, str]]:
    pairs = addresses._strict(value) if not addresses._unbalanced(value) else []
    return pairs or addresses._salvage(value)


def fuzzed(count: int) -> list[str]:
    rng = random.Random(11)
    alphabet = 'ab.@<>-+_ ,"\\()=?:;\t'
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16))) for _ in range(count)]


def mutated(count: int) -> list[str]:
    """The plain values with one character inserted, replaced or dropped: the edges of the short way."""
    rng = random.Random(3)
    alphabet = 'aZ9.@<>-+_ ,"\\()=?:;\t\u00e9'
    out = []
    for _ in range(count):
        value = rng.choice(PLAIN)
        at = rng.randrange(len(value) + 1)
        edit = rng.randrange(3)
        char = rng.choice(alphabet)
        out.append(value[:at] + (char if edit < 2 else "") + value[at + (edit > 0) :])
    return out


def composed(count: int) -> list[str]:
    """Values built from plain and almost-plain pieces: names, quotes, dots and lists."""
    rng = random.Random(5)
    names = ["Anna", "J.", "O'Neil", "=?utf-8?q?A?=", "a@b", "", " ", "x.y", "Dr Who"]
    addrs = ["a@b.example", "A.B@C.example", "a+b@c", "a.@b.example", "a@b.", "a@b..c", "-@-"]
    pieces = []
    for _ in range(count):
        name, addr = rng.choice(names), rng.choice(addrs)
        shape = rng.randrange(4)
        pieces.append([addr, f"{name} <{addr}>", f'"{name}" <{addr}>', f"{name}<{addr}>"][shape])
    return [", ".join(pieces[i : i + rng.randint(1, 3)]) for i in range(0, count, 2)]


@pytest.mark.parametrize("value", PLAIN + NOT_PLAIN + fuzzed(400) + composed(400) + mutated(1000))
def test_the_short_way_reads_what_the_long_way_reads_or_nothing(value):
    short = addresses._plain(value)
    assert short is None or short == long_way(value)


@pytest.mark.parametrize("value", PLAIN)
def test_the_plain_shapes_take_the_short_way(value):
    assert addresses._plain(value) is not None


@pytest.mark.parametrize("value", NOT_PLAIN)
def test_anything_else_takes_the_long_way(value):
    assert addresses._plain(value) is None


@pytest.mark.parametrize("value", PLAIN + NOT_PLAIN + fuzzed(200) + mutated(300))
def test_read_gives_the_same_names_and_addresses_either_way(value, monkeypatch):
    both = addresses.read([value])
    monkeypatch.setattr(addresses, "_plain", lambda value: None)
    assert both == addresses.read([value])


def test_a_plain_header_is_read_without_the_stdlib_parser(monkeypatch):
    def refuse(values):
        raise AssertionError("the stdlib's parser was called")

    monkeypatch.setattr(email.utils, "getaddresses", refuse)
    assert addresses.read(['"Anna Smith" <Anna@Example.org>, bob@example.org']) == [
        ("Anna Smith", "anna@example.org"),
        ("", "bob@example.org"),
    ]


@pytest.mark.parametrize("value", PLAIN + NOT_PLAIN + fuzzed(300) + mutated(300) + ["<a@b.example>", "a@b.example>"])
def test_address_of_is_parseaddrs_address(value):
    assert addresses.address_of(value) == email.utils.parseaddr(value)[1]


def test_a_plain_address_is_taken_as_it_is(monkeypatch):
    monkeypatch.setattr(email.utils, "parseaddr", lambda value: ("", "wrong"))
    assert addresses.address_of("a.b+c@d-e.example") == "a.b+c@d-e.example"
    assert addresses.address_of("Name <a@b.example>") == "wrong"
