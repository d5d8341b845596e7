"""The one interface every blob reader and writer uses, and the ``[blobs]`` section.

::

    [blobs]
    backend = "database"   # or "files"; default: database, or files where data_dir/blobs holds them

``files`` keeps blobs in ``<data_dir>/blobs`` on this machine; ``database``
keeps them in the database beside the messages, so every daemon sharing one
PostgreSQL reads every attachment and raw mail. ``mailgate blobs migrate
--to database|files`` moves existing blobs from one to the other.

The default is ``database`` on both engines. On SQLite a blob row is written in
the message's own transaction and needs no file, folders or fsyncs of its own
(creating them was an eighth of the pipeline's time). An installation whose
``<data_dir>/blobs`` already holds blobs (files used to be the default on
SQLite) keeps ``files`` without a word in its configuration, so it goes on
reading every blob it has; an explicit ``backend`` always wins.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine

from mailgate.config import Config, Table

BACKENDS = ("files", "database")
CHUNK_SIZE = 1 << 20  # 1 MiB: a blob is read and written this much at a time


class Blobs(Protocol):
    """A content-addressed store: a blob's name is its sha256, a put of the same bytes is stored once."""

    def put(self, data: bytes) -> str:
        """Store ``data`` (in the bound transaction, if any); return its sha256."""

    def get(self, sha256: str) -> bytes:
        """The blob's bytes; FileNotFoundError when there is none."""

    def exists(self, sha256: str) -> bool: ...

    def batch(self, session: Any = None) -> contextlib.AbstractContextManager[None]:
        """Group the puts of one database transaction (``session``): they commit or vanish with it."""

    def iter_chunks(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]: ...

    def put_stream(self, sha256: str, chunks: Iterable[bytes]) -> bool:
        """Store a blob of known sha256 from chunks, checking the hash; False when already there."""

    def shas(self) -> Iterator[str]:
        """Every stored sha256, in order."""


def backend_name(config: Config) -> str:
    """The configured backend; by default ``database``, unless this data directory already keeps files."""
    table = Table(config.raw.get("blobs"), config.path, "blobs")
    name = table.str("backend", "files" if holds_file_blobs(config.blob_dir) else "database", choices=BACKENDS)
    table.finish()
    return name


def holds_file_blobs(root: Path) -> bool:
    """Whether the ``files`` backend has stored anything under ``root`` (its ``aa/`` folders; ``tmp`` is not a blob)."""
    try:
        return any(entry.name != "tmp" for entry in os.scandir(root))
    except FileNotFoundError:
        return False


def open_backend(name: str, config: Config, engine: Engine) -> Blobs:
    """A blob store of the named backend for this installation."""
    if name == "database":
        from mailgate.storage.blob_database import DatabaseBlobStore

        return DatabaseBlobStore(engine)
    from mailgate.storage.blob_files import FileBlobStore

    return FileBlobStore(config.blob_dir)


def open_blobs(config: Config, engine: Engine) -> Blobs:
    """The blob store ``[blobs] backend`` names."""
    return open_backend(backend_name(config), config, engine)
