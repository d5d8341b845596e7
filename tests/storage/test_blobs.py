"""The blob store: content-addressed, durable before the commit, grouped fsyncs inside a batch."""

from __future__ import annotations

import hashlib

import pytest

from mailgate.storage.blobs import BlobStore


def test_put_is_content_addressed_and_idempotent(tmp_path):
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert blobs.path(sha) == tmp_path / sha[:2] / sha[2:4] / sha
    assert blobs.put(b"hello") == sha and blobs.get(sha) == b"hello"


def test_a_batch_makes_its_blobs_readable_at_once_and_final_at_its_end(tmp_path):
    blobs = BlobStore(tmp_path)
    with blobs.batch():
        shas = [blobs.put(f"mail {n}".encode()) for n in range(20)]
        assert blobs.put(b"mail 3") == shas[3]
        assert all(blobs.exists(s) for s in shas)
        assert blobs.get(shas[5]) == b"mail 5"
        assert not blobs.path(shas[0]).exists()  # not in place before the batch is synced
    assert all(blobs.path(s).read_bytes() == f"mail {n}".encode() for n, s in enumerate(shas))
    assert list(blobs.tmp.iterdir()) == []


def test_a_failed_batch_leaves_nothing_behind(tmp_path):
    blobs = BlobStore(tmp_path)
    with pytest.raises(RuntimeError), blobs.batch():
        sha = blobs.put(b"never committed")
        raise RuntimeError("the transaction failed")
    assert not blobs.exists(sha)
    assert list(blobs.tmp.iterdir()) == []


def test_names_that_are_not_hashes_are_refused(tmp_path):
    with pytest.raises(ValueError):
        BlobStore(tmp_path).path("../../etc/passwd")
