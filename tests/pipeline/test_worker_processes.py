"""The pipeline in several worker processes (``[spool] workers``): exactly once, in order, restarted.

Real daemons with real worker processes on one spool; the claims and the
routing are also tested alone, on real files and real processes.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import smtplib
import threading
from pathlib import Path

from sqlalchemy import create_engine, func, select

from mailgate.config import auto_workers, load_config
from mailgate.spool.disk import Spool, SpoolMeta
from mailgate.storage.models import Message, Ticket
from mailgate.workers import Router, share_of, thread_key
from tests.helpers import make_mail, wait_for

WORKERS = {"workers": 2, "max_attempts": 3, "batch_size": 20}


def _rows(config: Path) -> tuple[list[tuple[str, int, int]], int]:
    """(message_id, ticket number, message pk) of every stored message, and the number of tickets."""
    engine = create_engine(load_config(config).db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Message.message_id, Ticket.number, Message.id).join(Ticket, Ticket.id == Message.ticket_id)
            ).all()
            tickets = conn.execute(select(func.count(Ticket.id))).scalar_one()
        return [tuple(r) for r in rows], tickets
    finally:
        engine.dispose()


def _worker_pids(daemon_pid: int) -> list[int]:
    """The worker processes of a daemon: its children running mailgate.workers."""
    pids = []
    for task in Path(f"/proc/{daemon_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                if b"mailgate.workers" in Path(f"/proc/{child}/cmdline").read_bytes():
                    pids.append(int(child))
            except FileNotFoundError:
                continue
    return sorted(pids)


def _spool_left(config: Path) -> list[Path]:
    return sorted(load_config(config).spool_dir.rglob("*.eml"))


def _send_all(port: int, mails: list[bytes], connections: int = 4) -> None:
    """Send every mail over a few concurrent SMTP sessions, in order within each session."""

    def run(part: list[bytes]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for raw in part:
                client.sendmail("alice@customer.example", ["support@example.com"], raw)

    threads = [threading.Thread(target=run, args=(mails[i::connections],)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)


def _first_and_reply(n: int) -> tuple[bytes, bytes]:
    first = make_mail(subject=f"question {n}", sender=f"Customer {n} <c{n}@customer.example>", msgid=f"<q{n}@x>")
    reply = make_mail(
        subject=f"Re: question {n}",
        sender=f"Colleague {n} <k{n}@other.example>",
        msgid=f"<r{n}@x>",
        in_reply_to=f"<q{n}@x>",
        references=f"<q{n}@x>",
    )
    return first, reply


# -- routing and claims, alone ----------------------------------------------------------------------


def test_a_first_mail_and_every_reply_to_it_have_one_key_whatever_their_sender():
    first, reply = _first_and_reply(7)
    deeper = make_mail(
        subject="Re: Re: question 7",
        msgid="<r7b@x>",
        in_reply_to="<r7@x>",
        references="<q7@x> <ack7@support.example.com> <r7@x>",
    )
    assert thread_key(first) == thread_key(reply) == thread_key(deeper) == "<q7@x>"
    assert thread_key(make_mail(subject="Re: printer [#12]", msgid="<t@x>")) == "#12"
    assert {share_of(f"<m{n}@x>", 2) for n in range(50)} == {0, 1}  # both workers get work


def _claim_all(root: str, worker: str, ids: list[str], out: multiprocessing.Queue) -> None:
    spool = Spool(Path(root), worker=worker)
    spool.ensure()
    waiting = {entry.id: entry for entry in spool.entries("incoming")}
    out.put([taken.id for i in ids if i in waiting and (taken := spool.claim(waiting[i])) is not None])


def test_two_worker_processes_never_claim_one_entry(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    ids = [spool.put(make_mail(msgid=f"<c{n}@x>"), SpoolMeta(id="")).id for n in range(300)]
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_claim_all, args=(str(spool.root), f"w{i}", ids, out)) for i in (0, 1)]
    for p in procs:
        p.start()
    taken = [out.get(timeout=60), out.get(timeout=60)]
    for p in procs:
        p.join(60)
    assert sorted(taken[0] + taken[1]) == sorted(ids)
    assert not set(taken[0]) & set(taken[1])
    assert spool.depth()["work"] == 300


def test_a_dead_worker_returns_its_own_claims_charged_once_and_no_other_workers(tmp_path):
    root = tmp_path / "spool"
    one, two = Spool(root, worker="w0"), Spool(root, worker="w1")
    one.ensure(), two.ensure()
    for n in range(3):
        one.put(make_mail(msgid=f"<d{n}@x>"), SpoolMeta(id=""))
    entries = one.entries("incoming")
    one.claim(entries[0]), one.claim(entries[1]), two.claim(entries[2])
    assert one.recover_worker("w0") == 2
    claims = sorted(int(e.read_meta().extra.get("claims", 0)) for e in one.entries("incoming"))
    assert claims == [1, 1]
    assert [e.id for e in one.entries("work")] == [entries[2].id]  # w1's claim untouched
    assert one.recover_worker("w0") == 0  # a second look charges nothing more


def test_a_router_takes_only_its_share_and_the_two_cover_the_spool(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    for n in range(40):
        first, reply = _first_and_reply(n)
        spool.put(first, SpoolMeta(id="")), spool.put(reply, SpoolMeta(id=""))
    entries = spool.entries("incoming")
    mine = [[e for e in entries if Router(i, 2)(e)] for i in (0, 1)]
    assert len(mine[0]) + len(mine[1]) == 80 and mine[0] and mine[1]
    for share in mine:
        assert len(share) % 2 == 0  # a first mail and its reply always go together


# -- real daemons ---------------------------------------------------------------------------------


def test_follow_ups_thread_and_keep_arrival_order_across_two_worker_processes(make_config, daemon_factory):
    config = make_config(spool=WORKERS)
    daemon = daemon_factory(config)
    wait_for(lambda: len(_worker_pids(daemon.proc.pid)) == 2, message="two worker processes")
    mails = []
    for n in range(30):
        mails += _first_and_reply(n)
    _send_all(daemon.port, mails, connections=1)  # each reply right behind its first mail
    wait_for(lambda: len(_rows(config)[0]) == 60, timeout=240, message="every mail stored")
    rows, tickets = _rows(config)
    assert tickets == 30
    by_id = {mid: (number, pk) for mid, number, pk in rows}
    for n in range(30):
        assert by_id[f"<r{n}@x>"][0] == by_id[f"<q{n}@x>"][0]  # the reply joined its first mail's ticket
        assert by_id[f"<r{n}@x>"][1] > by_id[f"<q{n}@x>"][1]  # and was stored after it
    # later replies carrying only the token are taken by whichever worker their key names, and thread too
    customer_of = {by_id[f"<q{n}@x>"][0]: n for n in range(30)}
    numbers = sorted(customer_of)
    _send_all(
        daemon.port,
        [
            make_mail(subject=f"Re: question [#{t}]", sender=f"c{customer_of[t]}@customer.example", msgid=f"<tok{t}@x>")
            for t in numbers
        ],
    )
    wait_for(lambda: len(_rows(config)[0]) == 90, timeout=240, message="token replies stored")
    rows, tickets = _rows(config)
    assert tickets == 30
    by_id = {mid: number for mid, number, _pk in rows}
    assert sorted(by_id[f"<tok{t}@x>"] for t in numbers) == numbers


def test_kill_9_of_one_worker_mid_batch_loses_and_doubles_nothing_and_it_is_restarted(make_config, daemon_factory):
    config = make_config(spool=WORKERS)
    daemon = daemon_factory(config)
    wait_for(lambda: len(_worker_pids(daemon.proc.pid)) == 2, message="two worker processes")
    mails = [make_mail(subject=f"load {n}", msgid=f"<k{n}@x>") for n in range(150)]
    sender = threading.Thread(target=_send_all, args=(daemon.port, mails))
    sender.start()
    wait_for(lambda: len(_rows(config)[0]) >= 10, timeout=240, message="the first mails stored")
    victim = _worker_pids(daemon.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    sender.join(300)
    wait_for(lambda: len(_rows(config)[0]) >= 150, timeout=300, message="every mail stored")
    wait_for(lambda: _spool_left(config) == [], timeout=120, message="the spool settled")
    rows, _tickets = _rows(config)
    assert sorted(mid for mid, _n, _pk in rows) == sorted(f"<k{n}@x>" for n in range(150))  # none lost, none twice
    assert "worker process ended" in daemon.log()
    wait_for(
        lambda: len(_worker_pids(daemon.proc.pid)) == 2 and victim not in _worker_pids(daemon.proc.pid),
        message="the dead worker restarted",
    )
    assert daemon.alive


def test_sighup_reaches_every_worker_and_sigterm_stops_them_all(make_config, daemon_factory):
    config = make_config(spool=WORKERS)
    daemon = daemon_factory(config)
    wait_for(lambda: len(_worker_pids(daemon.proc.pid)) == 2, message="two worker processes")
    wait_for(lambda: daemon.log().count("worker started") == 2, message="both workers ready")
    workers = _worker_pids(daemon.proc.pid)
    os.kill(daemon.proc.pid, signal.SIGHUP)
    wait_for(
        lambda: len(re.findall(r"templates reloaded", daemon.log())) == 3,
        message="the daemon and both workers reloaded",
    )
    assert daemon.stop() == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    assert daemon.log().count("worker stopped") == 2
    assert "worker process ended" not in daemon.log() and "Fatal Python error" not in daemon.log()  # both exited 0


def _history(path: Path, conversations: int) -> Path:
    """An mbox of first mails, each followed by its reply."""
    import mailbox

    box = mailbox.mbox(path)
    for n in range(conversations):
        for raw in _first_and_reply(n):
            box.add(raw)
    box.flush()
    box.close()
    return path


def test_an_mbox_import_in_two_processes_stores_each_mail_once_and_threads_the_replies(make_config, tmp_path):
    from tests.helpers import mailgate

    config = make_config(spool=WORKERS)
    _history(tmp_path / "history.mbox", 40)
    result = mailgate(config, "ingest", "--mbox", str(tmp_path / "history.mbox"), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "imported 80 mails" in result.stdout.decode() and "40 new" in result.stdout.decode()
    rows, tickets = _rows(config)
    assert tickets == 40 and len(rows) == 80
    by_id = {mid: (number, pk) for mid, number, pk in rows}
    for n in range(40):
        assert by_id[f"<r{n}@x>"][0] == by_id[f"<q{n}@x>"][0] and by_id[f"<r{n}@x>"][1] > by_id[f"<q{n}@x>"][1]
    again = mailgate(config, "ingest", "--mbox", str(tmp_path / "history.mbox"), "--workers", "2")
    assert "80 duplicate" in again.stdout.decode()


def test_by_default_the_pipeline_runs_in_worker_processes_beside_the_door(make_config, daemon_factory):
    config = make_config()  # no [spool] workers: "auto", one per core but the door's
    daemon = daemon_factory(config)
    wait_for(lambda: len(_worker_pids(daemon.proc.pid)) == auto_workers(), message="the default worker processes")
    wait_for(lambda: daemon.log().count("worker started") == auto_workers(), message="the workers ready")
    assert re.search(r'msg="worker started".* node=\S+', daemon.log())  # its lines say which machine, as the daemon's
    workers = _worker_pids(daemon.proc.pid)
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        _send_all(daemon.port, [make_mail(subject="held", msgid="<held@x>")], connections=1)
        incoming = load_config(config).spool_dir / "incoming"
        wait_for(lambda: list(incoming.glob("*.eml")), message="the mail spooled")
        assert _rows(config)[0] == []  # the daemon itself does not run the pipeline: it waits for a worker
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: len(_rows(config)[0]) == 1, message="stored by a worker process")


def test_workers_0_keeps_the_pipeline_in_the_daemons_own_process(make_config, daemon_factory):
    config = make_config(spool={"workers": 0})
    daemon = daemon_factory(config)
    _send_all(daemon.port, [make_mail(subject="in process", msgid="<inproc@x>")], connections=1)
    wait_for(lambda: len(_rows(config)[0]) == 1, message="stored")
    assert _worker_pids(daemon.proc.pid) == [] and "worker started" not in daemon.log()


def test_an_import_takes_every_core_by_default_and_one_process_with_workers_0(make_config, tmp_path):
    from mailgate.config import usable_cores
    from tests.helpers import mailgate

    history = _history(tmp_path / "history.mbox", 10)
    for spool, processes in (({}, usable_cores()), ({"workers": 0}, 1), ({"workers": 3}, 3)):
        config = make_config(spool=spool)
        result = mailgate(config, "ingest", "--mbox", str(history))
        summary = result.stdout.decode()
        assert result.returncode == 0, result.stderr
        assert f", {processes} process" in summary and "imported 20 mails" in summary, summary


def test_an_import_refuses_a_process_count_below_one_and_stores_nothing(make_config, tmp_path):
    from tests.helpers import mailgate

    config = make_config()
    history = _history(tmp_path / "history.mbox", 2)
    for bad in ("0", "-2", "two"):
        result = mailgate(config, "ingest", "--mbox", str(history), "--workers", bad)
        assert result.returncode == 2 and b"--workers" in result.stderr, result.stderr
    assert not (load_config(config).data_dir / "mailgate.sqlite3").exists() or _rows(config)[0] == []
