"""Content-addressed blob store for raw mails and attachments.

A blob lives at ``blobs/<aa>/<bb>/<sha256>``: the name is its hash, so a
filename from a mail never becomes a path, the same attachment sent twice is
stored once, and a blob can be verified at any time. Blobs are fsynced before
the database transaction that references them commits; a blob nobody
references (after a rollback) is harmless garbage.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from mailgate.fsutil import fsync_dir

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; return its sha256. Idempotent."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.exists():
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"{sha}.{os.getpid()}.{id(data)}"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
        return sha

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()
