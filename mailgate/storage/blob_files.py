"""The ``files`` blob backend: a content-addressed directory (kept by data directories that already use it).

A blob lives at ``blobs/<aa>/<bb>/<sha256>``: the name is its hash, so a
filename from a mail never becomes a path, the same attachment sent twice is
stored once, and a blob can be verified at any time. Blobs are fsynced before
the database transaction that references them commits; a blob nobody
references (after a rollback) is harmless garbage.

Group commit: inside ``with blobs.batch():`` (the worker wraps each batch
transaction in one) a put only writes the file; leaving the block fsyncs every
file of the batch at once from a few threads, then renames them into place and
fsyncs their folders, so the file system merges the flushes into a few journal
commits instead of two per blob. The block must be left before the database
commit; until then the pending blobs are readable like the others.

The directory is this machine's own: daemons on several machines need the
``database`` backend (:mod:`mailgate.storage.blob_database`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mailgate.fsutil import fsync_dir, write_all

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


_SYNC_THREADS = 8


@dataclass
class _Pending:
    tmp: Path
    target: Path
    fd: int


class FileBlobStore:
    """Blobs as files named by their sha256 under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    def _pending(self) -> dict[str, _Pending] | None:
        return getattr(self._local, "pending", None)

    @contextlib.contextmanager
    def batch(self, session: object = None) -> Iterator[None]:
        """Defer the fsyncs of every put inside the block to its end, and do them together.

        ``session`` is the database transaction the blobs belong to; files need none.
        """
        if self._pending() is not None:  # nested: the outer block syncs
            yield
            return
        self._local.pending = {}
        try:
            yield
        except BaseException:
            self._discard(self._local.pending)
            raise
        else:
            self._sync(self._local.pending)
        finally:
            self._local.pending = None

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` durably (at the end of the batch, inside one); return its sha256. Idempotent."""
        sha = hashlib.sha256(data).hexdigest()
        pending = self._pending()
        target = self.path(sha)
        if (pending is not None and sha in pending) or target.exists():
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"{sha}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            write_all(fd, [data])
            if pending is None:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        if pending is not None:
            pending[sha] = _Pending(tmp, target, fd)
            return sha
        os.close(fd)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        return sha

    def _sync(self, pending: dict[str, _Pending]) -> None:
        if not pending:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="blob-fsync")
        items = list(pending.values())
        try:
            list(self._pool.map(lambda item: os.fsync(item.fd), items))
        except BaseException:
            self._discard(pending)
            raise
        for item in items:
            os.close(item.fd)
            os.replace(item.tmp, item.target)
        list(self._pool.map(fsync_dir, {item.target.parent for item in items}))

    def _discard(self, pending: dict[str, _Pending]) -> None:
        for item in pending.values():
            with contextlib.suppress(OSError):
                os.close(item.fd)
            item.tmp.unlink(missing_ok=True)

    def get(self, sha256: str) -> bytes:
        pending = self._pending()
        if pending is not None and sha256 in pending:
            return pending[sha256].tmp.read_bytes()
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        pending = self._pending()
        return (pending is not None and sha256 in pending) or self.path(sha256).exists()

    def iter_chunks(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The blob's bytes a chunk at a time (a 25 MB attachment is never held whole)."""
        with self.path(sha256).open("rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def put_stream(self, sha256: str, chunks: Iterable[bytes]) -> bool:
        """Store a blob whose sha256 is known, from chunks; False when it was there already.

        The content is hashed on the way: a mismatch raises ValueError and
        nothing is stored, so a copy can never plant a blob under a wrong name.
        """
        target = self.path(sha256)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"{sha256}.{os.getpid()}.{threading.get_ident()}"
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as handle:
                for chunk in chunks:
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            if digest.hexdigest() != sha256:
                raise ValueError(f"blob {sha256}: its content hashes to {digest.hexdigest()}")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(target.parent)
        return True

    def shas(self) -> Iterator[str]:
        """Every stored blob's sha256, in order."""
        for first in sorted(p for p in self.root.iterdir() if len(p.name) == 2 and p.is_dir()):
            for second in sorted(p for p in first.iterdir() if p.is_dir()):
                for blob in sorted(second.iterdir()):
                    if _SHA256.match(blob.name):
                        yield blob.name
