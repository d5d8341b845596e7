"""Hostile and malformed mail: each one is stored as well as it can be read, or refused with a
clear code; the daemon stays up and its memory stays bounded."""

from __future__ import annotations

import smtplib

import pytest
from sqlalchemy import create_engine, func, select

from mailgate.config import load_config
from mailgate.mail import parse as parsing
from mailgate.storage.models import Attachment, Message
from tests.helpers import wait_for
from tests.hostile import hostile_messages

HOSTILE = hostile_messages()


@pytest.mark.parametrize(("name", "raw"), HOSTILE, ids=[name for name, _ in HOSTILE])
def test_the_parser_never_raises_and_never_leaks_control_characters_into_headers(name, raw):
    mail = parsing.parse(raw)
    for value in (mail.subject, mail.from_addr, mail.from_name, mail.message_id, *mail.to, *mail.cc):
        assert "\r" not in value and "\n" not in value and "\x00" not in value
    for attachment in mail.attachments:
        assert "/" not in attachment.filename and "\\" not in attachment.filename
        assert attachment.filename not in ("", ".", "..") and len(attachment.filename) <= 255


def test_every_hostile_mail_goes_through_the_pipeline_without_a_failure(harness):
    for _name, raw in HOSTILE:
        if len(raw) > 5_000_000:
            continue  # the 20 MB one is covered over SMTP below
        harness.deliver(raw)
    spool = harness.runtime.spool
    assert spool.depth() == {"incoming": 0, "work": 0, "quarantine": 0}
    with harness.session() as s:
        filenames = list(s.scalars(select(Attachment.filename)))
        assert s.scalar(select(func.count(Message.id))) >= len(HOSTILE) - 5
    assert all("/" not in f and "\\" not in f for f in filenames)


def _vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def test_over_smtp_each_is_stored_or_refused_and_the_daemon_stays_up(make_config, daemon_factory):
    config = make_config(smtp={"max_message_size": "40MB"})
    daemon = daemon_factory(config)
    accepted, refused = [], []
    for name, raw in HOSTILE:
        try:
            daemon.send(raw)
            accepted.append(name)
        except smtplib.SMTPResponseException as exc:
            assert 500 <= exc.smtp_code < 600, (name, exc.smtp_code)
            refused.append((name, exc.smtp_code))
        assert daemon.alive, name
    assert ("no_headers_at_all", 550) in refused
    assert "attachment_20mb" in accepted
    spool = load_config(config).spool_dir

    def settled() -> bool:
        return not any(spool.glob("incoming/*.eml")) and not any(spool.glob("work/**/*.eml"))

    wait_for(settled, timeout=120, message="spool drained")
    assert not any(spool.glob("quarantine/*.eml")), "the pipeline failed on a hostile mail"
    engine = create_engine(load_config(config).db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count(Message.id))).scalar_one()
        big = conn.execute(select(func.max(Attachment.size))).scalar_one()
    engine.dispose()
    duplicates = daemon.log().count("verdict=duplicate")
    assert stored + duplicates == len(accepted)
    assert big >= 20_000_000
    assert _vm_hwm_kb(daemon.proc.pid) < 600_000, "peak memory not bounded"
    assert daemon.stop() == 0
