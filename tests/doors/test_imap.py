"""IMAP intake against a real Dovecot: mail in the mailbox becomes tickets exactly once.

Mail is put into the mailbox by IMAP APPEND (the way any mail server or
client would), the daemon is a real ``mailgate serve`` process, and the
assertions read tickets from mailgate's database and the mailbox from
Dovecot.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mailgate.doors.imap import AccountPoller, pollers
from tests import dovecot as dovecot_module
from tests.dovecot import Dovecot
from tests.helpers import Daemon, mailgate, make_mail, wait_for

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.skipif(
        not dovecot_module.available(),
        reason=f"no Dovecot binary at {dovecot_module.DOVECOT} (Debian package dovecot-imapd)",
    ),
]


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot({"support": "secret", "sales": "s3cret"}).start()
    yield server
    server.close()


def account(server: Dovecot, **overrides: Any) -> dict[str, Any]:
    """An [[imap]] table for ``server``'s support mailbox."""
    return {
        "name": "support",
        "host": "127.0.0.1",
        "port": server.port,
        "tls": "none",
        "username": "support",
        "password": "secret",
        "poll_interval": "10m",
        **overrides,
    }


def mail(name: str, body: str = "Hello,\nit does not work.\n") -> bytes:
    """A mail from a customer of its own (as a support mailbox gets them), Message-ID <name@customer.example>."""
    return make_mail(
        subject=f"Question {name}",
        sender=f"Customer {name} <{name}@customer.example>",
        msgid=f"<{name}@customer.example>",
        body=body,
    )


def mails(count: int, prefix: str = "question", body: str = "Hello,\nit does not work.\n") -> list[bytes]:
    return [mail(f"{prefix}-{i}", body) for i in range(count)]


def stored(db_url: str) -> list[str]:
    """The Message-ID of every message mailgate stored (one per ticket here)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text("SELECT message_id FROM messages"))]
    except Exception:  # the daemon has not created the schema yet
        return []
    finally:
        engine.dispose()


def tickets(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM tickets")).scalar_one())
    finally:
        engine.dispose()


def fetched_counts(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"msg=fetched .*?count=(\d+)", log)]


def run_poller(runtime: Any, until: Callable[[AccountPoller], bool], timeout: float = 30) -> AccountPoller:
    """Run the account's poller in this process until ``until(poller)`` holds, then stop it."""

    async def main() -> AccountPoller:
        stop = asyncio.Event()
        [poller] = pollers(runtime, stop)
        task = asyncio.create_task(poller.run())
        deadline = asyncio.get_running_loop().time() + timeout
        while not until(poller):
            assert asyncio.get_running_loop().time() < deadline, f"poller state {poller.state!r}"
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 15)
        return poller

    return asyncio.run(main())


# -- acceptance 1: exactly once, moved, IDLE --------------------------------------------------
@pytest.mark.slow
def test_500_messages_become_tickets_exactly_once_and_move_to_the_processed_folder(
    dovecot: Dovecot, make_config: Callable[..., Path], daemon_factory: Callable[..., Daemon], db_url: str
) -> None:
    sent = mails(500)
    dovecot.append_many("support", sent)
    daemon = daemon_factory(make_config(imap=[account(dovecot, move_to="Processed")]))

    wait_for(lambda: len(stored(db_url)) >= 500, timeout=90, interval=0.25, message="500 tickets")
    wait_for(lambda: dovecot.count("INBOX") == 0, timeout=10, message="an empty INBOX")

    expected = {f"<question-{i}@customer.example>" for i in range(500)}
    ids = stored(db_url)
    assert len(ids) == 500 and set(ids) == expected
    assert tickets(db_url) == 500
    assert set(dovecot.message_ids("Processed")) == expected and dovecot.count("Processed") == 500
    # fetched with BODY.PEEK[]: moving them did not mark them read
    assert all("\\Seen" not in flags for flags in dovecot.flags("Processed").values())
    # in batches: never the whole folder at once
    counts = fetched_counts(daemon.log())
    assert sum(counts) == 500 and max(counts) <= 50 and len(counts) >= 10

    assert "idle=yes" in daemon.log()
    dovecot.append("support", mail("late"))
    # poll_interval is 10 minutes: only IDLE can bring it in this fast
    wait_for(lambda: "<late@customer.example>" in stored(db_url), timeout=10, message="the IDLE pickup")
    assert dovecot.count("INBOX") == 0 or wait_for(lambda: dovecot.count("INBOX") == 0, timeout=5)
    assert tickets(db_url) == 501
    assert daemon.alive


# -- acceptance 2: the server goes away mid-fetch ---------------------------------------------
@pytest.mark.slow
def test_dovecot_restarted_mid_fetch_loses_nothing_duplicates_nothing_and_the_daemon_reconnects(
    dovecot: Dovecot, make_config: Callable[..., Path], daemon_factory: Callable[..., Daemon], db_url: str
) -> None:
    total = 200
    dovecot.append_many("support", mails(total, "big", body="x" * 30_000 + "\n"))
    daemon = daemon_factory(make_config(imap=[account(dovecot)]))
    wait_for(lambda: "msg=fetched" in daemon.log(), timeout=30, interval=0.01, message="the first batch")
    dovecot.stop()
    wait_for(lambda: "connection lost" in daemon.log(), timeout=15, message="the daemon to notice")
    dovecot.start()
    assert 0 < dovecot.count("Processed") < total, "the restart did not happen mid-fetch"

    wait_for(lambda: dovecot.count("INBOX") == 0, timeout=60, interval=0.25, message="an empty INBOX")
    wait_for(lambda: len(stored(db_url)) >= total, timeout=60, interval=0.25, message="every ticket")
    ids = stored(db_url)
    assert len(ids) == total and set(ids) == {f"<big-{i}@customer.example>" for i in range(total)}
    assert tickets(db_url) == total
    assert dovecot.count("Processed") == total
    log = daemon.log()
    assert log.count("IMAP server unreachable or connection lost") == 1  # once per state change, not per retry
    assert log.count('msg="IMAP connected"') == 2
    assert daemon.alive


# -- acceptance 3: kill -9 of mailgate mid-batch ----------------------------------------------
def spooled(spool: Path) -> set[str]:
    """Message-IDs of the mails waiting in (or being worked from) the spool."""
    found = set()
    for path in [*spool.glob("incoming/*.eml"), *spool.glob("work/*.eml")]:
        try:
            head = path.read_bytes()[:4096]
        except FileNotFoundError:  # settled meanwhile
            continue
        if match := re.search(rb"^Message-ID:\s*(<[^>]*>)", head, re.MULTILINE | re.IGNORECASE):
            found.add(match.group(1).decode())
    return found


def kill_while_stored_but_still_in_the_inbox(daemon: Daemon, dovecot: Dovecot, db_url: str, spool: Path) -> None:
    """Freeze the daemon (SIGSTOP) at instants until a mail it has stored is still in the INBOX; kill -9 it there.

    That is the instant between "the spool entry is durable" and "the server
    has moved it". At every frozen instant on the way, no mail may be in the
    processed folder without being in mailgate's spool or database.
    """
    assert daemon.proc is not None
    pid = daemon.proc.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.01)  # let it run a little, then look at a frozen instant
        os.kill(pid, signal.SIGSTOP)
        kept = spooled(spool) | set(stored(db_url))
        missing = set(dovecot.message_ids("Processed")) - kept
        assert not missing, f"moved on the server but not stored: {sorted(missing)[:3]}"
        if kept & set(dovecot.message_ids("INBOX")):
            daemon.stop(signal.SIGKILL)
            return
        os.kill(pid, signal.SIGCONT)
    raise AssertionError("never caught the daemon between spooling and moving")


@pytest.mark.slow
def test_kill_9_during_fetch_batches_leaves_every_mail_in_exactly_one_ticket(
    dovecot: Dovecot, make_config: Callable[..., Path], daemon_factory: Callable[..., Daemon], db_url: str
) -> None:
    total = 250
    dovecot.append_many("support", mails(total, "crash", body="y" * 20_000 + "\n"))
    config = make_config(imap=[account(dovecot)])
    spool = config.parent / "data" / "spool"

    # 1: killed with a batch durable in the spool but not yet moved on the server
    first = daemon_factory(config)
    kill_while_stored_but_still_in_the_inbox(first, dovecot, db_url, spool)
    # 2: killed just after a move, before the last UID was remembered
    second = daemon_factory(config)
    wait_for(lambda: "msg=fetched" in second.log(), timeout=30, interval=0.005, message="a batch")
    second.stop(signal.SIGKILL)
    assert dovecot.count("INBOX") > 0, "the second kill came after the last batch"

    daemon = daemon_factory(config)
    wait_for(lambda: dovecot.count("INBOX") == 0, timeout=60, interval=0.25, message="an empty INBOX")
    wait_for(lambda: len(stored(db_url)) >= total, timeout=60, interval=0.25, message="every ticket")
    ids = stored(db_url)
    assert len(ids) == total and set(ids) == {f"<crash-{i}@customer.example>" for i in range(total)}
    assert tickets(db_url) == total
    processed = dovecot.message_ids("Processed")
    assert len(processed) == total and set(processed) <= set(ids)  # nothing processed yet missing from mailgate
    # the mails caught in the first crash were fetched twice; the second copy was dropped
    assert "verdict=duplicate" in second.log() + daemon.log()
    assert daemon.alive


# -- acceptance 4: UIDVALIDITY changes ----------------------------------------------------------
def test_a_recreated_mailbox_with_a_new_uidvalidity_is_read_again_without_duplicates(
    dovecot: Dovecot, make_config: Callable[..., Path], daemon_factory: Callable[..., Daemon], db_url: str
) -> None:
    dovecot.append_many("support", mails(20, "before"))
    daemon = daemon_factory(make_config(imap=[account(dovecot, after_store="flag")]))
    wait_for(lambda: len(stored(db_url)) == 20, timeout=30, message="20 tickets")
    wait_for(
        lambda: len(dovecot.flags()) == 20 and all("\\Seen" in f for f in dovecot.flags().values()),
        timeout=10,
        message="20 messages flagged \\Seen",
    )

    # someone cleans up half the folder, then the mailbox is recreated (a migration):
    # the 10 old mails get UIDs 1..10 under a new UIDVALIDITY, the new mail UID 11,
    # far below the 20 mailgate remembers
    dovecot.expunge(range(1, 11))
    dovecot.recreate_inbox()
    dovecot.append("support", mail("after"))

    wait_for(lambda: "<after@customer.example>" in stored(db_url), timeout=30, message="the new mail")
    wait_for(lambda: all("\\Seen" in f for f in dovecot.flags().values()), timeout=10, message="all flagged")
    ids = stored(db_url)
    assert len(ids) == 21 and len(set(ids)) == 21
    assert tickets(db_url) == 21
    assert "UIDVALIDITY changed" in daemon.log()
    assert daemon.alive


# -- acceptance 5: wrong password --------------------------------------------------------------
def test_a_wrong_password_is_one_clear_log_line_and_smtp_intake_goes_on(
    dovecot: Dovecot, make_config: Callable[..., Path], daemon_factory: Callable[..., Daemon], db_url: str
) -> None:
    dovecot.append("support", mail("waiting"))
    daemon = daemon_factory(make_config(imap=[account(dovecot, password="wrong")]))
    wait_for(lambda: "IMAP login failed" in daemon.log(), timeout=15, message="the login error")

    failed_at = time.monotonic()
    daemon.send(mail("smtp"), mail_from="smtp@customer.example")
    wait_for(lambda: "<smtp@customer.example>" in stored(db_url), timeout=15, message="the SMTP ticket")
    # a quick retry schedule (1s, 2s, …) would have tried again by now
    time.sleep(max(0.0, failed_at + 3 - time.monotonic()))

    line = next(ln for ln in daemon.log().splitlines() if "IMAP login failed" in ln)
    assert "level=error" in line and "account=support" in line and "user=support" in line
    assert "AUTHENTICATIONFAILED" in line and "retry_in=300s" in line
    assert daemon.log().count("IMAP login failed") == 1
    assert len(re.findall(r"auth failed", dovecot.log())) == 1  # retried slowly, not in a tight loop
    assert daemon.alive and dovecot.count("INBOX") == 1


# -- the other promises, in process --------------------------------------------------------------
def test_without_idle_or_move_the_folder_is_polled_and_moved_by_copy_and_expunge(
    make_config: Callable[..., Path], harness_factory: Callable[..., Any]
) -> None:
    server = Dovecot(capability="IMAP4rev1 UIDPLUS").start()
    try:
        server.append_many("support", mails(3))
        harness = harness_factory(make_config(imap=[account(server, poll_interval="1s")]))

        appended: list[int] = []

        def picked_up_late_mail(poller: AccountPoller) -> bool:
            if poller.fetched == 3 and not appended:
                appended.append(server.append("support", mail("polled")))
            return poller.fetched == 4

        poller = run_poller(harness.runtime, picked_up_late_mail)
        assert poller.idles == 0
        assert server.count("INBOX") == 0 and server.count("Processed") == 4
        harness.worker.drain()
        with harness.session() as session:
            assert session.execute(text("SELECT count(*) FROM tickets")).scalar_one() == 4
    finally:
        server.close()


def test_idle_is_renewed_every_poll_interval(
    dovecot: Dovecot, make_config: Callable[..., Path], harness_factory: Callable[..., Any]
) -> None:
    harness = harness_factory(make_config(imap=[account(dovecot, poll_interval="1s")]))
    appended: list[int] = []

    # after three renewals the connection still idles and still hears about new mail
    def renewed_three_times_then_fetched(poller: AccountPoller) -> bool:
        if poller.idles >= 3 and not appended:
            appended.append(dovecot.append("support", mail("renewed")))
        return poller.fetched == 1

    poller = run_poller(harness.runtime, renewed_three_times_then_fetched, timeout=15)
    assert poller.state == "connected" and poller.idles >= 3


def test_flag_marks_seen_and_leaves_the_mail_in_place(
    dovecot: Dovecot, make_config: Callable[..., Path], harness_factory: Callable[..., Any]
) -> None:
    dovecot.append_many("support", mails(5))
    harness = harness_factory(make_config(imap=[account(dovecot, after_store="flag")]))
    run_poller(harness.runtime, lambda p: p.fetched == 5)
    assert all("\\Seen" in flags for flags in dovecot.flags().values()) and dovecot.count() == 5
    assert dovecot.count("Processed") == 0
    assert harness.runtime.spool.depth()["incoming"] == 5


def test_delete_expunges_and_creates_no_folder(
    dovecot: Dovecot, make_config: Callable[..., Path], harness_factory: Callable[..., Any]
) -> None:
    dovecot.append_many("support", mails(5))
    harness = harness_factory(make_config(imap=[account(dovecot, after_store="delete")]))
    run_poller(harness.runtime, lambda p: p.fetched == 5)
    assert dovecot.count("INBOX") == 0
    with dovecot.client() as conn:
        names = b" ".join(n for n in conn.list()[1] if n)
    assert b"Processed" not in names
    assert harness.runtime.spool.depth()["incoming"] == 5


def test_another_folder_and_a_folder_name_beyond_ascii(
    dovecot: Dovecot, make_config: Callable[..., Path], harness_factory: Callable[..., Any]
) -> None:
    dovecot.append_many("support", mails(2), folder="Anfragen")
    harness = harness_factory(make_config(imap=[account(dovecot, folder="Anfragen", move_to="Erledigt & Übergeben")]))
    run_poller(harness.runtime, lambda p: p.fetched == 2)
    assert dovecot.count("Anfragen") == 0 and dovecot.count("Erledigt & Übergeben") == 2
    [entry, _] = harness.runtime.spool.entries()
    meta = entry.read_meta()
    assert meta.source == "imap"
    assert meta.extra["account"] == "support" and meta.extra["folder"] == "Anfragen"
    assert meta.extra["uid"] == 1 and meta.extra["uidvalidity"] > 0


@pytest.mark.parametrize("mode", ["tls", "starttls"])
def test_tls_and_starttls_verify_the_certificate(
    mode: str, make_config: Callable[..., Path], harness_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Dovecot(tls=True).start()
    try:
        server.append_many("support", mails(2))
        port = server.tls_port if mode == "tls" else server.port
        harness = harness_factory(make_config(imap=[account(server, tls=mode, port=port)]))

        # a certificate nobody vouches for: refused, reported, retried, nothing fetched
        untrusted = run_poller(harness.runtime, lambda p: p.state == "disconnected", timeout=15)
        assert untrusted.fetched == 0 and server.count("INBOX") == 2

        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))
        trusted = run_poller(harness.runtime, lambda p: p.fetched == 2)
        assert trusted.state == "connected" and server.count("Processed") == 2
        assert "TLS" in server.log()
    finally:
        server.close()


def test_stop_ends_the_poller_while_the_server_is_down(
    make_config: Callable[..., Path], harness_factory: Callable[..., Any]
) -> None:
    server = Dovecot()  # never started: connection refused
    try:
        harness = harness_factory(make_config(imap=[account(server)]))
        poller = run_poller(harness.runtime, lambda p: p.state == "disconnected", timeout=10)
        assert poller.fetched == 0
    finally:
        server.close()


# -- the command ---------------------------------------------------------------------------------
def test_imap_test_logs_in_lists_folder_counts_and_says_what_would_be_fetched(
    dovecot: Dovecot, make_config: Callable[..., Path]
) -> None:
    dovecot.append_many("support", mails(12))
    dovecot.append_many("support", mails(2, "old"), folder="Archive")
    config = make_config(imap=[account(dovecot), account(dovecot, name="wrong", password="nope", folder="Archive")])

    result = mailgate(config, "imap", "test", "support")
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert re.search(r"INBOX\s+12 messages\s+12 unseen", out)
    assert re.search(r"Archive\s+2 messages", out)
    assert "would fetch 12 messages (UIDs 1-12), each moved to 'Processed'" in out
    assert dovecot.count("INBOX") == 12 and dovecot.count("Processed") == 0  # nothing changed

    everyone = mailgate(config, "imap", "test")
    assert everyone.returncode == 1
    assert "login FAILED" in everyone.stdout.decode() and "AUTHENTICATIONFAILED" in everyone.stdout.decode()

    unknown = mailgate(config, "imap", "test", "nobody")
    assert unknown.returncode == 2 and "support, wrong" in unknown.stderr.decode()
