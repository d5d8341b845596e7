"""One IMAP connection (aioimaplib), wrapped so that every failure raises.

aioimaplib hands back ``NO``/``BAD`` as a ``Response.result``, has no
timeout on several commands, and keeps waiting when the server goes away.
:class:`ImapClient` wraps it once: each command is raced against a timeout
and against the loss of the connection, and anything but ``OK`` raises an
:class:`ImapError`. The poller above it then needs one ``except`` clause.

::

    ImapError (MailgateError)           the server said NO/BAD, or something unreadable
    ├── ImapAuthError                   login refused (wrong username or password)
    ├── ImapConnectionLost (ConnectionError)
    └── ImapTimeout (TimeoutError)

Folder names are sent in IMAP's modified UTF-7 (RFC 3501 5.1.3), quoted
(``imap_wire.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aioimaplib import aioimaplib

from mailgate.doors.imap_config import ImapAccount
from mailgate.doors.imap_wire import mailbox, parse_fetch, parse_list, parse_sizes, quote, uid_set
from mailgate.errors import MailgateError

T = TypeVar("T")
TIMEOUT = 60.0


class ImapError(MailgateError):
    """The server refused a command (NO/BAD) or answered something we cannot read."""


class ImapAuthError(ImapError):
    """The server refused the login: wrong username or password, or plaintext login disabled."""


class ImapConnectionLost(ImapError, ConnectionError):
    """The connection closed under us."""


class ImapTimeout(ImapError, TimeoutError):
    """The server did not answer in time."""


@dataclass(frozen=True)
class Selected:
    folder: str
    uidvalidity: int
    exists: int


def _text(response: Any) -> str:
    lines = [line for line in response.lines if isinstance(line, bytes)]
    return lines[-1].decode("utf-8", "replace") if lines else ""


class ImapClient:
    """A logged-in connection to one account; use :meth:`connect`."""

    def __init__(self, account: ImapAccount, timeout: float = TIMEOUT) -> None:
        self.account = account
        self.timeout = timeout
        self.lost = asyncio.Event()
        self._imap: aioimaplib.IMAP4 | None = None

    # -- the one wrapper -------------------------------------------------
    async def _call(self, awaitable: Awaitable[T], what: str, *, timeout: float | None = None) -> T:
        """Await ``awaitable``, raising ImapConnectionLost / ImapTimeout instead of hanging."""
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=timeout or self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
        if task not in done:
            task.cancel()
            if self.lost.is_set():
                raise ImapConnectionLost(f"connection to {self.account.server} lost during {what}")
            raise ImapTimeout(f"{self.account.server} did not answer {what} within {timeout or self.timeout:.0f}s")
        try:
            return task.result()
        except aioimaplib.CommandTimeout:
            raise ImapTimeout(f"{self.account.server} did not answer {what} in time") from None
        except aioimaplib.AioImapException as exc:
            raise ImapError(f"{what}: {exc}") from None

    async def _ok(self, awaitable: Awaitable[Any], what: str, *, timeout: float | None = None) -> Any:
        response = await self._call(awaitable, what, timeout=timeout)
        if response.result != "OK":
            raise ImapError(f"{what} refused: {response.result} {_text(response)}".rstrip())
        return response

    @property
    def imap(self) -> aioimaplib.IMAP4:
        assert self._imap is not None
        return self._imap

    def has(self, capability: str) -> bool:
        return self.imap.has_capability(capability)

    # -- connecting ------------------------------------------------------
    @classmethod
    async def connect(cls, account: ImapAccount, timeout: float = TIMEOUT) -> ImapClient:
        client = cls(account, timeout)
        try:
            await client._open()
        except BaseException:
            client.close()
            raise
        return client

    async def _open(self) -> None:
        account = self.account
        context = ssl.create_default_context() if account.tls != "none" else None

        def lost(_exc: Exception | None) -> None:
            self.lost.set()

        self._imap = aioimaplib.IMAP4(
            account.host,
            account.port,
            timeout=self.timeout,
            conn_lost_cb=lost,
            ssl_context=context if account.tls == "tls" else None,
        )
        await self._call(self.imap.wait_hello_from_server(), "the greeting")
        protocol = self.imap.protocol
        if account.tls == "starttls":
            if not self.has("STARTTLS"):
                raise ImapError(f'{account.server} does not offer STARTTLS (tls = "starttls")')
            await self._ok(
                protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)), "STARTTLS"
            )
            loop = asyncio.get_running_loop()
            assert context is not None  # tls = "starttls" made one above
            transport = await self._call(
                loop.start_tls(protocol.transport, protocol, context, server_hostname=account.host), "the TLS handshake"
            )
            protocol.transport = transport
            await self._call(protocol.capability(), "CAPABILITY")
        if self.has("LOGINDISABLED"):
            raise ImapAuthError(
                f'{account.server} refuses a plaintext login (LOGINDISABLED); use tls = "tls" or "starttls"'
            )
        response = await self._call(protocol.login(quote(account.username), account.password), "LOGIN")
        if response.result == "NO":
            raise ImapAuthError(_text(response) or "login refused")
        if response.result != "OK":
            raise ImapError(f"LOGIN refused: {response.result} {_text(response)}")
        # the capabilities after login are the ones that count (IDLE, MOVE, UIDPLUS)
        await self._call(protocol.capability(), "CAPABILITY")

    def close(self) -> None:
        """Drop the connection without a word (after an error, or after LOGOUT)."""
        if self._imap is None:
            return
        protocol = self._imap.protocol
        if protocol.transport is not None:
            protocol.transport.close()
        for task in (*self._imap.tasks, *protocol.tasks, self._imap._client_task):
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failure here was already reported by the caller
            else:
                task.cancel()

    async def logout(self) -> None:
        with contextlib.suppress(Exception):
            await self._call(self.imap.logout(), "LOGOUT", timeout=5)
        self.close()

    # -- folders ---------------------------------------------------------
    async def select(self, folder: str) -> Selected:
        response = await self._ok(self.imap.select(mailbox(folder)), f"SELECT {folder}")
        uidvalidity, exists = 0, 0
        for line in response.lines:
            if isinstance(line, bytes):
                if match := re.search(rb"\[UIDVALIDITY (\d+)\]", line):
                    uidvalidity = int(match.group(1))
                elif match := re.match(rb"^(\d+) EXISTS", line):
                    exists = int(match.group(1))
        if not uidvalidity:
            raise ImapError(f"SELECT {folder}: the server sent no UIDVALIDITY")
        return Selected(folder, uidvalidity, exists)

    async def folders(self) -> list[tuple[str, set[str]]]:
        response = await self._ok(self.imap.list('""', '"*"'), "LIST")
        return parse_list(response.lines)

    async def ensure_folder(self, folder: str) -> bool:
        """Create ``folder`` unless it exists; True when it was created."""
        response = await self._ok(self.imap.list('""', mailbox(folder)), f"LIST {folder}")
        if any(name == folder for name, _ in parse_list(response.lines)):
            return False
        await self._ok(self.imap.create(mailbox(folder)), f"CREATE {folder}")
        with contextlib.suppress(ImapError):
            await self._ok(self.imap.subscribe(mailbox(folder)), f"SUBSCRIBE {folder}")
        return True

    async def status(self, folder: str) -> dict[str, int]:
        response = await self._ok(
            self.imap.status(mailbox(folder), "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)"), f"STATUS {folder}"
        )
        for line in response.lines:
            if isinstance(line, bytes) and b"(" in line:
                pairs = re.findall(rb"([A-Z]+) (\d+)", line.rsplit(b"(", 1)[1])
                return {k.decode(): int(v) for k, v in pairs}
        return {}

    # -- messages --------------------------------------------------------
    async def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid``, ascending (``N:*`` always matches the last message: filtered out)."""
        response = await self._ok(
            self.imap.protocol.search("UID", f"{last_uid + 1}:*", charset=None, by_uid=True), "UID SEARCH"
        )
        uids: set[int] = set()
        for line in response.lines[:-1]:
            if isinstance(line, bytes):
                uids.update(int(token) for token in line.split() if token.isdigit())
        return sorted(uid for uid in uids if uid > last_uid)

    async def sizes(self, uids: Iterable[int]) -> dict[int, int]:
        response = await self._ok(self.imap.uid("fetch", uid_set(uids), "(UID RFC822.SIZE)"), "UID FETCH sizes")
        return parse_sizes(response.lines)

    async def fetch(self, uids: Iterable[int]) -> list[tuple[int, bytes]]:
        """The whole messages, without setting \\Seen (BODY.PEEK[])."""
        wanted = set(uids)
        response = await self._ok(self.imap.uid("fetch", uid_set(wanted), "(UID BODY.PEEK[])"), "UID FETCH")
        return sorted((uid, raw) for uid, raw in parse_fetch(response.lines) if uid in wanted)

    async def flag_seen(self, uids: Iterable[int]) -> None:
        await self._ok(self.imap.uid("store", uid_set(uids), "+FLAGS.SILENT", r"(\Seen)"), "UID STORE \\Seen")

    async def delete(self, uids: Iterable[int]) -> None:
        uids = list(uids)
        await self._ok(self.imap.uid("store", uid_set(uids), "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE \\Deleted")
        await self._expunge(uids)

    async def move(self, uids: Iterable[int], folder: str) -> None:
        """UID MOVE when the server has it; else COPY, flag \\Deleted, expunge."""
        uids = list(uids)
        if self.has("MOVE"):
            await self._ok(self.imap.uid("move", uid_set(uids), mailbox(folder)), f"UID MOVE to {folder}")
            return
        await self._ok(self.imap.uid("copy", uid_set(uids), mailbox(folder)), f"UID COPY to {folder}")
        await self.delete(uids)

    async def _expunge(self, uids: list[int]) -> None:
        if self.has("UIDPLUS"):  # only ours, not what another client marked \Deleted
            await self._ok(self.imap.uid("expunge", uid_set(uids)), "UID EXPUNGE")
        else:
            await self._ok(self.imap.expunge(), "EXPUNGE")

    async def idle(self, seconds: float, stop: asyncio.Event) -> str:
        """IDLE until the server reports a change ("push"), ``seconds`` pass ("renew") or ``stop`` ("stop")."""
        queue = self.imap.protocol.idle_queue
        while not queue.empty():  # notifications that arrived before this IDLE are stale
            queue.get_nowait()
        idle = await self._call(self.imap.idle_start(timeout=seconds), "IDLE")
        push = asyncio.ensure_future(self.imap.wait_server_push(timeout=seconds + self.timeout))
        stopped = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(self.lost.wait())
        done, pending = await asyncio.wait({push, stopped, lost}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if lost in done:
            raise ImapConnectionLost(f"connection to {self.account.server} lost during IDLE")
        if push in done and push.exception() is not None:
            raise ImapTimeout(f"{self.account.server} did not end IDLE in time")
        reason = (
            "stop" if push not in done else ("renew" if push.result() == aioimaplib.STOP_WAIT_SERVER_PUSH else "push")
        )
        self.imap.idle_done()
        await self._ok(idle, "IDLE")
        return reason
