"""A message the pipeline fails on is retried, then quarantined with its traceback, never dropped;
`mailgate spool list` shows it and `mailgate spool replay` puts it back once fixed."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from mailgate.storage.models import Message
from tests.helpers import mailgate, make_mail


def _buggy_reactor(ctx):
    if "boom" in ctx.mail.subject:
        raise RuntimeError("a bug in a reactor")


def test_failing_mail_is_retried_then_quarantined_then_replayed(harness, config_file, clock):
    harness.runtime.services.reactors = [_buggy_reactor]
    harness.deliver(make_mail(subject="boom", msgid="<boom@x>"))
    harness.deliver(make_mail(subject="fine", msgid="<fine@x>"))
    spool = harness.runtime.spool
    assert spool.depth()["incoming"] == 1  # waiting for its retry, with a delay
    meta = spool.entries("incoming")[0].read_meta()
    assert meta.attempts == 1 and "a bug in a reactor" in meta.last_error
    for _ in range(5):
        clock.advance(600)
        harness.worker.drain()
    assert spool.depth() == {"incoming": 0, "work": 0, "quarantine": 1}
    entry = spool.entries("quarantine")[0]
    meta = entry.read_meta()
    assert meta.attempts == 3 and "RuntimeError" in meta.last_error and "Traceback" in meta.traceback
    assert b"Subject: boom" in entry.read_raw()

    listed = json.loads(mailgate(config_file, "spool", "list", "--format", "json").stdout)
    assert [(e["state"], e["attempts"]) for e in listed] == [("quarantine", 3)]
    table = mailgate(config_file, "spool", "list").stdout.decode()
    assert "1 quarantined" in table

    harness.runtime.services.reactors = []  # the bug is fixed
    result = mailgate(config_file, "spool", "replay", "--all")
    assert result.returncode == 0 and b"replayed" in result.stdout
    harness.worker.drain()
    assert spool.depth() == {"incoming": 0, "work": 0, "quarantine": 0}
    with harness.session() as s:
        assert s.scalar(select(func.count(Message.id))) == 2


def test_replay_needs_an_id_or_all(config_file):
    assert mailgate(config_file, "spool", "replay").returncode == 2
    assert mailgate(config_file, "spool", "replay", "nope").returncode == 1
