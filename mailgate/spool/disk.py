"""The durable disk queue between the doors (SMTP, IMAP, pipe) and the pipeline.

An entry is one file, ``<id>.eml``: a first line ``X-Mailgate-Envelope: {json}``
(the envelope: source, sender, recipients, peer, time of arrival), then the raw
RFC 5322 bytes exactly as received. When an entry's state changes (a retry
with its error, quarantine, replay) a sidecar ``<id>.json`` is written beside
it and takes precedence over the first line. Never pickle: an admin can read,
copy and replay both by hand. One file and not two at intake because creating,
fsyncing and renaming a second file per mail cost the SMTP door about 40 % of
its throughput (see bench/README.md); entries written as two files (the
envelope only in the sidecar) are still read.

::

    spool/tmp/         being written; garbage after a crash
    spool/incoming/    durable, waiting for the pipeline
    spool/work/        claimed by a worker; put back in incoming/ at start, one more "claims" counted
    spool/work/<w>/    claimed by worker process <w> (``[spool] workers`` > 1): put back when that process dies
    spool/quarantine/  failed max_attempts times; ``mailgate spool replay`` puts it back

The ``.eml`` rename into ``incoming/`` is the commit point (a sidecar is
always renamed before its ``.eml``). An adapter
answers "accepted" only after :meth:`Spool.put` returned, which is after the
file data and the directory entry are fsynced.

Group commit: when several sessions commit at once, one fsync of incoming/
covers every rename made before it started (:class:`DirSync`), so each
caller still returns only once its own entry is durable, but sixteen
concurrent sessions do not pay for sixteen directory fsyncs. A message being
received is a :class:`PendingEntry`: small mail stays in memory until its one
commit; big mail is spilled to spool/tmp as it arrives, so it is never held
whole in memory.
"""

from __future__ import annotations

import contextlib
import os
import time
from _thread import allocate_lock
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mailgate.errors import SpoolError
from mailgate.fsutil import fsync_dir, write_all, write_synced
from mailgate.spool.dirsync import DirSync
from mailgate.spool.entries import SpoolEntry, SpoolMeta, new_id

_STATES = ("incoming", "work", "quarantine")
SPILL_BYTES = 1 << 20  # a message past this size is written to spool/tmp while it arrives
HEAD_BYTES = 4096  # what a door checks before storing (intake.looks_like_mail)


class Spool:
    def __init__(self, root: Path, worker: str = "") -> None:
        """``worker``: the name of a worker process; its claims go to work/<worker>/, so that its
        death returns exactly its own entries (:meth:`recover_worker`)."""
        self.root = root
        self.tmp = root / "tmp"
        self.dirs = {state: root / state for state in _STATES}
        self.claims_dir = self.dirs["work"] / worker if worker else self.dirs["work"]
        self._sync: DirSync | None = None  # made on first use: the pipe door spools one mail and needs no threads
        self._sync_made = allocate_lock()

    @property
    def _incoming_sync(self) -> DirSync:
        with self._sync_made:
            if self._sync is None:
                self._sync = DirSync(self.dirs["incoming"])
            return self._sync

    def ensure(self) -> None:
        """Create the folders; raise SpoolError if the spool cannot be used."""
        try:
            for path in (self.tmp, *self.dirs.values(), self.claims_dir):
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"spool {self.root} unusable: {exc.strerror or exc}") from exc

    # -- writing ---------------------------------------------------------
    def put(self, raw: bytes, meta: SpoolMeta | None = None) -> SpoolMeta:
        """Store one message durably. Returns its sidecar; raises SpoolError."""
        entry = self.open_entry(meta)
        entry.add(raw)
        return entry.commit()

    def put_quarantined(self, raw: bytes, meta: SpoolMeta) -> SpoolEntry:
        """Keep a mail that failed outside the spool (a bulk import) where an admin can replay it."""
        written = self.put(raw, meta)
        entry = self._entry("incoming", written.id)
        return self._move(entry, "quarantine")

    def open_entry(self, meta: SpoolMeta | None = None) -> PendingEntry:
        """A message to receive piece by piece; nothing is visible until :meth:`PendingEntry.commit`."""
        meta = meta or SpoolMeta(id=new_id())
        if not meta.id:
            meta.id = new_id()
        if not meta.received_at:
            meta.received_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())  # no datetime import
        return PendingEntry(self, meta)

    def writer(self, meta: SpoolMeta | None = None) -> _SpoolWriter:
        """A context manager to stream a big message to disk chunk by chunk."""
        return _SpoolWriter(self.open_entry(meta))

    @property
    def dir_syncs(self) -> int:
        """How many fsyncs of incoming/ commits have cost so far (group commit makes it fewer than commits)."""
        return self._incoming_sync.done

    def _commit(self, tmp_eml: Path, meta: SpoolMeta) -> None:
        os.replace(tmp_eml, self.dirs["incoming"] / f"{meta.id}.eml")
        self._incoming_sync.sync()

    # -- reading ---------------------------------------------------------
    def entries(self, state: str = "incoming") -> list[SpoolEntry]:
        return list(self.iter_entries(state))

    def iter_entries(self, state: str = "incoming") -> Iterator[SpoolEntry]:
        """Entries in arrival order, built one at a time: a worker that wants fifty of a
        backlog of thousands pays for fifty. ``work`` includes the worker processes' folders."""
        if state == "work":
            for folder in self._work_dirs():
                yield from self._entries_in(folder)
            return
        yield from self._entries_in(self.dirs[state])

    def _entries_in(self, folder: Path) -> Iterator[SpoolEntry]:
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".eml"))
        except FileNotFoundError:
            return
        state = "incoming" if folder == self.dirs["incoming"] else folder.name
        state = state if state in _STATES else "work"
        for name in names:
            entry_id = name[:-4]
            yield SpoolEntry(entry_id, state, folder / name, folder / f"{entry_id}.json")

    def _work_dirs(self) -> list[Path]:
        """work/ and the folders of the worker processes inside it."""
        work = self.dirs["work"]
        try:
            return [work, *sorted(p for p in work.iterdir() if p.is_dir())]
        except FileNotFoundError:
            return []

    def _entry(self, state: str, entry_id: str) -> SpoolEntry:
        folder = self.dirs[state]
        return SpoolEntry(entry_id, state, folder / f"{entry_id}.eml", folder / f"{entry_id}.json")

    def find(self, entry_id: str) -> SpoolEntry | None:
        for state in _STATES:
            for folder in self._work_dirs() if state == "work" else [self.dirs[state]]:
                entry = SpoolEntry(entry_id, state, folder / f"{entry_id}.eml", folder / f"{entry_id}.json")
                if entry.eml.exists():
                    return entry
        return None

    def depth(self) -> dict[str, int]:
        counts = {}
        for state in _STATES:
            counts[state] = 0
            for folder in self._work_dirs() if state == "work" else [self.dirs[state]]:
                with contextlib.suppress(FileNotFoundError):
                    counts[state] += sum(1 for n in os.listdir(folder) if n.endswith(".eml"))
        return counts

    # -- moving ----------------------------------------------------------
    def _move(self, entry: SpoolEntry, state: str, meta: SpoolMeta | None = None) -> SpoolEntry:
        target = self._entry(state, entry.id)
        if meta is not None:
            write_synced(self.tmp / f"{entry.id}.json", meta.to_json())
            os.replace(self.tmp / f"{entry.id}.json", target.sidecar)
            entry.sidecar.unlink(missing_ok=True)
        elif entry.sidecar.exists():
            os.replace(entry.sidecar, target.sidecar)
        os.replace(entry.eml, target.eml)
        fsync_dir(target.eml.parent)
        return target

    def claim(self, entry: SpoolEntry) -> SpoolEntry | None:
        """Take an incoming entry for processing; None if another worker took it first.

        The rename is the claim: of several processes renaming one file, exactly one succeeds."""
        folder = self.claims_dir
        target = SpoolEntry(entry.id, "work", folder / f"{entry.id}.eml", folder / f"{entry.id}.json")
        try:
            os.replace(entry.eml, target.eml)
        except FileNotFoundError:
            return None
        with contextlib.suppress(FileNotFoundError):
            os.replace(entry.sidecar, target.sidecar)
        return target

    def done(self, entry: SpoolEntry) -> None:
        """The message is committed to the database: forget the entry."""
        entry.eml.unlink(missing_ok=True)
        entry.sidecar.unlink(missing_ok=True)

    def release(self, entry: SpoolEntry, meta: SpoolMeta) -> SpoolEntry:
        """Put a claimed entry back to incoming/ with an updated sidecar (a retry)."""
        return self._move(entry, "incoming", meta)

    def quarantine(self, entry: SpoolEntry, meta: SpoolMeta) -> SpoolEntry:
        return self._move(entry, "quarantine", meta)

    def replay(self, entry: SpoolEntry) -> SpoolEntry:
        """Give a quarantined entry a fresh set of attempts."""
        meta = entry.read_meta()
        meta.attempts = 0
        meta.extra.pop("claims", None)
        return self._move(entry, "incoming", meta)

    def recover(self) -> int:
        """At start: entries left in work/ by a crash go back to incoming/; tmp/ is emptied.

        An entry still in work/ was claimed by a process that ended without a
        verdict on it (killed, crashed, or stopped past its grace), so it goes
        back with one more ``claims`` in its sidecar: the worker quarantines a
        mail that keeps doing that (a poison pill). The claim itself (the
        rename into work/) is the record, so the normal path writes nothing more.
        """
        count = self._return_claimed(self.entries("work"))
        for name in os.listdir(self.tmp):
            (self.tmp / name).unlink(missing_ok=True)
        for folder in [*self.dirs.values(), *self._work_dirs()]:
            # a sidecar whose .eml never arrived is a write that never committed
            for name in os.listdir(folder):
                if name.endswith(".json") and not (folder / (name[:-5] + ".eml")).exists():
                    (folder / name).unlink(missing_ok=True)
        return count

    def recover_worker(self, worker: str) -> int:
        """A worker process died: its claimed entries go back to incoming/, each charged one claim
        (once per death: the entries of the other workers are not touched)."""
        folder = self.dirs["work"] / worker
        return self._return_claimed(list(self._entries_in(folder)))

    def _return_claimed(self, entries: list[SpoolEntry]) -> int:
        for entry in entries:
            meta = entry.read_meta()
            meta.extra["claims"] = int(meta.extra.get("claims", 0)) + 1
            self._move(entry, "incoming", meta)
        return len(entries)

    def iter_all(self) -> Iterator[SpoolEntry]:
        for state in _STATES:
            yield from self.entries(state)


class PendingEntry:
    """One message on its way into the spool: in memory while small, in spool/tmp once big.

    The door calls :meth:`add` as bytes arrive (cheap, no I/O), :meth:`spill`
    from a thread when :meth:`add` says the buffer is full, then :meth:`commit`
    (from a thread: it fsyncs) or :meth:`discard`. Only ``head`` (the first
    4 KB) is kept for the door's checks once the rest is on disk.
    """

    def __init__(self, spool: Spool, meta: SpoolMeta) -> None:
        self.spool = spool
        self.meta = meta
        self.path = spool.tmp / f"{meta.id}.eml"
        self.size = 0
        self.head = b""
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._fd: int | None = None
        self._lock = allocate_lock()  # a spill in a thread and a discard on a lost connection
        self._discarded = False

    def add(self, data: bytes) -> bool:
        """Take the next bytes; True when it is time to :meth:`spill`."""
        if not data:
            return False
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        self._chunks.append(data)
        self._buffered += len(data)
        self.size += len(data)
        return self._buffered >= SPILL_BYTES

    def spill(self) -> None:
        """Write what is buffered to spool/tmp (blocking I/O, no fsync); raises SpoolError."""
        with self._lock:
            self._spill()

    def _spill(self) -> None:
        if self._discarded:
            raise SpoolError("cannot write to spool: the message was discarded")
        if not self._chunks and self._fd is not None:
            return  # nothing new (an empty message still gets its file and envelope line)
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
                chunks.insert(0, self.meta.envelope_line())
            write_all(self._fd, chunks)
        except OSError as exc:
            self._discard()
            raise SpoolError(f"cannot write to spool: {exc.strerror or exc}") from exc

    def commit(self) -> SpoolMeta:
        """Make the entry durable and visible in incoming/; raises SpoolError (and leaves nothing)."""
        with self._lock:
            self._spill()
            assert self._fd is not None
            try:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
                self.spool._commit(self.path, self.meta)
            except OSError as exc:
                self._discard()
                raise SpoolError(f"cannot write to spool: {exc.strerror or exc}") from exc
        return self.meta

    def discard(self) -> None:
        """Forget the message: nothing of it stays in the spool (waits for a spill in progress)."""
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        self._discarded = True
        self._chunks, self._buffered = [], 0
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


class _SpoolWriter:
    """``with spool.writer() as (handle, meta)``: a file-like handle, committed on a clean exit."""

    def __init__(self, entry: PendingEntry) -> None:
        self.entry = entry

    def __enter__(self) -> tuple[_PendingHandle, SpoolMeta]:
        return _PendingHandle(self.entry), self.entry.meta

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is not None:
            self.entry.discard()
            if issubclass(exc_type, OSError) and not isinstance(exc, SpoolError):
                raise SpoolError(f"cannot write to spool: {exc}") from exc
            return
        self.entry.commit()


class _PendingHandle:
    def __init__(self, entry: PendingEntry) -> None:
        self.entry = entry

    def write(self, data: bytes) -> int:
        if self.entry.add(bytes(data)):
            self.entry.spill()
        return len(data)
