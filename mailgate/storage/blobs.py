"""The blob store (raw mails and attachments), behind one interface with two backends.

``[blobs] backend`` chooses ``files`` (a content-addressed directory on this
machine, :mod:`mailgate.storage.blob_files`) or ``database`` (chunked rows in
the database, written in the transaction of the message that references
them, :mod:`mailgate.storage.blob_database`). Every reader (CLI, export,
relaying, reports) goes through :class:`mailgate.storage.blobstore.Blobs`.
``BlobStore`` stays the name of the files backend for the callers that build
one on a directory.
"""

from __future__ import annotations

from mailgate.storage.blob_files import FileBlobStore as BlobStore
from mailgate.storage.blobstore import Blobs, open_blobs

__all__ = ["BlobStore", "Blobs", "open_blobs"]
