"""The durable disk queue between the doors (SMTP, IMAP, pipe) and the pipeline.

An entry is two files with one id: ``<id>.eml`` (the raw RFC 5322 bytes, exactly
as received) and ``<id>.json`` (the sidecar: envelope, source, attempts, last
error). Never pickle: an admin can read, copy and replay both by hand.

::

    spool/tmp/         being written; garbage after a crash
    spool/incoming/    durable, waiting for the pipeline
    spool/work/        claimed by a worker; put back in incoming/ at start
    spool/quarantine/  failed max_attempts times; ``mailgate spool replay`` puts it back

The ``.eml`` rename into ``incoming/`` is the commit point: the sidecar is
renamed first, so an ``.eml`` in incoming/ always has its sidecar. An adapter
answers "accepted" only after :meth:`Spool.put` returned, which is after the
file data and the directory entry are fsynced.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from mailgate.errors import SpoolError
from mailgate.fsutil import fsync_dir

_counter = itertools.count()
_STATES = ("incoming", "work", "quarantine")


@dataclass
class SpoolMeta:
    """The sidecar of one spool entry."""

    id: str
    source: str = "smtp"
    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)
    peer: str = ""
    received_at: str = ""
    attempts: int = 0
    last_error: str = ""
    traceback: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SpoolMeta:
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


@dataclass(frozen=True)
class SpoolEntry:
    id: str
    state: str
    eml: Path
    sidecar: Path

    def read_meta(self) -> SpoolMeta:
        try:
            return SpoolMeta.from_json(self.sidecar.read_bytes())
        except (OSError, ValueError):
            return SpoolMeta(id=self.id, last_error="sidecar missing or unreadable")

    def read_raw(self) -> bytes:
        return self.eml.read_bytes()

    @property
    def size(self) -> int:
        try:
            return self.eml.stat().st_size
        except OSError:
            return 0


def new_id() -> str:
    """Ids sort by arrival time and are unique across processes."""
    return f"{time.time_ns():020d}-{os.getpid()}-{next(_counter)}"


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.dirs = {state: root / state for state in _STATES}
        self._lock = threading.Lock()
        self._dir_sync_pending = False

    def ensure(self) -> None:
        """Create the folders; raise SpoolError if the spool cannot be used."""
        try:
            for path in (self.tmp, *self.dirs.values()):
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"spool {self.root} unusable: {exc.strerror or exc}") from exc

    # -- writing ---------------------------------------------------------
    def put(self, raw: bytes, meta: SpoolMeta | None = None) -> SpoolMeta:
        """Store one message durably. Returns its sidecar; raises SpoolError."""
        with self.writer(meta) as (handle, written_meta):
            handle.write(raw)
        return written_meta

    def put_quarantined(self, raw: bytes, meta: SpoolMeta) -> SpoolEntry:
        """Keep a mail that failed outside the spool (a bulk import) where an admin can replay it."""
        written = self.put(raw, meta)
        entry = self._entry("incoming", written.id)
        return self._move(entry, "quarantine")

    def writer(self, meta: SpoolMeta | None = None) -> _SpoolWriter:
        """A context manager to stream a big message to disk chunk by chunk."""
        meta = meta or SpoolMeta(id=new_id())
        if not meta.id:
            meta.id = new_id()
        if not meta.received_at:
            meta.received_at = datetime.now(UTC).isoformat(timespec="seconds")
        return _SpoolWriter(self, meta)

    def _commit(self, tmp_eml: Path, meta: SpoolMeta) -> None:
        tmp_json = self.tmp / f"{meta.id}.json"
        _write_synced(tmp_json, meta.to_json())
        incoming = self.dirs["incoming"]
        os.replace(tmp_json, incoming / f"{meta.id}.json")
        os.replace(tmp_eml, incoming / f"{meta.id}.eml")
        fsync_dir(incoming)

    # -- reading ---------------------------------------------------------
    def entries(self, state: str = "incoming") -> list[SpoolEntry]:
        folder = self.dirs[state]
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".eml"))
        except FileNotFoundError:
            return []
        return [self._entry(state, n[:-4]) for n in names]

    def _entry(self, state: str, entry_id: str) -> SpoolEntry:
        folder = self.dirs[state]
        return SpoolEntry(entry_id, state, folder / f"{entry_id}.eml", folder / f"{entry_id}.json")

    def find(self, entry_id: str) -> SpoolEntry | None:
        for state in _STATES:
            entry = self._entry(state, entry_id)
            if entry.eml.exists():
                return entry
        return None

    def depth(self) -> dict[str, int]:
        return {state: len(self.entries(state)) for state in _STATES}

    # -- moving ----------------------------------------------------------
    def _move(self, entry: SpoolEntry, state: str, meta: SpoolMeta | None = None) -> SpoolEntry:
        target = self._entry(state, entry.id)
        if meta is not None:
            _write_synced(self.tmp / f"{entry.id}.json", meta.to_json())
            os.replace(self.tmp / f"{entry.id}.json", target.sidecar)
            entry.sidecar.unlink(missing_ok=True)
        elif entry.sidecar.exists():
            os.replace(entry.sidecar, target.sidecar)
        os.replace(entry.eml, target.eml)
        fsync_dir(target.eml.parent)
        return target

    def claim(self, entry: SpoolEntry) -> SpoolEntry | None:
        """Take an incoming entry for processing; None if another worker took it first."""
        target = self._entry("work", entry.id)
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
        return self._move(entry, "incoming", meta)

    def recover(self) -> int:
        """At start: entries left in work/ by a crash go back to incoming/; tmp/ is emptied."""
        count = 0
        for entry in self.entries("work"):
            self._move(entry, "incoming")
            count += 1
        for name in os.listdir(self.tmp):
            (self.tmp / name).unlink(missing_ok=True)
        for folder in self.dirs.values():
            # a sidecar whose .eml never arrived is a write that never committed
            for name in os.listdir(folder):
                if name.endswith(".json") and not (folder / (name[:-5] + ".eml")).exists():
                    (folder / name).unlink(missing_ok=True)
        return count

    def iter_all(self) -> Iterator[SpoolEntry]:
        for state in _STATES:
            yield from self.entries(state)


class _SpoolWriter:
    """Streams one message into spool/tmp, then commits it on a clean exit."""

    def __init__(self, spool: Spool, meta: SpoolMeta) -> None:
        self.spool = spool
        self.meta = meta
        self.path = spool.tmp / f"{meta.id}.eml"
        self.handle: BinaryIO | None = None

    def __enter__(self) -> tuple[BinaryIO, SpoolMeta]:
        try:
            self.handle = open(self.path, "wb")
        except OSError as exc:
            raise SpoolError(f"cannot write to spool: {exc.strerror or exc}") from exc
        return self.handle, self.meta

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        assert self.handle is not None
        try:
            if exc_type is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            self.handle.close()
            if exc_type is None:
                self.spool._commit(self.path, self.meta)
        except OSError as err:
            self.path.unlink(missing_ok=True)
            raise SpoolError(f"cannot write to spool: {err.strerror or err}") from err
        finally:
            if exc_type is not None:
                self.path.unlink(missing_ok=True)
        if exc_type is not None and issubclass(exc_type, OSError) and not isinstance(exc, SpoolError):
            raise SpoolError(f"cannot write to spool: {exc}") from exc


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
