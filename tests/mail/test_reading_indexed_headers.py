"""A part's headers and their parameters are looked up in an index: the answers are the stdlib Message's,
before and after any change."""

from __future__ import annotations

import email
from email import policy
from email.message import Message

import pytest

from mailgate.mail import tree
from tests.mail.trees import sample_mails

SAMPLES = sample_mails()
ASKED = [
    "content-type",
    "Content-Type",
    "CONTENT-TRANSFER-ENCODING",
    "content-disposition",
    "from",
    "Subject",
    "message-id",
    "received",
    "x-absent",
    "",
]


def names(part: Message) -> list[str]:
    return [*{k for k, _ in part.raw_items()}, *ASKED]


def same_answers(indexed: Message, plain: Message) -> None:
    for name in names(plain):
        assert indexed.get(name, "absent") == plain.get(name, "absent"), name
        assert (name in indexed) == (name in plain), name
    assert indexed.get_content_type() == plain.get_content_type()
    assert indexed.get_params() == plain.get_params()
    assert indexed.get_params(header="content-disposition") == plain.get_params(header="content-disposition")
    assert indexed.get_param("charset") == plain.get_param("charset")
    assert indexed.get_boundary() == plain.get_boundary()
    assert indexed.get_content_charset() == plain.get_content_charset()
    assert indexed.get_filename() == plain.get_filename()


@pytest.mark.parametrize(("name", "raw"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_every_part_answers_every_header_as_the_stdlib_does(name, raw):
    indexed = tree.read(raw)
    plain = email.message_from_bytes(raw, policy=policy.compat32)
    pairs = list(zip(indexed.walk(), plain.walk(), strict=True))
    assert all(isinstance(part, tree.IndexedMessage) for part, _ in pairs)
    for part, stdlib_part in pairs:
        same_answers(part, stdlib_part)


CHANGES = {
    "set": lambda m: m.__setitem__("Content-Type", "text/html"),
    "delete": lambda m: m.__delitem__("content-type"),
    "replace": lambda m: m.replace_header("Content-Type", "image/png"),
    "add": lambda m: m.add_header("Content-Disposition", "attachment", filename="a.txt"),
    "set a parameter": lambda m: m.set_param("charset", "koi8-r"),
    "delete a parameter": lambda m: m.del_param("charset"),
    "set the type": lambda m: m.set_type("text/x-other"),
    "set the boundary": lambda m: m.set_boundary("new-boundary"),
    "set raw": lambda m: m.set_raw("X-New", "1"),
}
MAIL = (
    b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b; charset=utf-8\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"
)


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_change_of_the_headers_is_seen_by_the_next_lookup(change):
    indexed, plain = tree.read(MAIL), email.message_from_bytes(MAIL, policy=policy.compat32)
    same_answers(indexed, plain)  # the index is made here, then the headers change
    change(indexed)
    change(plain)
    same_answers(indexed, plain)


def test_a_changed_list_of_parameters_changes_nothing_for_the_next_ask():
    indexed = tree.read(MAIL)
    indexed.get_params(unquote=False).append(("x", "y"))
    assert indexed.get_params() == email.message_from_bytes(MAIL, policy=policy.compat32).get_params()
