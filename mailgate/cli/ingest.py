"""``mailgate ingest``: the pipe door, for Postfix, procmail, fetchmail, or an import.

``mailgate ingest [FILE ...|-]`` reads one mail per file (stdin with ``-`` or
no file), makes it durable in the spool, then runs the pipeline on it at once.
Exit codes, as an MTA expects them:

* 0: stored (or safely spooled for the daemon, when the database is away);
* 65 (EX_DATAERR): the input is not a mail at all; do not retry;
* 66 (EX_NOINPUT): a named file cannot be read;
* 75 (EX_TEMPFAIL): it could not be stored; the MTA should retry later.

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

from mailgate.cli import EX_DATAERR, EX_OK, EX_TEMPFAIL
from mailgate.cli.common import load

EX_NOINPUT = 66


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="store mails given as files, on stdin, or in an mbox/maildir")
    p.add_argument("files", nargs="*", metavar="FILE", help="one mail per file; - or nothing for stdin")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--mbox", metavar="FILE", help="import every mail of an mbox file")
    src.add_argument("--maildir", metavar="DIR", help="import every mail of a maildir")
    p.add_argument("--batch", type=int, default=200, help="mails per transaction for --mbox/--maildir")
    p.add_argument("--auto-reply", action="store_true",
                   help="with --mbox/--maildir: acknowledge and notify as for new mail (default: an import of "
                        "old mail writes to nobody)")
    p.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    if args.mbox or args.maildir:
        return _import_many(args)
    return _ingest_files(args)


def _read_inputs(files: list[str]) -> tuple[list[tuple[str, bytes]], int]:
    inputs, status = [], EX_OK
    for name in files or ["-"]:
        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            print(f"mailgate: cannot read {name}: {exc.strerror}", file=sys.stderr)
            status = EX_NOINPUT
            continue
        inputs.append((name, data))
    return inputs, status


def _ingest_files(args: argparse.Namespace) -> int:
    from mailgate.errors import SpoolError
    from mailgate.intake import looks_like_mail
    from mailgate.spool import Spool, SpoolMeta

    inputs, status = _read_inputs(args.files)
    config = load(args)
    spool = Spool(config.spool_dir)
    spooled = []
    for name, raw in inputs:
        if not looks_like_mail(raw):
            print(f"mailgate: {name}: not a mail (no header); refused", file=sys.stderr)
            status = max(status, EX_DATAERR)
            continue
        try:
            spool.ensure()
            meta = spool.put(raw, SpoolMeta(id="", source="pipe", extra={"file": name}))
        except SpoolError as exc:
            print(f"mailgate: {name}: cannot store now, retry later: {exc}", file=sys.stderr)
            status = EX_TEMPFAIL
            continue
        spooled.append(meta)
    if not spooled:
        return status
    _process_now(args, config, spool, spooled)
    return status


def _process_now(args: argparse.Namespace, config, spool, metas) -> None:
    """Run the pipeline on what we just spooled; if the database is away the daemon will."""
    from mailgate.app import build
    from mailgate.worker import Worker

    try:
        runtime = build(config)
    except Exception as exc:
        print(f"mailgate: spooled; the daemon will store it (database unavailable: {exc})", file=sys.stderr)
        return
    try:
        claimed = []
        for meta in metas:
            entry = spool.find(meta.id)
            taken = spool.claim(entry) if entry is not None and entry.state == "incoming" else None
            if taken is not None:
                claimed.append((taken, meta))
        Worker(spool, runtime.sessions, runtime.services).process_claimed(claimed)
    except Exception as exc:
        print(f"mailgate: spooled; the daemon will store it ({type(exc).__name__}: {exc})", file=sys.stderr)
    finally:
        runtime.close()


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


def _import_many(args: argparse.Namespace) -> int:
    from mailgate.app import build
    from mailgate.context import Envelope
    from mailgate.intake import looks_like_mail
    from mailgate.spool import SpoolMeta
    from mailgate.worker import process_batch

    config = load(args)
    runtime = build(config)
    source = "mbox" if args.mbox else "maildir"
    origin = args.mbox or args.maildir
    counts: Counter[str] = Counter()
    started = time.monotonic()
    progress = _Progress(enabled=sys.stderr.isatty())
    batch: list[tuple[bytes, Envelope]] = []

    def flush() -> None:
        outcomes = process_batch(batch, runtime.sessions, runtime.services)
        for (raw, _envelope), outcome in zip(batch, outcomes, strict=True):
            if outcome.error is not None or outcome.ctx is None:
                meta = SpoolMeta(id="", source=source, last_error=f"{type(outcome.error).__name__}: "
                                 f"{outcome.error}", traceback=outcome.traceback, extra={"from": origin})
                runtime.spool.put_quarantined(raw, meta)
                counts["failed"] += 1
            else:
                counts[outcome.ctx.verdict or "stored"] += 1
        batch.clear()

    try:
        for index, raw in enumerate(_iter_mailbox(args), start=1):
            if not looks_like_mail(raw):
                counts["refused"] += 1
                continue
            batch.append((raw, Envelope(source=source, spool_id=f"{source}:{index}", quiet=not args.auto_reply)))
            if len(batch) >= max(1, args.batch):
                flush()
                progress.show(sum(counts.values()))
        if batch:
            flush()
    except FileNotFoundError as exc:
        print(f"mailgate: cannot read {exc}", file=sys.stderr)
        return EX_NOINPUT
    finally:
        progress.done()
        runtime.close()
    total = sum(counts.values())
    elapsed = time.monotonic() - started
    rate = total / elapsed if elapsed > 0 else 0.0
    detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"
    print(f"imported {total} mails from {origin} in {elapsed:.1f}s ({rate:.0f}/s): {detail}")
    return EX_OK if not counts["failed"] else EX_TEMPFAIL


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
