"""Group commit in the spool, and batches bounded by bytes in the worker.

One directory fsync may cover many commits, but a caller must never return
before an fsync that started after its own rename has finished: that is what
makes its 250 honest.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mailgate.errors import SpoolError
from mailgate.spool.disk import SPILL_BYTES, DirSync, Spool, SpoolMeta
from tests.helpers import make_mail


class GatedFsync:
    """An fsync that records when it starts and ends, and can be held open by the test."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.gate = threading.Event()
        self.started = threading.Event()
        self.fail_next = False
        self.lock = threading.Lock()

    def __call__(self, path: Path) -> None:
        with self.lock:
            self.events.append("start")
        self.started.set()
        assert self.gate.wait(10)
        with self.lock:
            self.events.append("end")
        if self.fail_next:
            self.fail_next = False
            raise OSError(5, "Input/output error")


def _call(sync: DirSync, fsync: GatedFsync, name: str, errors: dict[str, BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            sync.sync()
        except BaseException as exc:
            errors[name] = exc
        with fsync.lock:
            fsync.events.append(f"return {name}")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_until(predicate, what: str) -> None:
    done = threading.Event()
    for _ in range(2000):
        if predicate():
            return
        done.wait(0.005)
    raise AssertionError(f"never happened: {what}")


def test_callers_that_arrive_during_an_fsync_share_the_next_one(tmp_path):
    fsync = GatedFsync()
    sync = DirSync(tmp_path, fsync)
    errors: dict[str, BaseException] = {}
    first = _call(sync, fsync, "a", errors)
    assert fsync.started.wait(10)
    fsync.started.clear()
    late = [_call(sync, fsync, name, errors) for name in "bcde"]
    _wait_until(lambda: sync._asked == 5, "four more callers waiting")
    assert fsync.events == ["start"]  # nobody returned and nobody started a second fsync yet
    fsync.gate.set()
    for thread in [first, *late]:
        thread.join(10)
    assert not errors
    assert sync.done == 2 and fsync.events.count("start") == 2
    second_start = [i for i, e in enumerate(fsync.events) if e == "start"][1]
    for name in "bcde":  # each late caller returned after the fsync that started after it asked
        assert fsync.events.index(f"return {name}") > second_start
    assert fsync.events.index("return a") > fsync.events.index("end")


def test_a_failed_fsync_fails_its_callers_and_the_next_caller_tries_again(tmp_path):
    fsync = GatedFsync()
    fsync.fail_next = True
    fsync.gate.set()
    sync = DirSync(tmp_path, fsync)
    with pytest.raises(OSError):
        sync.sync()
    sync.sync()
    assert fsync.events.count("start") == 2 and sync.done == 1


def test_concurrent_puts_are_all_stored_whole_with_fewer_directory_fsyncs(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    mails = [make_mail(subject=f"mail {i}", body=f"body {i}\n" * 50) for i in range(64)]
    barrier = threading.Barrier(16)

    def put(chunk: list[bytes]) -> None:
        barrier.wait()
        for raw in chunk:
            spool.put(raw, SpoolMeta(id="", mail_from="a@customer.example", rcpt_tos=["support@example.com"]))

    threads = [threading.Thread(target=put, args=(mails[i::16],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stored = sorted(e.read_raw() for e in spool.entries("incoming"))
    assert stored == sorted(mails)
    assert all(e.read_meta().rcpt_tos == ["support@example.com"] for e in spool.entries("incoming"))
    assert 1 <= spool.dir_syncs <= 64
    assert not any(spool.tmp.iterdir())


def test_a_discarded_entry_leaves_nothing_and_cannot_be_written_again(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    entry = spool.open_entry()
    assert entry.add(b"x" * SPILL_BYTES)
    entry.spill()
    assert any(spool.tmp.iterdir())
    entry.discard()
    assert not any(spool.tmp.iterdir())
    entry.add(b"more")
    with pytest.raises(SpoolError):
        entry.spill()
    with pytest.raises(SpoolError):
        entry.commit()
    assert not any(spool.tmp.iterdir()) and spool.entries("incoming") == []


def test_an_empty_message_is_an_empty_entry(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    meta = spool.open_entry().commit()
    assert spool.find(meta.id).read_raw() == b""


def test_a_batch_stops_taking_entries_at_its_byte_budget(harness):
    spool = harness.runtime.spool
    for i in range(3):
        spool.put(make_mail(subject=f"big {i}", body="word " * 200_000), SpoolMeta(id="", source="smtp"))
    harness.worker.batch_bytes = 1_500_000  # each mail is about 1 MB
    assert harness.worker.process_available() == 2
    assert harness.worker.process_available() == 1
    assert harness.worker.process_available() == 0
