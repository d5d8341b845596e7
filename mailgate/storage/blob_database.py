"""The ``database`` blob backend: blobs as chunked ``bytea`` (SQLite: ``BLOB``) rows, the default.

Daemons on several machines share one database, so a blob kept there is
readable by all of them: an attachment received by one is relayed, exported
or shown by another. ``blobs`` holds one row per sha256 (size, chunk count);
``blob_chunks`` holds the bytes, :data:`~mailgate.storage.blobstore.CHUNK_SIZE`
at a time, so writing or streaming a 25 MB attachment never holds more than a
chunk beyond the bytes the caller already has.

Same transaction: inside ``with blobs.batch(session):`` (the worker's batch
transaction) a put writes its rows through that session, so a blob is
committed with the message that references it, or rolled back with it (a
message's savepoint included). Outside a batch a put commits on its own: a
blob nobody references is harmless, as with files.

Deduplicated: the ``blobs`` row is inserted with ON CONFLICT DO NOTHING, and
the chunks only by the insert that made the row. Two daemons storing the same
attachment at once: the second waits for the first's transaction and then
stores nothing (or stores it, if the first rolled back).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailgate.storage import direct
from mailgate.storage.blobstore import CHUNK_SIZE
from mailgate.storage.db import reading
from mailgate.storage.models import Blob, BlobChunk
from mailgate.storage.rows import table

_BLOBS, _CHUNKS = table(Blob), table(BlobChunk)
SMALL_CHUNK = 64 * 1024  # a chunk up to this size may wait in the connection's queue of writes
# Built once, with bind parameters: a statement built per call costs more than its round trip.
_HEADS = {
    name: dialect.insert(_BLOBS)
    .values(sha256=bindparam("sha256"), size=bindparam("size"), chunks=bindparam("chunks"))
    .on_conflict_do_nothing(index_elements=["sha256"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
# PostgreSQL: a row back says the head is ours (rowcount may say -1). SQLite: the new rowid does, without
# RETURNING, which would write out FTS5's pending terms (migration 0009).
_HEADS["postgresql"] = _HEADS["postgresql"].returning(_BLOBS.c.sha256)
_CHUNK = insert(_CHUNKS)
# PostgreSQL, a blob of one small chunk (a mail's raw bytes): head and chunk wait in the queue of writes, each
# doing nothing when the blob is stored already (a blob's first chunk is the same bytes under any chunk size)
_QUIET_HEAD = postgresql.insert(_BLOBS).on_conflict_do_nothing(index_elements=["sha256"])
_QUIET_CHUNK = postgresql.insert(_CHUNKS).on_conflict_do_nothing(index_elements=["sha256", "seq"])
_SIZE = update(_BLOBS).where(_BLOBS.c.sha256 == bindparam("key")).values(size=bindparam("size"), chunks=bindparam("n"))
_EXISTS = select(_BLOBS.c.sha256).where(_BLOBS.c.sha256 == bindparam("key"))
_COUNT = select(_BLOBS.c.chunks).where(_BLOBS.c.sha256 == bindparam("key"))
_DATA = select(_CHUNKS.c.data).where(_CHUNKS.c.sha256 == bindparam("key"), _CHUNKS.c.seq == bindparam("seq"))


class DatabaseBlobStore:
    """Blobs in the ``blobs`` and ``blob_chunks`` tables of ``engine``'s database."""

    def __init__(self, engine: Engine, chunk_size: int = CHUNK_SIZE) -> None:
        self.engine = engine
        self.chunk_size = chunk_size
        self._bound: ContextVar[Any] = ContextVar(f"blob-session-{id(self)}", default=None)
        self._head = _HEADS["postgresql" if engine.dialect.name == "postgresql" else "sqlite"]

    @contextlib.contextmanager
    def bind(self, session: Any) -> Iterator[None]:
        """Write and read blobs through ``session`` (its transaction) inside the block."""
        token = self._bound.set(session)
        try:
            yield
        finally:
            self._bound.reset(token)

    @contextlib.contextmanager
    def batch(self, session: Any = None) -> Iterator[None]:
        """The blobs put inside the block commit with ``session``'s transaction (nothing to flush)."""
        if session is None or self._bound.get() is not None:
            yield
            return
        with self.bind(session):
            yield

    @contextlib.contextmanager
    def _connection(self, write: bool) -> Iterator[Any]:
        bound = self._bound.get()
        if bound is not None:
            # A session's own connection (its current savepoint): Core statements, no unit of work.
            yield bound.connection() if isinstance(bound, Session) else bound
        elif write:
            with self.engine.begin() as conn:
                yield conn
        else:
            with reading(self.engine) as conn:
                yield conn

    def _write(
        self, conn: Any, sha256: str, chunks: Iterable[bytes | memoryview], known: tuple[int, int] | None
    ) -> bool:
        """Write the head row, then the chunks; ``known`` (size, chunk count) saves the UPDATE after."""
        size, count = known or (0, 0)
        values = {"sha256": sha256, "size": size, "chunks": count}
        if direct.write(conn, self._head, values, new_rowid=conn.dialect.name == "sqlite") is None:
            return False  # one round trip tells "new" from "stored already" (here or on another daemon)
        digest, size, seq = hashlib.sha256(), 0, 0
        for chunk in chunks:
            if known is None:
                digest.update(chunk)
            data = bytes(chunk)  # a small one waits for the next statement (PostgreSQL); a big one goes at once
            direct.write(conn, _CHUNK, {"sha256": sha256, "seq": seq, "data": data}, defer=len(data) <= SMALL_CHUNK)
            size, seq = size + len(chunk), seq + 1
        if known is None and digest.hexdigest() != sha256:
            raise ValueError(f"blob {sha256}: its content hashes to {digest.hexdigest()}")
        if known != (size, seq):
            direct.write(conn, _SIZE, {"key": sha256, "size": size, "n": seq})
        return True

    def _slices(self, data: bytes) -> Iterator[memoryview]:
        view = memoryview(data)
        for start in range(0, max(len(view), 1), self.chunk_size):
            yield view[start : start + self.chunk_size]

    def put(self, data: bytes) -> str:
        """Store ``data`` (in the bound transaction, else in one of its own); return its sha256."""
        sha = hashlib.sha256(data).hexdigest()
        count = max(1, -(-len(data) // self.chunk_size))  # as many as _slices gives
        with self._connection(write=True) as conn:
            if count == 1 and len(data) <= SMALL_CHUNK and direct.queues_writes(conn):
                # no round trip to ask whether it is new: both rows say "unless there" themselves
                direct.write(conn, _QUIET_HEAD, {"sha256": sha, "size": len(data), "chunks": 1})
                direct.write(conn, _QUIET_CHUNK, {"sha256": sha, "seq": 0, "data": data})
            else:
                self._write(conn, sha, self._slices(data), (len(data), count))
        return sha

    def put_stream(self, sha256: str, chunks: Iterable[bytes | memoryview]) -> bool:
        """Store a blob of known sha256 from chunks; a content that does not hash to it raises ValueError."""
        with self._connection(write=True) as conn, _savepoint(conn):
            return self._write(conn, sha256, chunks, None)

    def exists(self, sha256: str) -> bool:
        with self._connection(write=False) as conn:
            return conn.execute(_EXISTS, {"key": sha256}).first() is not None

    def iter_chunks(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The blob's chunks in order, fetched one at a time."""
        with self._connection(write=False) as conn:
            count = conn.execute(_COUNT, {"key": sha256}).scalar()
            if count is None:
                raise FileNotFoundError(f"no blob {sha256}")
            for seq in range(count):
                yield conn.execute(_DATA, {"key": sha256, "seq": seq}).scalar_one()

    def get(self, sha256: str) -> bytes:
        return b"".join(self.iter_chunks(sha256))

    def shas(self) -> Iterator[str]:
        """Every stored sha256 in order, read a page at a time."""
        last = ""
        while True:
            with reading(self.engine) as conn:
                page = list(
                    conn.execute(
                        select(Blob.sha256).where(Blob.sha256 > last).order_by(Blob.sha256).limit(500)
                    ).scalars()
                )
            if not page:
                return
            yield from page
            last = page[-1]

    def count(self) -> int:
        with reading(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(Blob)).scalar_one())


@contextlib.contextmanager
def _savepoint(conn: Any) -> Iterator[None]:
    """A failed put inside a caller's transaction undoes only its own rows."""
    begin_nested = getattr(conn, "begin_nested", None)
    if begin_nested is None or not conn.in_transaction():
        yield
        return
    with begin_nested():
        yield
