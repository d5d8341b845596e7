"""A kill -9 at any instant loses nothing and duplicates nothing; a spool that
cannot be written answers 'try later' and stores nothing half-way."""

from __future__ import annotations

import contextlib
import shutil
import smtplib
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from mailgate.config import load_config
from mailgate.storage.models import Outbox, Ticket
from tests.helpers import mailgate, make_mail, stored_message_ids, wait_for
from tests.outbound_helpers import sent_mails


def _sender(port: int, start: int, count: int, accepted: list[str], lock: threading.Lock) -> None:
    """Send mails one per transaction; record the Message-IDs that got a 250."""
    client = None
    for n in range(start, start + count):
        msgid = f"<crash-{n}@customer.example>"
        try:
            if client is None:
                client = smtplib.SMTP("127.0.0.1", port, timeout=10)
            client.sendmail(
                "alice@customer.example", ["support@example.com"], make_mail(subject=f"crash test {n}", msgid=msgid)
            )
        except (OSError, smtplib.SMTPException):
            client = None  # the daemon is gone; the rest of this connection's mails are not accepted
            return
        with lock:
            accepted.append(msgid)
    if client is not None:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.quit()


def test_kill_9_during_a_batch_of_200_loses_and_duplicates_nothing(daemon_factory, config_file):
    daemon = daemon_factory(config_file)
    accepted: list[str] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_sender, args=(daemon.port, i * 50, 50, accepted, lock)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(accepted) >= 60, timeout=180, message="60 mails accepted")
    daemon.kill()
    for thread in threads:
        thread.join(30)
    assert len(accepted) >= 60

    restarted = daemon_factory(config_file)
    wait_for(
        lambda: set(accepted) <= set(stored_message_ids(config_file)),
        timeout=180,
        interval=0.5,
        message="every accepted mail stored after restart",
    )
    restarted.stop()
    ids = stored_message_ids(config_file)
    assert len(ids) == len(set(ids)), "a mail was stored twice"
    engine = create_engine(load_config(config_file).db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count(Ticket.id))).scalar_one() == len(ids)
    engine.dispose()


def _send_in_order(port: int, mails: list[bytes], next_mail: list[int]) -> None:
    """Send from ``next_mail[0]`` on, one connection, moving on only after each 250; stop when the daemon dies."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            while next_mail[0] < len(mails):
                n = next_mail[0]
                client.sendmail(f"c{n}@customer.example", ["support@example.com"], mails[n])
                next_mail[0] = n + 1
    except (OSError, smtplib.SMTPException):
        return  # killed: the mail without its 250 is sent again to the next daemon


@pytest.mark.slow
def test_kill_9_five_times_under_200_mails_with_the_maildir_sender_acknowledges_each_ticket_exactly_once(
    make_config, daemon_factory
):
    total, kills = 200, 5
    config = make_config(
        agents=[{"address": "bob@example.com", "name": "Bob", "queues": ["support"]}],
        outbound={"sweep_interval": "1s", "retry_base": "1s", "retry_max": "1s"},
        # On a slow machine one mail can be in hand at three of the kills, and three claims without a
        # verdict make a poison pill (tested apart): here every kill is the test's, none the mail's.
        spool={"max_claims": kills + 1},
    )
    mails = [
        make_mail(
            subject=f"kill test {n}",
            sender=f"Customer {n} <c{n}@customer.example>",
            msgid=f"<k9-maildir-{n}@customer.example>",
        )
        for n in range(total)
    ]
    next_mail = [0]
    for round_ in range(kills + 1):
        daemon = daemon_factory(config)
        thread = threading.Thread(target=_send_in_order, args=(daemon.port, mails, next_mail))
        thread.start()
        if round_ < kills:  # kill while mails come in, are processed and are acknowledged
            target = (round_ + 1) * total // (kills + 2)
            wait_for(lambda t=target: next_mail[0] >= t, timeout=180, message=f"{target} mails accepted")
            daemon.kill()
        thread.join(180)
    assert next_mail[0] == total

    engine = create_engine(load_config(config).db_url)

    state: dict[str, object] = {}

    def settled() -> bool:
        with engine.connect() as conn:
            tickets = conn.execute(select(func.count(Ticket.id))).scalar_one()
            pending = conn.execute(select(func.count(Outbox.id)).where(Outbox.status == "pending")).scalar_one()
        spool = load_config(config).spool_dir
        state.update(
            tickets=tickets,
            pending=pending,
            spool={d.name: len(list(d.glob("*.eml"))) for d in spool.iterdir() if d.is_dir()},
        )
        return tickets == total and pending == 0

    try:
        wait_for(settled, timeout=300, interval=0.5, message="every ticket stored and every mail delivered")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; at the end: {state}\n{daemon.log()[-4000:]}") from None
    daemon.stop()
    engine.dispose()
    sent = sent_mails(load_config(config).data_dir)
    to = Counter(m["To"].addresses[0].addr_spec for m in sent)
    acknowledgments = {address: n for address, n in to.items() if address != "bob@example.com"}
    assert acknowledgments == {f"c{n}@customer.example": 1 for n in range(total)}, "one acknowledgment each"
    notifications = [m["Subject"] for m in sent if m["To"].addresses[0].addr_spec == "bob@example.com"]
    assert len(notifications) == len(set(notifications)) == total, "one notification per ticket"


def _break_spool(config: Path) -> Path:
    """Make the spool unusable even for root: its tmp folder becomes a plain file."""
    tmp = load_config(config).spool_dir / "tmp"
    if tmp.is_dir():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text("not a directory")
    return tmp


def _spool_entries(config: Path) -> list[str]:
    spool = load_config(config).spool_dir
    return [p.name for p in spool.rglob("*.eml")] if spool.exists() else []


def test_an_unwritable_spool_answers_451_and_stores_nothing(daemon, config_file):
    tmp = _break_spool(config_file)
    try:
        daemon.send(make_mail(subject="cannot be stored"))
        raise AssertionError("expected a 451")
    except smtplib.SMTPDataError as exc:
        assert exc.smtp_code == 451
    assert daemon.alive
    assert _spool_entries(config_file) == []
    assert stored_message_ids(config_file) == []
    assert "answered 451" in daemon.log()
    # once the disk is fixed, the same daemon accepts again
    tmp.unlink()
    tmp.mkdir()
    daemon.send(make_mail(subject="stored now", msgid="<later@customer.example>"))
    wait_for(lambda: stored_message_ids(config_file) == ["<later@customer.example>"], message="stored after fix")


def test_ingest_exits_75_when_it_cannot_store(config_file, tmp_path):
    assert mailgate(config_file, "db", "upgrade").returncode == 0
    _break_spool(config_file)
    mail = tmp_path / "mail.eml"
    mail.write_bytes(make_mail())
    result = mailgate(config_file, "ingest", str(mail))
    assert result.returncode == 75, result.stderr
    assert b"retry later" in result.stderr
    assert stored_message_ids(config_file) == []


def test_ingest_spools_a_mail_from_stdin_and_a_file_and_the_daemon_stores_both(config_file, tmp_path, daemon_factory):
    result = mailgate(config_file, "ingest", input=make_mail(subject="piped", msgid="<p1@x>"))
    assert result.returncode == 0, result.stderr
    mail = tmp_path / "m.eml"
    mail.write_bytes(make_mail(subject="Re: piped [#1]", msgid="<p2@x>"))
    assert mailgate(config_file, "ingest", str(mail)).returncode == 0
    assert len(_spool_entries(config_file)) == 2
    daemon_factory(config_file)
    wait_for(lambda: sorted(stored_message_ids(config_file)) == ["<p1@x>", "<p2@x>"], message="both stored")
    wait_for(lambda: _spool_entries(config_file) == [], message="the spool settled")


def test_ingest_refuses_what_is_not_a_mail_with_65(config_file):
    for data in (b"", b"\x00\x01\x02 binary garbage", b"hello, this is just text\n"):
        result = mailgate(config_file, "ingest", "-", input=data)
        assert result.returncode == 65, (data, result.stderr)
        assert b"not a mail" in result.stderr


def test_ingest_of_a_missing_file_exits_66(config_file, tmp_path):
    assert mailgate(config_file, "ingest", str(tmp_path / "nope.eml")).returncode == 66


def test_ingest_mbox_and_maildir_import_many_with_a_summary(config_file, tmp_path):
    import mailbox

    box = mailbox.mbox(tmp_path / "import.mbox")
    for n in range(30):
        box.add(make_mail(subject=f"imported {n}", msgid=f"<imp-{n}@x>"))
    box.add(make_mail(subject="Re: imported 0 [#1]", msgid="<imp-reply@x>"))
    box.flush()
    box.close()
    result = mailgate(config_file, "ingest", "--mbox", str(tmp_path / "import.mbox"), "--batch", "7")
    assert result.returncode == 0, result.stderr
    summary = result.stdout.decode()
    assert "imported 31 mails" in summary and "30 new" in summary and "1 reply" in summary
    again = mailgate(config_file, "ingest", "--mbox", str(tmp_path / "import.mbox"))
    assert "31 duplicate" in again.stdout.decode()

    maildir = mailbox.Maildir(tmp_path / "md", create=True)
    maildir.add(make_mail(subject="from a maildir", msgid="<md-1@x>"))
    maildir.close()
    result = mailgate(config_file, "ingest", "--maildir", str(tmp_path / "md"))
    assert result.returncode == 0 and "1 new" in result.stdout.decode()
    assert len(stored_message_ids(config_file)) == 32


def test_entries_left_in_work_by_a_crash_are_processed_at_start(config_file, daemon_factory):
    config = load_config(config_file)
    work = config.spool_dir / "work"
    work.mkdir(parents=True)
    (work / "00000000000000000001-1-0.eml").write_bytes(make_mail(subject="left behind", msgid="<lb@x>"))
    (work / "00000000000000000001-1-0.json").write_text('{"id": "00000000000000000001-1-0", "source": "smtp"}')
    daemon_factory(config_file)
    wait_for(lambda: stored_message_ids(config_file) == ["<lb@x>"], message="recovered entry stored")
    assert not any(work.rglob("*.eml"))  # nor in a worker process's folder, work/w<i>/


def test_an_import_writes_to_nobody_unless_asked(make_config, tmp_path):
    import mailbox

    from mailgate.storage.models import Outbox

    config = make_config(agents=[{"address": "bob@example.com", "name": "Bob", "queues": ["support"]}])
    box = mailbox.mbox(tmp_path / "old.mbox")
    box.add(make_mail(subject="old one", msgid="<old-1@x>"))
    box.flush()
    box.close()
    assert mailgate(config, "ingest", "--mbox", str(tmp_path / "old.mbox")).returncode == 0
    engine = create_engine(load_config(config).db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count(Outbox.id))).scalar_one() == 0
    box = mailbox.mbox(tmp_path / "new.mbox")
    box.add(make_mail(subject="new one", msgid="<new-1@x>"))
    box.flush()
    box.close()
    assert mailgate(config, "ingest", "--mbox", str(tmp_path / "new.mbox"), "--auto-reply").returncode == 0
    with engine.connect() as conn:
        kinds = sorted(conn.execute(select(Outbox.kind)).scalars())
    engine.dispose()
    assert kinds == ["acknowledgment", "notify_new_ticket"]
