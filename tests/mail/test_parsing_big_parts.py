"""A big encoded part is not walked line by line: the parser is fed a token for it, and the mail reads the same.

``tree.read(raw, elide=True)`` (what ``parse`` asks for) feeds the stdlib parser each long run of
base64-alphabet lines as one token line. Whatever the run, the tree, every payload, every defect
and every byte written out again must be what the stdlib makes of the whole mail.
"""

from __future__ import annotations

import base64
import email
import email.feedparser
import random
import tracemalloc
from email import policy
from email.message import Message

import pytest

from mailgate.mail import tree
from mailgate.mail.parse import parse
from tests.helpers import make_mail
from tests.mail.trees import sample_mails, shape


def _stdlib(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=policy.compat32)


def _payloads(message: Message) -> list[tuple[bytes, list[str]]]:
    out = []
    for part in message.walk():
        if not part.is_multipart():
            data = tree.payload(part)
            out.append((data, [type(d).__name__ for d in part.defects]))
    return out


def _encoded(size: int, seed: int = 1, linesep: str = "\r\n") -> str:
    return base64.encodebytes(random.Random(seed).randbytes(size)).decode().replace("\n", linesep)


def _multipart(*parts: tuple[str, str], preamble: str = "", epilogue: str = "", linesep: str = "\r\n") -> bytes:
    """A multipart/mixed of (headers, body) parts, written by hand so the body is exactly what is given."""
    lines = [
        "From: Alice <alice@customer.example>",
        "To: support@example.com",
        "Subject: Logs",
        "Message-ID: <logs.1@customer.example>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b1"',
        "",
        preamble,
    ]
    text = linesep.join(lines)
    for headers, body in parts:
        text += f"--b1{linesep}{headers.replace(chr(10), linesep)}{linesep}{linesep}{body}{linesep}"
    text += f"--b1--{linesep}{epilogue}"
    return text.encode("ascii")


ATTACH = "Content-Type: application/zip; name=logs.zip\nContent-Transfer-Encoding: base64"
TEXT = "Content-Type: text/plain; charset=us-ascii"
BIG = 200_000

SHAPES = {
    "one base64 part": _multipart((TEXT, "See the logs."), (ATTACH, _encoded(BIG))),
    "LF line ends": _multipart((TEXT, "See the logs."), (ATTACH, _encoded(BIG, linesep="\n")), linesep="\n"),
    "a blank line after the run": _multipart((ATTACH, _encoded(BIG) + "\r\n")),
    "padding missing": _multipart((ATTACH, _encoded(BIG + 1).rstrip("=\r\n"))),
    "a bad character amid the lines": _multipart((ATTACH, _encoded(BIG).replace("\r\n", "\r\n*\r\n", 1))),
    "two runs in one part": _multipart((ATTACH, _encoded(BIG).replace("\r\n", "\r\n\r\n", 900))),
    "last line of 998 and more": _multipart((ATTACH, _encoded(BIG).replace("\r\n", "", 40))),
    "not base64: 7bit text of letters": _multipart((TEXT, _encoded(BIG))),
    "not base64: quoted-printable": _multipart(
        (TEXT + "\nContent-Transfer-Encoding: quoted-printable", ("A" * 72 + "=\r\n") * 4000 + "end")
    ),
    "runs in the preamble and epilogue": _multipart(
        (TEXT, "hi"), preamble=_encoded(BIG) + "\r\n", epilogue=_encoded(BIG, seed=2)
    ),
    "a whole mail of one run": ("Subject: x\r\n\r\n" + _encoded(BIG)).encode(),
    "no blank line after the headers": ("Subject: x\r\n" + _encoded(BIG)).encode(),
    "an attached message with a big part": _multipart(
        ("Content-Type: message/rfc822", _multipart((ATTACH, _encoded(BIG)), linesep="\r\n").decode())
    ),
    "a multipart whose end never came": _multipart((ATTACH, _encoded(BIG)))[: -len(b"--b1--\r\n")],
}


@pytest.fixture
def elide_everything(monkeypatch):
    """Every run of encoded lines, however short, in every mail, however small."""
    monkeypatch.setattr(tree, "ELIDE_FROM", 0)
    monkeypatch.setattr(tree, "RUN_MIN", 1)


CORPUS = sample_mails() + list(SHAPES.items())


@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_every_payload_and_defect_is_the_stdlibs_and_the_restored_tree_is_its_tree(name, raw, elide_everything):
    assert _payloads(tree.read(raw, elide=True)) == _payloads(_stdlib(raw))  # decoding adds defects: fresh trees
    expected = _stdlib(raw)
    restored = tree.read(raw, elide=True)
    tree.restore(restored)
    assert shape(restored) == shape(expected)
    if _written(expected) == _written(_stdlib(raw)):  # the stdlib makes up a boundary where a mail gave none
        assert _written(restored) == _written(expected)


def _written(message: Message) -> bytes | str:
    try:
        return message.as_bytes()
    except Exception as exc:  # some hostile headers cannot be written back, by the stdlib either
        return type(exc).__name__


@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_the_parsed_mail_is_the_same_with_runs_cut_out_or_not(name, raw, monkeypatch):
    monkeypatch.setattr(tree, "ELIDE_FROM", 1 << 40)
    whole = parse(raw)
    monkeypatch.setattr(tree, "ELIDE_FROM", 0)
    monkeypatch.setattr(tree, "RUN_MIN", 1)
    assert vars(parse(raw)) == vars(whole)


def test_the_runs_are_really_cut_out_of_the_tree(elide_everything):
    message = tree.read(SHAPES["one base64 part"], elide=True)
    attachment = message.get_payload()[1]
    assert len(attachment.get_payload()) < 40
    assert tree.payload(attachment) == _stdlib(SHAPES["one base64 part"]).get_payload()[1].get_payload(decode=True)


def test_a_mail_that_holds_the_chosen_token_gets_another(monkeypatch, elide_everything):
    taken = "00" * 12
    raw = _multipart((TEXT, f"I write Mg{taken}0_ here."), (ATTACH, _encoded(BIG)))
    tokens = iter([taken, "11" * 12])
    monkeypatch.setattr(tree.secrets, "token_hex", lambda _n: next(tokens))
    message = tree.read(raw, elide=True)
    assert _payloads(message) == _payloads(_stdlib(raw))
    assert f"Mg{taken}0_" in message.get_payload()[0].get_payload()


def test_without_elide_nothing_is_cut(elide_everything):
    assert shape(tree.read(SHAPES["one base64 part"])) == shape(_stdlib(SHAPES["one base64 part"]))


def _big_mail(size: int) -> bytes:
    logs = ("logs.zip", "application/zip", random.Random(1).randbytes(size))
    return make_mail(subject="Logs for the crash", body="Here are the logs you asked for.\n", attachments=[logs])


def test_the_parser_is_fed_the_structure_of_a_big_mail_not_its_lines(monkeypatch):
    fed: list[int] = []
    feed = email.feedparser.BytesFeedParser.feed

    def counted(self, data):
        fed.append(len(data))
        feed(self, data)

    monkeypatch.setattr(email.feedparser.BytesFeedParser, "feed", counted)
    raw = _big_mail(3_000_000)
    mail = parse(raw)
    assert [len(a.payload) for a in mail.attachments] == [3_000_000]
    assert sum(fed) < 4096, f"the parser was fed {sum(fed)} of {len(raw)} bytes"


def test_reading_a_big_attachment_costs_about_its_decoded_size():
    raw = _big_mail(3_000_000)
    parse(b"Subject: warm\r\n\r\nup\r\n")  # the regular expressions compiled, as in a running worker
    tracemalloc.start()
    try:
        mail = parse(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [len(a.payload) for a in mail.attachments] == [3_000_000]
    assert mail.text == "Here are the logs you asked for.\n"
    # the attachment's bytes (0.74 of the mail) and little else; the line-by-line parse held 3.8 times the mail
    assert peak < 1.0 * len(raw), f"peak {peak / len(raw):.2f} times the mail"
