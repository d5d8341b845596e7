"""``mailgate blobs migrate --to database|files``: move every blob to the other backend, then verify.

Resumable by construction: each blob is copied whole in a step of its own (a
file fsynced and renamed into place, or rows committed in one transaction),
and a blob the target already holds is skipped, so a run stopped at any point
(Ctrl-C, kill -9, a lost connection) is finished by running it again. Each
blob is streamed a chunk at a time and hashed on the way: a blob whose bytes
do not hash to its name is refused, never copied under that name.

The verification pass reads every sha256 the database references (raw mails,
attachments, the raw bounces kept on events) back from the target and hashes
it. The source is left as it was: remove it once the config points at the
target and the daemons run on it.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from mailgate.storage.blobstore import Blobs
from mailgate.storage.models import Attachment, Event, Message


@dataclass
class Report:
    copied: int = 0
    skipped: int = 0
    refused: list[str] = field(default_factory=list)  # in the source, but their bytes do not hash to the name
    missing: list[str] = field(default_factory=list)  # referenced, not in the target
    corrupt: list[str] = field(default_factory=list)  # in the target, bytes that do not hash to the name
    verified: int = 0

    @property
    def ok(self) -> bool:
        return not (self.refused or self.missing or self.corrupt)


def progress(total: int | None, desc: str, unit: str) -> tqdm:
    """A progress bar on stderr (stdout stays for what a script reads)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=0.5, dynamic_ncols=True)


def referenced(engine: Engine) -> Iterator[str]:
    """Every sha256 a row of the database names, each once, in order."""
    seen: set[str] = set()
    with Session(engine) as session:
        queries = (select(Message.raw_sha256), select(Attachment.sha256))
        for query in queries:
            for sha in session.execute(query).scalars():
                if sha:
                    seen.add(sha)
        for detail in session.execute(select(Event.detail).where(Event.kind.like("bounce.%"))).scalars():
            kept = detail.get("raw_sha256") if isinstance(detail, dict) else None
            if isinstance(kept, str) and kept:
                seen.add(kept)
    yield from sorted(seen)


def copy_blobs(source: Blobs, target: Blobs, total: int | None = None, label: str = "blobs") -> Report:
    """Copy every blob of ``source`` missing from ``target``; a blob that fails its hash is listed, not copied."""
    report = Report()
    with progress(total=total, desc=label, unit="blob") as bar:
        for sha in source.shas():
            if target.exists(sha):
                report.skipped += 1
            else:
                try:
                    target.put_stream(sha, source.iter_chunks(sha))
                    report.copied += 1
                except ValueError:
                    report.refused.append(sha)
            bar.update(1)
    return report


def verify(target: Blobs, shas: list[str], report: Report) -> Report:
    """Hash every referenced blob back from ``target``."""
    with progress(total=len(shas), desc="verify", unit="blob") as bar:
        for sha in shas:
            digest = hashlib.sha256()
            try:
                for chunk in target.iter_chunks(sha):
                    digest.update(chunk)
            except (OSError, ValueError):
                report.missing.append(sha)
            else:
                if digest.hexdigest() == sha:
                    report.verified += 1
                else:
                    report.corrupt.append(sha)
            bar.update(1)
    return report


def migrate(source: Blobs, target: Blobs, engine: Engine) -> Report:
    """Copy, then verify every referenced blob in the target."""
    total = sum(1 for _ in source.shas())
    report = copy_blobs(source, target, total)
    return verify(target, list(referenced(engine)), report)
