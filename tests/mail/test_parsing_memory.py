"""A big mail is read with a few copies of itself, not a dozen, and read exactly as the stdlib reads it.

``mailgate.mail.tree`` feeds the stdlib's parser a slice at a time and undoes base64 with one
``translate``; the tree and every payload must stay what ``message_from_bytes`` and
``get_payload(decode=True)`` give, defects included.
"""

from __future__ import annotations

import base64
import email
import email.parser
from email import policy
from email.message import Message

import pytest

from mailgate.mail import tree
from tests.mail.trees import sample_mails, shape


@pytest.mark.parametrize(("name", "raw"), sample_mails(), ids=[name for name, _ in sample_mails()])
def test_the_tree_fed_a_slice_at_a_time_is_the_tree_message_from_bytes_builds(name, raw):
    expected = email.message_from_bytes(raw, policy=policy.compat32)
    assert shape(tree.read(raw)) == shape(expected)
    headers_only = email.parser.BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    assert shape(tree.read(raw, headers_only=True)) == shape(headers_only)


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
