"""The SMTP door (aiosmtpd): accept for our addresses, spool durably, then say 250.

Thin on purpose. RCPT outside ``[support] accept`` gets 550 (never an open
relay); DATA over ``max_message_size`` gets 552; a line over
``line_length_limit`` gets 500; a DATA that is not a mail at all gets 550; a
spool that cannot be written gets 451, so the sending server keeps the mail
and retries. 250 is sent only after the raw bytes and their directory entry
are fsynced. Nothing else happens here: the pipeline worker picks the entry up.

Why DATA is read here and not by aiosmtpd: aiosmtpd reads the message line
by line into a list and joins it, which costs about a microsecond per line of
CPU in the event loop and holds each message twice in memory. :class:`IntakeSMTP`
reads DATA in blocks, undoes the dot-stuffing with one ``bytes.replace`` per
block, and hands the bytes to a :class:`~mailgate.spool.disk.PendingEntry`, which
keeps small mail in memory and writes big mail to spool/tmp as it arrives.
The end of DATA is exactly what aiosmtpd (>= 1.4.5) accepts: a line holding
only a dot, between two CRLFs; a dot after a bare LF or before a bare LF does
not end the message (SMTP smuggling, CVE-2023-51764 and kin).

Spool commits (fsyncs) run on a small thread pool of the door's own, so they
never queue behind a database batch, and concurrent commits share one
directory fsync (group commit in :mod:`mailgate.spool.disk`); each 250 still waits
for its own message to be durable.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from mailgate.config import Config, SupportConfig
from mailgate.doors.checks import looks_like_mail
from mailgate.errors import SpoolError
from mailgate.mail.addresses import DOT_ATOM
from mailgate.spool.disk import PendingEntry, Spool, SpoolMeta

log = logging.getLogger("mailgate.smtp")

_END = b"\r\n.\r\n"
_READ_ALL = 1 << 30  # take the whole reader buffer: what follows the end of DATA goes back unchanged
COMMIT_THREADS = 16  # spool commits in flight at once; more sessions wait for a thread


class IntakeHandler:
    def __init__(
        self,
        support: SupportConfig,
        spool: Spool,
        on_spooled: Callable[[], None] = lambda: None,
        counter: Callable[[str], None] = lambda verdict: None,
    ) -> None:
        self.support = support
        self.spool = spool
        self.on_spooled = on_spooled
        self.count = counter
        self.executor = ThreadPoolExecutor(max_workers=COMMIT_THREADS, thread_name_prefix="spool")

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.support.accepts(address):
            self.count("rejected")
            return f"550 5.1.1 <{address}>: recipient not accepted here"
        if len(envelope.rcpt_tos) >= 100:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def open_entry(self, envelope: Envelope, session: Session) -> PendingEntry:
        """Where :class:`IntakeSMTP` streams the DATA of this transaction."""
        return self.spool.open_entry(
            SpoolMeta(
                id="",
                source="smtp",
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                peer=_peer(session),
            )
        )

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        entry: PendingEntry | None = getattr(envelope, "spool_entry", None)
        if entry is None:  # a plain aiosmtpd server read the whole message
            entry = self.open_entry(envelope, session)
            entry.add(envelope.original_content or b"")
        loop = asyncio.get_running_loop()
        if not looks_like_mail(entry.head):
            await loop.run_in_executor(self.executor, entry.discard)
            self.count("refused")
            return "550 5.6.0 Message refused: it has no header (not a mail)"
        try:
            meta = await loop.run_in_executor(self.executor, entry.commit)
        except SpoolError as exc:
            log.error("cannot spool message; answered 451", extra={"error": str(exc), "peer": entry.meta.peer})
            self.count("tempfail")
            return "451 4.3.0 Cannot store the message right now; try again later"
        self.count("accepted")
        self.on_spooled()
        return f"250 2.0.0 Ok: queued as {meta.id}"


# A path as nearly every server sends it: <dot-atom@domain>, nothing quoted, no comment, no route
_PLAIN_PATH = re.compile(rf"<({DOT_ATOM})@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP, with a DATA command that streams into the spool (see the module docstring)."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The address and the rest of a MAIL FROM or RCPT TO argument, as aiosmtpd reads them.

        aiosmtpd defines a typing Protocol class inside this method, so every call builds a class (~50
        µs), and then runs the email package's header parser: a tenth of the door's CPU a mail. A plain
        ``<local@domain>`` needs neither: its address is its text, and the rest is what the parser
        leaves (the blanks after the ``>`` skipped). Anything else goes to aiosmtpd's own."""
        found = _PLAIN_PATH.match(arg)
        if found is not None:
            rest = arg[found.end() :].lstrip()
            if not rest.startswith("("):  # a comment: the parser's to read
                local = found.group(1)
                if self.local_part_limit and len(local) > self.local_part_limit:
                    return None, None
                return f"{local}@{found.group(2)}", rest
        address: tuple[str | None, str | None] = super()._getaddr(arg)
        return address

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        handler: IntakeHandler = self.event_handler
        entry = handler.open_entry(self.envelope, self.session)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            problem = await read_data(
                self._reader, entry, handler.executor, self.line_length_limit, self.data_size_limit
            )
        except BaseException:  # connection lost, cancelled: nothing of it stays
            entry.discard()
            raise
        if problem:
            await asyncio.get_running_loop().run_in_executor(handler.executor, entry.discard)
            if problem.startswith("451"):
                handler.count("tempfail")
            self._set_post_data_state()
            await self.push(problem)
            return
        self.envelope.spool_entry = entry  # type: ignore[attr-defined]
        status = await handler.handle_DATA(self, self.session, self.envelope)
        self._set_post_data_state()
        await self.push(status)


async def read_data(
    reader: asyncio.StreamReader,
    entry: PendingEntry,
    executor: Executor | None,
    line_limit: int,
    size_limit: int | None,
) -> str:
    """Read DATA up to its end line into ``entry``; return "" or the error reply to send.

    ``buf`` always starts with the CRLF that ended the previous line (at first,
    the one that ended the DATA command), so the end of DATA is the first
    ``CRLF . CRLF`` in it and every ``CRLF .`` in it is a line start to unstuff.
    Once the message is refused (too big, a line too long, the spool failing)
    the rest is read and dropped until the end line, then the error is sent.
    """
    loop = asyncio.get_running_loop()
    buf = b"\r\n"
    size = 0
    problem = ""
    while True:
        data = await reader.read(_READ_ALL)
        if not data:
            raise ConnectionResetError("connection closed during DATA")
        buf += data
        end = buf.find(_END)
        if problem:
            if end >= 0:
                _give_back(reader, buf[end + 5 :])
                return problem
            buf = buf[-4:]
            continue
        if end >= 0:
            complete, tail, partial = buf[: end + 2], buf[end + 5 :], 0
        else:
            last = buf.rfind(b"\r\n")
            complete, tail = buf[: last + 2], buf[last:]
            partial = len(tail) - 2  # the line still arriving
        size += len(complete) - 2
        if partial > line_limit or (len(complete) - 2 > line_limit and _longest_line(complete) > line_limit):
            problem = "500 Line too long (see RFC5321 4.5.3.1.6)"
        elif size_limit and size > size_limit:
            problem = "552 Error: Too much mail data"
        elif len(complete) > 2 and entry.add(complete.replace(b"\r\n.", b"\r\n")[2:]):
            try:
                await loop.run_in_executor(executor, entry.spill)
            except SpoolError as exc:
                log.error("cannot spool message; answered 451", extra={"error": str(exc)})
                problem = "451 4.3.0 Cannot store the message right now; try again later"
        if end >= 0:
            _give_back(reader, tail)
            return problem
        buf = tail if not problem else tail[-4:]


def _give_back(reader: asyncio.StreamReader, rest: bytes) -> None:
    """Commands pipelined after the end of DATA go back to the reader, in order.

    Safe because ``read(_READ_ALL)`` emptied the buffer and nothing awaited since.
    """
    if rest and not reader.at_eof():
        reader.feed_data(rest)


def _longest_line(block: bytes) -> int:
    """The longest line (with its CRLF) of ``block``, which starts with a CRLF."""
    longest, start = 0, 2
    while True:
        nl = block.find(b"\r\n", start)
        if nl < 0:
            return max(longest, len(block) - start)
        longest, start = max(longest, nl + 2 - start), nl + 2


def _peer(session: Session) -> str:
    peer: Any = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "")


def smtp_factory(config: Config, handler: IntakeHandler) -> Callable[[], SMTP]:
    """A protocol factory for ``loop.create_server``, with the limits from config."""
    smtp_class = type("ConfiguredIntakeSMTP", (IntakeSMTP,), {"line_length_limit": config.smtp.line_length_limit})

    def factory() -> SMTP:
        return smtp_class(
            handler,
            data_size_limit=config.smtp.max_message_size,
            enable_SMTPUTF8=True,
            hostname=config.hostname,
            ident="mailgate ESMTP",
            timeout=config.smtp.timeout,
            loop=asyncio.get_running_loop(),
        )

    return factory
