"""Drain the spool through the pipeline, many messages per transaction.

Group commit: a batch of spool entries is processed in one database
transaction, so one fsync of the database covers the whole batch, while a
message that fails rolls back alone: the batch runs with no savepoint until
one fails, then again with a SAVEPOINT for each mail but that one.
Only after the commit are the spool entries deleted: a crash before that
leaves them in the spool, and the pipeline's dedupe makes the replay
harmless (exactly once).

A message the pipeline fails on (a bug, not bad input: bad input is stored as
well as it can be read) goes back to the spool with its error and is retried
with a growing delay; after ``[spool] max_attempts`` it is quarantined with
its traceback for ``mailgate spool replay``.

An outage is not the mail's fault: when the database cannot be reached or is
locked (:func:`mailgate.ops.health.is_outage`), at the commit or inside one
message's savepoint, the whole batch goes back to incoming/ without an
attempt counted against any mail and :class:`DatabaseUnavailable` tells the
daemon to wait for the database (see ``daemon._worker_loop``).

Bounded work: a mail over its ``[spool] mail_budget`` is quarantined at once
(:class:`~mailgate.pipeline.run.MailBudgetExceeded`: retrying it would cost the
same again). A mail that kills or wedges the process never gets a verdict: it
is still in work/ at the next start, and :meth:`Spool.recover` counts one more
``claims`` in its sidecar. An entry claimed ``[spool] max_claims`` times
without a verdict is a poison pill and is quarantined unprocessed; one with
fewer is processed in a batch of its own, so a pill takes no innocent mail
with it.

A batch is bounded by count (``[spool] batch_size``) and by bytes
(:data:`BATCH_BYTES`): fifty small mails share a commit, but ten 20 MB mails
arriving at once are parsed one after the other, never all held in memory.
Parsing a 20 MB mail takes about its attachment's size beside it (:mod:`mailgate.mail.tree`); glibc raises its mmap
threshold and keeps the next big buffers in a heap it never gives back, so a
burst of big mails would ratchet the process up by that much each time:
:func:`keep_big_buffers_out_of_the_heap` pins the threshold.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from mailgate.context import Envelope, Services
from mailgate.mail import language
from mailgate.ops.health import database_status, is_outage, outage_cause
from mailgate.pipeline import run as pipeline
from mailgate.pipeline.outcome import Outcome, describe
from mailgate.spool.disk import Spool, SpoolEntry, SpoolMeta

log = logging.getLogger("mailgate.worker")

BATCH_BYTES = 8_000_000  # a batch takes entries until it holds this many bytes (always at least one)
MMAP_THRESHOLD = 128 * 1024  # glibc's default, pinned: bigger buffers are mapped and unmapped, never kept


def keep_big_buffers_out_of_the_heap() -> bool:
    """Pin glibc's mmap threshold so memory freed after a big mail goes back to the system.

    glibc's threshold adapts upwards after a big block is freed (up to 32 MB),
    after which blocks of a big mail come from the heap and stay there. A fixed
    threshold turns that adaptation off. A no-op (False) off glibc.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


class DatabaseUnavailable(Exception):
    """The database is away or locked; the batch is back in the spool, no mail was charged."""


def process_batch(
    items: Sequence[tuple[bytes, Envelope]], sessions: sessionmaker[Session], services: Services
) -> list[Outcome]:
    """Run the pipeline on each message, one commit for all; a message that fails is rolled back alone.

    Optimistic: the batch first runs with no savepoint at all (each one is two statements, a round trip
    each on PostgreSQL, and mails seldom fail). When one fails, the whole transaction is rolled back and
    the batch runs again with a savepoint for each of the others; the failed one is not run again.

    Raises when the commit itself fails (database down), or as soon as one
    message fails because of an outage (the rest would fail the same way):
    then nothing of the batch is stored and the caller keeps every message.
    """
    parsed = [pipeline.prepare(raw, services) for raw, _ in items]  # read before any lock is taken
    try:
        return _run_batch(items, parsed, sessions, services, isolate=False)
    except _OneFailed as failed:
        if len(items) == 1:
            return [failed.outcome]  # nothing else to keep: its rollback was all a savepoint would do
        return _run_batch(items, parsed, sessions, services, isolate=True, failed={failed.index: failed.outcome})


class _OneFailed(Exception):
    """A mail of a batch run without savepoints failed: the batch is rolled back and run again."""

    def __init__(self, index: int, outcome: Outcome) -> None:
        super().__init__(index)
        self.index, self.outcome = index, outcome


def _run_batch(
    items: Sequence[tuple[bytes, Envelope]],
    parsed: Sequence[pipeline.Parsed | None],
    sessions: sessionmaker[Session],
    services: Services,
    *,
    isolate: bool,
    failed: dict[int, Outcome] | None = None,
) -> list[Outcome]:
    """One transaction for the batch; ``isolate``: a savepoint per mail; ``failed``: mails not run again."""
    outcomes = []
    # the blobs of the whole batch are fsynced together, before the commit (the block closes first)
    with sessions() as session, session.begin(), services.blobs.batch(session):
        for index, ((raw, envelope), read) in enumerate(zip(items, parsed, strict=True)):
            if failed and index in failed:
                outcomes.append(failed[index])
                continue
            outcome = Outcome(envelope)
            try:
                with session.begin_nested() if isolate else contextlib.nullcontext():
                    outcome.ctx = pipeline.run(raw, envelope, session, services, parsed=read)
            except Exception as exc:
                if is_outage(exc):
                    raise
                outcome.error, outcome.traceback = exc, traceback.format_exc()
                outcome.ctx = None
                if not isolate:
                    raise _OneFailed(index, outcome) from exc
            outcomes.append(outcome)
    return outcomes


class Worker:
    """Takes spool entries, runs them through the pipeline, and settles the spool."""

    def __init__(
        self,
        spool: Spool,
        sessions: sessionmaker[Session],
        services: Services,
        on_committed: Callable[[list[Outcome]], None] | None = None,
    ) -> None:
        self.spool = spool
        self.sessions = sessions
        self.services = services
        self.max_attempts = services.config.spool.max_attempts
        self.max_claims = services.config.spool.max_claims
        self.batch_size = services.config.spool.batch_size
        self.batch_bytes = BATCH_BYTES
        self.on_committed = on_committed
        self.accepts: Callable[[SpoolEntry], bool] | None = None  # set by mailgate.workers in a worker process
        self.status = database_status(services)
        self.one_at_a_time = 0  # batches of one entry still to make, to find a mail that fakes an outage
        self.narrowed = False  # this batch is one of those
        keep_big_buffers_out_of_the_heap()

    def warm_up(self) -> None:
        """Load what the steps need once per process (the language model) before claiming any mail.

        A slow first load inside a batch would hold claimed entries: a process
        killed meanwhile charges each of them a claim, and a few quick restarts
        would quarantine an innocent first mail as a poison pill. Loaded first,
        a kill during the load charges nobody.
        """
        started = time.monotonic()
        language.load(self.services.config.cache_path)
        log.info("worker ready", extra={"seconds": round(time.monotonic() - started, 2)})

    def waiting(self) -> Iterator[SpoolEntry]:
        """Incoming entries in arrival order; of a worker process, only those routed to it (``accepts``)."""
        entries = self.spool.iter_entries("incoming")
        return entries if self.accepts is None else (entry for entry in entries if self.accepts(entry))

    def process_available(self) -> int:
        """Process up to one batch of waiting entries; return how many were settled.

        Raises :class:`DatabaseUnavailable` after putting the batch back when the database is away.
        """
        now = self.services.clock.now().timestamp()
        claimed: list[tuple[SpoolEntry, SpoolMeta]] = []
        size = 0
        pills = 0
        self.narrowed = self.one_at_a_time > 0
        batch_size = 1 if self.narrowed else self.batch_size
        self.one_at_a_time = max(0, self.one_at_a_time - 1)
        for entry in self.waiting():
            if len(claimed) >= batch_size or (claimed and size >= self.batch_bytes):
                break
            meta = entry.read_meta()
            if float(meta.extra.get("not_before", 0)) > now:
                continue
            claims = int(meta.extra.get("claims", 0))
            if claims and claimed:
                break  # a suspect goes alone, in the next batch
            taken = self.spool.claim(entry)
            if taken is None:
                continue
            if claims >= self.max_claims:
                self._poison_pill(taken, meta, claims)
                pills += 1
                continue
            claimed.append((taken, meta))
            size += taken.size
            if claims:
                break
        if not claimed:
            return pills
        return pills + self.process_claimed(claimed)

    def _poison_pill(self, entry: SpoolEntry, meta: SpoolMeta, claims: int) -> None:
        meta.last_error = (
            f"poison pill: claimed {claims} times without a verdict "
            "(the process died or was stopped while working on it)"
        )
        self.spool.quarantine(entry, meta)
        log.error(
            "message quarantined",
            extra={
                "spool": entry.id,
                "source": meta.source,
                "verdict": "failed",
                "error": meta.last_error,
                "claims": claims,
            },
        )

    def process_claimed(self, claimed: Iterable[tuple[SpoolEntry, SpoolMeta]]) -> int:
        items, kept = [], []
        for entry, meta in claimed:
            try:
                raw = entry.read_raw()
            except OSError as exc:
                log.error("spool entry unreadable", extra={"spool": entry.id, "error": str(exc)})
                continue
            envelope = Envelope(
                mail_from=meta.mail_from,
                rcpt_tos=list(meta.rcpt_tos),
                source=meta.source,
                spool_id=entry.id,
                peer=meta.peer,
            )
            items.append((raw, envelope))
            kept.append((entry, meta))
        try:
            outcomes = process_batch(items, self.sessions, self.services)
        except Exception as exc:
            outage = is_outage(exc)
            if outage:
                self._forget_connections()
            if outage and not self.probe():
                return self._unconfirmed_outage(kept, items, exc)
            for entry, meta in kept:
                self.spool.release(entry, meta)
            if outage:
                raise DatabaseUnavailable(describe_error(exc)) from exc
            log.error(
                "database commit failed; the batch stays in the spool",
                extra={"error": f"{type(exc).__name__}: {exc}", "count": len(kept)},
            )
            raise
        for (entry, meta), outcome in zip(kept, outcomes, strict=True):
            if outcome.error is None:
                self.spool.done(entry)
                log.info("message", extra=describe(outcome))
            else:
                self._failed(entry, meta, outcome)
        if self.on_committed is not None:
            self.on_committed(outcomes)
        return len(kept)

    def _unconfirmed_outage(
        self, kept: list[tuple[SpoolEntry, SpoolMeta]], items: list[tuple[bytes, Envelope]], exc: Exception
    ) -> int:
        """An outage's error, but the database takes a write right after: maybe one mail's doing.

        A statement that times out or a lock that one mail's work runs into
        looks like an outage; charging nobody for it would retry that batch
        forever. So the batch is retried one mail at a time, and a mail that
        raises it again alone while the database answers is charged like any
        failure (twice in a row: a database that flaps at that moment charges nobody).
        """
        if len(kept) == 1 and self.narrowed:
            [(entry, meta)], [(_raw, envelope)] = kept, items
            tb = "".join(traceback.format_exception(exc))
            self._failed(entry, meta, Outcome(envelope, error=exc, traceback=tb))
            return 1
        for entry, meta in kept:
            self.spool.release(entry, meta)
        self.one_at_a_time = len(kept)
        log.warning(
            "an outage the database does not confirm; retrying the batch one mail at a time",
            extra={"error": describe_error(exc), "count": len(kept)},
        )
        return 0

    def _failed(self, entry: SpoolEntry, meta: SpoolMeta, outcome: Outcome) -> None:
        meta.attempts += 1
        meta.extra.pop("claims", None)
        meta.last_error = f"{type(outcome.error).__name__}: {outcome.error}"[:2000]
        meta.traceback = outcome.traceback[-20000:]
        if meta.attempts >= self.max_attempts or isinstance(outcome.error, pipeline.MailBudgetExceeded):
            self.spool.quarantine(entry, meta)
            log.error("message quarantined", extra={**describe(outcome), "attempts": meta.attempts})
        else:
            meta.extra["not_before"] = self.services.clock.now().timestamp() + min(300, 2**meta.attempts)
            self.spool.release(entry, meta)
            log.warning("message failed; will retry", extra={**describe(outcome), "attempts": meta.attempts})

    def _forget_connections(self) -> None:
        """Drop the pooled connections: after an outage they are dead, and one whose server is still
        shutting down would answer the probe and make a real outage look like one mail's doing."""
        engine = self.sessions.kw.get("bind")
        if engine is not None:
            engine.dispose()

    def probe(self) -> str:
        """ "" when the database takes a write transaction again; else the error (an outage or not)."""
        try:
            with self.sessions() as session, session.begin():
                session.execute(text("SELECT 1"))
        except Exception as exc:
            return describe_error(exc)
        return ""

    def drain(self, deadline: float | None = None) -> int:
        """Process until nothing is ready (tests, ingest, start-up recovery)."""
        total = 0
        while deadline is None or time.monotonic() < deadline:
            done = self.process_available()
            if not done:
                break
            total += done
        return total


def describe_error(exc: BaseException) -> str:
    """One line naming the error, for the log and /healthz (drivers write several); for an outage, the
    database's own error rather than one raised while rolling back over it."""
    exc = outage_cause(exc) or exc
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:300]
