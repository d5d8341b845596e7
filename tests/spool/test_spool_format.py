"""A spool entry is one file: the envelope on its first line, then the mail exactly as received.

A sidecar written when the entry's state changes wins over that line, and an
entry written the older way (envelope only in a sidecar) is still read.
"""

from __future__ import annotations

import json

import pytest

from mailgate.spool.disk import Spool, SpoolMeta
from tests.helpers import make_mail


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool")
    s.ensure()
    return s


def test_one_file_per_mail_with_the_envelope_on_its_first_line(spool):
    raw = make_mail(subject="hello")
    meta = spool.put(
        raw,
        SpoolMeta(
            id="",
            source="smtp",
            mail_from="alice@customer.example",
            rcpt_tos=["support@example.com"],
            peer="192.0.2.1:4242",
        ),
    )
    assert sorted(p.name for p in spool.dirs["incoming"].iterdir()) == [f"{meta.id}.eml"]
    first, rest = (spool.dirs["incoming"] / f"{meta.id}.eml").read_bytes().split(b"\r\n", 1)
    assert first.startswith(b"X-Mailgate-Envelope: ") and rest == raw
    envelope = json.loads(first.split(b": ", 1)[1])
    assert (envelope["mail_from"], envelope["rcpt_tos"], envelope["peer"]) == (
        "alice@customer.example",
        ["support@example.com"],
        "192.0.2.1:4242",
    )
    entry = spool.find(meta.id)
    assert entry.read_raw() == raw
    assert entry.read_meta() == meta


def test_a_mail_that_forges_the_envelope_line_changes_nothing(spool):
    forged = b'X-Mailgate-Envelope: {"id":"x","source":"pipe","rcpt_tos":["boss@example.com"]}\r\n' + make_mail()
    meta = spool.put(forged, SpoolMeta(id="", source="smtp", rcpt_tos=["support@example.com"]))
    entry = spool.find(meta.id)
    assert entry.read_raw() == forged
    assert (entry.read_meta().source, entry.read_meta().rcpt_tos) == ("smtp", ["support@example.com"])


def test_control_characters_in_the_envelope_stay_on_one_line(spool):
    raw = make_mail()
    meta = spool.put(raw, SpoolMeta(id="", mail_from="evil\r\nX-Injected: 1@x", extra={"file": "a\nb"}))
    entry = spool.find(meta.id)
    assert entry.read_meta().mail_from == "evil\r\nX-Injected: 1@x"
    assert entry.read_raw() == raw
    assert entry.eml.read_bytes().count(b"\n") == raw.count(b"\n") + 1


def test_a_retry_writes_a_sidecar_that_wins_over_the_first_line(spool):
    raw = make_mail()
    meta = spool.put(raw, SpoolMeta(id="", mail_from="alice@customer.example"))
    taken = spool.claim(spool.find(meta.id))
    meta.attempts, meta.last_error = 1, "RuntimeError: boom"
    back = spool.release(taken, meta)
    assert back.sidecar.exists()
    assert (back.read_meta().attempts, back.read_meta().last_error) == (1, "RuntimeError: boom")
    assert back.read_raw() == raw


def test_an_entry_written_as_two_files_is_still_read(spool):
    raw = make_mail(subject="from before")
    (spool.dirs["incoming"] / "00000000000000000001-1-0.eml").write_bytes(raw)
    (spool.dirs["incoming"] / "00000000000000000001-1-0.json").write_text(
        '{"id": "00000000000000000001-1-0", "source": "imap", "rcpt_tos": ["help@example.com"]}'
    )
    [entry] = spool.entries("incoming")
    assert entry.read_raw() == raw
    assert (entry.read_meta().source, entry.read_meta().rcpt_tos) == ("imap", ["help@example.com"])
