"""A big mail is read with a few copies of itself, not a dozen, and read exactly as the stdlib reads it.

``mailgate.mail.tree`` feeds the stdlib's parser a slice at a time and undoes base64 with one
``translate``; the tree and every payload must stay what ``message_from_bytes`` and
``get_payload(decode=True)`` give, defects included.
"""

from __future__ import annotations

import base64
import email
import email.parser
import random
import tracemalloc
from email import policy
from email.message import Message
from pathlib import Path

import pytest

from mailgate.mail import tree
from mailgate.mail.parse import parse
from tests.helpers import make_mail
from tests.hostile import hostile_messages

DATA = Path(__file__).resolve().parent.parent / "data"


def _corpus() -> list[tuple[str, bytes]]:
    files = sorted([*(DATA / "reading").glob("*.eml"), *(DATA / "clients").glob("*.eml")])
    return [(path.name, path.read_bytes()) for path in files] + hostile_messages()


def _shape(message: Message) -> list[tuple[object, ...]]:
    """Everything the parser decided, part by part."""
    return [
        (
            part.get_content_type(),
            list(part.raw_items()),
            part.get_payload() if not part.is_multipart() else len(part.get_payload()),
            part.preamble,
            part.epilogue,
            [type(d).__name__ for d in part.defects],
        )
        for part in message.walk()
    ]


@pytest.mark.parametrize(("name", "raw"), _corpus(), ids=[name for name, _ in _corpus()])
def test_the_tree_fed_a_slice_at_a_time_is_the_tree_message_from_bytes_builds(name, raw):
    expected = email.message_from_bytes(raw, policy=policy.compat32)
    assert _shape(tree.read(raw)) == _shape(expected)
    headers_only = email.parser.BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    assert _shape(tree.read(raw, headers_only=True)) == _shape(headers_only)


def _part(body: str, cte: str = "base64") -> Message:
    raw = f"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}"
    return email.message_from_bytes(raw.encode("utf-8", "surrogateescape"), policy=policy.compat32)


ENCODED = base64.encodebytes(bytes(range(256)) * 3).decode()
BODIES = {
    "lines": ENCODED,
    "crlf": ENCODED.replace("\n", "\r\n"),
    "one line": ENCODED.replace("\n", ""),
    "padding missing": base64.b64encode(b"ab").decode().rstrip("="),
    "foreign characters": "YWJj*ZGVm\n!!\n",
    "padding and characters wrong": "YW*JjZA\n",
    "impossible length": "YWJjZ\n",
    "padding inside": "YQ==YWJj\n",
    "empty": "",
    "8-bit bytes": "YWJj\udce9ZGVm\n",
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_a_base64_payload_and_its_defects_are_what_get_payload_decode_gives(body):
    ours, stdlib = _part(body), _part(body)
    assert tree.payload(ours) == stdlib.get_payload(decode=True)
    assert [type(d).__name__ for d in ours.defects] == [type(d).__name__ for d in stdlib.defects]


def test_other_payloads_are_read_as_before():
    assert tree.payload(_part("caf=C3=A9=\n ok\n", "quoted-printable")) == "café ok\n".encode()
    assert tree.payload(_part("plain\n", "7bit")) == b"plain\n"
    multipart = email.message_from_bytes(
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n', policy=policy.compat32
    )
    assert tree.payload(multipart) == b""


def _big_mail(size: int) -> bytes:
    logs = ("logs.zip", "application/zip", random.Random(1).randbytes(size))
    return make_mail(subject="Logs for the crash", body="Here are the logs you asked for.\n", attachments=[logs])


def test_reading_a_big_attachment_costs_about_three_times_the_mail_not_eight():
    raw = _big_mail(3_000_000)
    tracemalloc.start()
    try:
        mail = parse(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [len(a.payload) for a in mail.attachments] == [3_000_000]
    assert mail.text == "Here are the logs you asked for.\n"
    # message_from_bytes and get_payload(decode=True): about 7.7 times the mail at once
    assert peak < 4 * len(raw), f"peak {peak / len(raw):.1f} times the mail"
