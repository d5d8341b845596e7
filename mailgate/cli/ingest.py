"""``mailgate ingest``: the pipe door, for Postfix, procmail, fetchmail, or an import.

``mailgate ingest [FILE ...|-]`` reads one mail per file (stdin with ``-`` or
no file) and streams it into the spool (chunks into spool/tmp, fsync, rename),
so a big mail is never held whole in memory. It stops reading at
``[smtp] max_message_size``, the limit the SMTP door enforces too, and leaves
it to the daemon: ``mailgate serve`` must run whatever the door; its workers
store what is in the spool and send every acknowledgment.

An MTA runs this once per mail, so it costs what an MTA expects of a delivery
agent (bench/README.md: a few times a bare ``python -c pass``): it imports
only the spool and the config (never the ORM, the SMTP server, Alembic or
Jinja2), builds the parser of this one command (``cli.PIPE_COMMANDS``) and
checks no template or rule: ``serve``, ``templates check`` and a reload do.

Exit codes (sysexits), as an MTA expects them. Each failure writes one line to
stderr, meant for the MTA's log and bounce text; where the exit code alone
would give Postfix the wrong reason, the line begins with the RFC 3463 code,
which Postfix's pipe(8) takes in precedence over the exit code:

* 0 (EX_OK): durably spooled; the daemon stores it (also when the database is away);
* 65 (EX_DATAERR): never retry. Not a mail (no header), or larger than
  ``max_message_size`` (the line then begins with ``5.3.4``; nothing is spooled);
* 66 (EX_NOINPUT): a named file cannot be read;
* 75 (EX_TEMPFAIL): may succeed later, the MTA keeps the mail and retries:
  the spool cannot be written, stdin broke off, or the configuration cannot
  be read or is wrong (the line begins with ``4.3.5`` and names the file).
  Never 78: Postfix bounces an EX_CONFIG back to the customer (5.3.5), and
  a config the admin is fixing is no reason to lose a customer's mail.

``--mbox FILE`` and ``--maildir DIR`` import many mails in batched
transactions (the source file is already durable, so they skip the spool).
An import is history: it sends no acknowledgment and no notification unless
``--auto-reply`` is given;
a mail that fails is put into the spool's quarantine, never dropped. A
progress bar is drawn on a terminal, and a summary line closes the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from mailgate.cli import EX_DATAERR, EX_OK, EX_TEMPFAIL
from mailgate.cli.common import load

if TYPE_CHECKING:
    from mailgate.config import Config
    from mailgate.spool.disk import PendingEntry, Spool, SpoolMeta

EX_NOINPUT = 66
CHUNK_BYTES = 1 << 16  # read from the MTA this much at a time


def _process_count(text: str) -> int:
    """``--workers N``: a count of processes, at least one (argparse's error names the option)."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 process, got {count}")
    return count


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="store mails given as files, on stdin, or in an mbox/maildir",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The pipe door: stream one mail per FILE (or stdin) into the spool, up to [smtp] max_message_size.",
        epilog="exit codes: 0 spooled durably, the daemon stores it; 65 not a mail or too big (5.3.4), never retry;\n"
        "66 a named file cannot be read; 75 try again later (spool unwritable, configuration\n"
        "unreadable or wrong: 4.3.5). `mailgate serve` stores what is left in the spool.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="one mail per file; - or nothing for stdin")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--mbox", metavar="FILE", help="import every mail of an mbox file")
    src.add_argument("--maildir", metavar="DIR", help="import every mail of a maildir")
    p.add_argument("--batch", type=int, default=200, help="mails per transaction for --mbox/--maildir")
    p.add_argument(
        "--workers",
        type=_process_count,
        default=0,
        metavar="N",
        help='with --mbox/--maildir: import in N processes (default: [spool] workers; "auto": one per core)',
    )
    p.add_argument(
        "--auto-reply",
        action="store_true",
        help="with --mbox/--maildir: acknowledge and notify as for new mail (default: an import of "
        "old mail writes to nobody)",
    )
    p.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from mailgate.errors import ConfigError

    try:
        config = load(args, log=bool(args.mbox or args.maildir))  # the pipe door logs nothing: stderr is the MTA's
    except ConfigError as exc:
        # 75, not 78: the mail is not at fault, and an MTA keeps a 75 until the admin has fixed the file
        problem = " ".join(str(exc).split())
        print(f"4.3.5 mailgate: config error: {problem}; try again once it is fixed", file=sys.stderr)
        return EX_TEMPFAIL
    if args.mbox or args.maildir:
        return _import_many(args, config)
    return _ingest_files(args, config)


class _Refused(Exception):
    """One input that will never be stored: the exit status and the line for the MTA."""

    def __init__(self, status: int, line: str) -> None:
        super().__init__(line)
        self.status = status
        self.line = line


def _ingest_files(args: argparse.Namespace, config: Config) -> int:
    from mailgate.errors import SpoolError
    from mailgate.spool.disk import Spool

    spool = Spool(config.spool_dir)
    limit = config.smtp.max_message_size
    status, spooled = EX_OK, []
    for name in args.files or ["-"]:
        try:
            spooled.append(_spool_one(spool, name, limit))
        except _Refused as refused:
            print(refused.line, file=sys.stderr)
            status = max(status, refused.status)
        except SpoolError as exc:
            print(f"mailgate: {name}: cannot store now, retry later: {exc}", file=sys.stderr)
            status = EX_TEMPFAIL
    for meta, size in spooled:
        print(f"mailgate: spooled {meta.id} ({size} bytes); the daemon will store it", file=sys.stderr)
    return status


def _spool_one(spool: Spool, name: str, limit: int) -> tuple[SpoolMeta, int]:
    """Stream one input into the spool; its sidecar and size. Raises _Refused or SpoolError."""
    from mailgate.spool.disk import SpoolMeta

    try:
        stream: BinaryIO = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise _Refused(EX_NOINPUT, f"mailgate: cannot read {name}: {exc.strerror}") from None
    try:
        spool.ensure()
        entry = spool.open_entry(SpoolMeta(id="", source="pipe", extra={"file": name}))
        try:
            _copy_checked(stream, entry, name, limit)
        except BaseException:
            entry.discard()
            raise
        return entry.commit(), entry.size
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _copy_checked(stream: BinaryIO, entry: PendingEntry, name: str, limit: int) -> None:
    """Chunks from ``stream`` into ``entry``, never more than ``limit`` + 1 bytes read, then the door's check."""
    from mailgate.doors.checks import looks_like_mail

    while True:
        try:
            chunk = stream.read(min(CHUNK_BYTES, limit + 1 - entry.size))
        except OSError as exc:
            status = EX_NOINPUT if name != "-" else EX_TEMPFAIL
            raise _Refused(status, f"mailgate: cannot read {name}: {exc.strerror or exc}") from None
        if not chunk:
            break
        if entry.add(chunk):
            entry.spill()
        if entry.size > limit:
            raise _Refused(
                EX_DATAERR, f"5.3.4 mailgate: {name}: message larger than max_message_size ({limit} bytes); refused"
            )
    if not looks_like_mail(entry.head):
        raise _Refused(EX_DATAERR, f"mailgate: {name}: not a mail (no header); refused")


def _iter_mailbox(args: argparse.Namespace) -> Iterator[bytes]:
    import mailbox

    if args.mbox:
        if not Path(args.mbox).is_file():
            raise FileNotFoundError(args.mbox)
        box: mailbox.Mailbox = mailbox.mbox(args.mbox, create=False)
    else:
        if not Path(args.maildir, "cur").is_dir() and not Path(args.maildir, "new").is_dir():
            raise FileNotFoundError(args.maildir)
        box = mailbox.Maildir(args.maildir, factory=None, create=False)
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    finally:
        box.close()


def _import_many(args: argparse.Namespace, config: Config) -> int:
    origin = args.mbox or args.maildir
    count = _processes(args, config)
    started = time.monotonic()
    try:
        counts = _import_share(args, config, 0, 1) if count == 1 else _import_in_processes(args, config, count)
    except FileNotFoundError as exc:
        print(f"mailgate: cannot read {exc}", file=sys.stderr)
        return EX_NOINPUT
    except _ImportBroke as exc:
        print(f"mailgate: import stopped: {exc}; run it again (what was stored is not stored twice)", file=sys.stderr)
        return EX_TEMPFAIL
    total = sum(counts.values())
    elapsed = time.monotonic() - started
    rate = total / elapsed if elapsed > 0 else 0.0
    detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"
    processes = f"{count} process" + ("es" if count > 1 else "")
    print(f"imported {total} mails from {origin} in {elapsed:.1f}s ({rate:.0f}/s, {processes}): {detail}")
    return EX_OK if not counts["failed"] else EX_TEMPFAIL


def _processes(args: argparse.Namespace, config: Config) -> int:
    """``--workers N``, else ``[spool] workers``; ``"auto"`` is one per core here: an import has no door to leave
    a core for. ``workers = 0`` (the pipeline in the daemon's process) imports in this one."""
    if args.workers:
        return int(args.workers)
    if config.spool.workers_auto:
        from mailgate.config import usable_cores

        return usable_cores()
    return max(1, config.spool.workers)


class _ImportBroke(Exception):
    """A worker process of the import ended without its counts."""


def _import_in_processes(args: argparse.Namespace, config: Config, count: int) -> Counter[str]:
    """The mailbox shared by ``count`` processes, each taking the mails whose conversation key is its
    own (mailgate.workers): a first mail and its replies stay in one process, in order."""
    import multiprocessing

    from mailgate.storage import db

    if not (Path(args.mbox).is_file() if args.mbox else Path(args.maildir).is_dir()):
        raise FileNotFoundError(args.mbox or args.maildir)
    engine = db.make_engine(config.db_url, busy_timeout=config.database.busy_timeout)
    try:
        db.ensure_schema(engine)  # once, before the processes start
    finally:
        engine.dispose()
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    procs = [fork.Process(target=_share_in_child, args=(args, config, i, count, results)) for i in range(count)]
    for proc in procs:
        proc.start()
    counts: Counter[str] = Counter()
    try:
        for _ in procs:
            got = results.get()
            if isinstance(got, str):
                raise _ImportBroke(got)
            counts.update(got)
    finally:
        for proc in procs:
            proc.join()
    return counts


def _share_in_child(args: argparse.Namespace, config: Config, index: int, count: int, results: object) -> None:
    try:
        results.put(dict(_import_share(args, config, index, count)))  # type: ignore[attr-defined]
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")  # type: ignore[attr-defined]


def _import_share(args: argparse.Namespace, config: Config, index: int, count: int) -> Counter[str]:
    """Import the mails of the mailbox routed to share ``index`` of ``count`` (all of them for 1 of 1)."""
    from mailgate.app import build
    from mailgate.context import Envelope
    from mailgate.doors.checks import looks_like_mail
    from mailgate.mail import language
    from mailgate.pipeline.worker import process_batch
    from mailgate.spool.disk import SpoolMeta
    from mailgate.workers import share_of, thread_key

    # an import sends nothing unless --auto-reply: only then must every template be sound first
    runtime = build(config, create_schema=count == 1, check_templates=bool(args.auto_reply))
    language.load(config.cache_path)  # the mapped model, as a worker loads it
    source = "mbox" if args.mbox else "maildir"
    origin = args.mbox or args.maildir
    counts: Counter[str] = Counter()
    progress = _Progress(enabled=count == 1 and sys.stderr.isatty())
    batch: list[tuple[bytes, Envelope]] = []

    def flush() -> None:
        outcomes = process_batch(batch, runtime.sessions, runtime.services)
        for (raw, _envelope), outcome in zip(batch, outcomes, strict=True):
            if outcome.error is not None or outcome.ctx is None:
                meta = SpoolMeta(
                    id="",
                    source=source,
                    last_error=f"{type(outcome.error).__name__}: {outcome.error}",
                    traceback=outcome.traceback,
                    extra={"from": origin},
                )
                runtime.spool.put_quarantined(raw, meta)
                counts["failed"] += 1
            else:
                counts[outcome.ctx.verdict or "stored"] += 1
        batch.clear()

    try:
        for number, raw in enumerate(_iter_mailbox(args), start=1):
            if count > 1 and share_of(thread_key(raw[:16384]), count) != index:
                continue
            if not looks_like_mail(raw):
                counts["refused"] += 1
                continue
            batch.append((raw, Envelope(source=source, spool_id=f"{source}:{number}", quiet=not args.auto_reply)))
            if len(batch) >= max(1, args.batch):
                flush()
                progress.show(sum(counts.values()))
        if batch:
            flush()
    finally:
        progress.done()
        runtime.close()
    return counts


class _Progress:
    """A one-line progress counter on a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()

    def show(self, count: int) -> None:
        if self.enabled:
            rate = count / max(time.monotonic() - self.started, 1e-6)
            sys.stderr.write(f"\r{count} mails ({rate:.0f}/s)")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
