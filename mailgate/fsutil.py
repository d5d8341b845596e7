"""Durable file writes: the primitives the spool, the blob store, the maildir and the key file share.

Each caller picks its own name and its own rename (the spool renames into
``incoming/``, the maildir links into ``new/``, the blob store renames to
the blob's hash), so these are only the parts every one of them needs: all
the bytes written, then fsynced, and the directory fsynced after a rename.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, chunks: Iterable[bytes]) -> None:
    """Write every byte of ``chunks`` (``os.write`` may write fewer than it is given)."""
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (replacing it) and fsync it before returning."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def create_synced(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Create ``path`` (never an existing one: FileExistsError) with ``data``, fsynced before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, [data])
        os.fsync(fd)
    finally:
        os.close(fd)
