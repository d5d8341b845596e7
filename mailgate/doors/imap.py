"""The IMAP door: fetch mail from existing mailboxes, as reliably as SMTP accepts it.

One asyncio task per ``[[imap]]`` account (``imap_config.py``). Each task
logs in, selects the folder, fetches what is new, then waits: IDLE when the
server has it (renewed every ``poll_interval``, at most every 28 minutes as
RFC 2177 asks), else a sleep of ``poll_interval``.

Order of operations per batch, so that a kill -9 at any instant loses
nothing and duplicates nothing::

    UID FETCH (BODY.PEEK[], nothing marked \\Seen)
      → Spool.put, fsynced          (durable: from here on it cannot be lost)
      → wake the worker
      → move / flag / delete on the server
      → remember the last UID in imap_state

A crash before the server action leaves the mail in the folder and the UID
unremembered: the next run fetches it again and the pipeline's dedupe
(Message-ID, or the raw bytes) drops the copy. A changed UIDVALIDITY makes
the remembered UID meaningless: the folder is read again from the start,
with the same dedupe keeping it exactly-once.

Batches are at most ``FETCH_BATCH`` messages and ``FETCH_BYTES`` bytes (one
message alone may exceed it), so memory stays bounded on a first run over a
folder with thousands of mails. Any network or protocol error closes the
connection and reconnects with a growing delay; each change of state is
logged once. A refused login is an error line and a slow retry
(``AUTH_RETRY``); nothing here ever ends the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from mailgate.doors.checks import looks_like_mail
from mailgate.doors.imap_config import ImapAccount, parse_accounts
from mailgate.spool.disk import Spool, SpoolMeta
from mailgate.storage.models import ImapState

if TYPE_CHECKING:
    from mailgate.app import Runtime
    from mailgate.doors.imap_client import ImapClient

log = logging.getLogger("mailgate.imap")

FETCH_BATCH = 50
FETCH_BYTES = 32_000_000
IDLE_RENEW_MAX = 28 * 60.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 120.0
AUTH_RETRY = 300.0


def idle_renew(poll_interval: float) -> float:
    """How long one IDLE lasts: the poll interval, but never 29 minutes or more (RFC 2177)."""
    return min(poll_interval, IDLE_RENEW_MAX)


def next_backoff(previous: float) -> float:
    return min(max(previous * 2, BACKOFF_FIRST), BACKOFF_MAX)


def plan_batches(
    sizes: list[tuple[int, int]], max_count: int = FETCH_BATCH, max_bytes: int = FETCH_BYTES
) -> Iterator[list[int]]:
    """Group (uid, size) pairs into fetches of at most ``max_count`` mails and ``max_bytes`` bytes."""
    batch: list[int] = []
    total = 0
    for uid, size in sizes:
        if batch and (len(batch) >= max_count or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


# -- state -------------------------------------------------------------------
def load_state(sessions: sessionmaker[Session], account: str, folder: str) -> tuple[int, int] | None:
    """(uidvalidity, last_uid) remembered for this account/folder, or None."""
    with sessions() as session:
        row = session.get(ImapState, (account, folder))
        return (row.uidvalidity, row.last_uid) if row is not None else None


def save_state(
    sessions: sessionmaker[Session], now: Any, account: str, folder: str, uidvalidity: int, last_uid: int
) -> None:
    with sessions() as session, session.begin():
        row = session.get(ImapState, (account, folder), with_for_update=True)
        if row is None:
            session.add(
                ImapState(account=account, folder=folder, uidvalidity=uidvalidity, last_uid=last_uid, updated_at=now)
            )
        elif row.uidvalidity != uidvalidity or last_uid > row.last_uid:
            row.uidvalidity, row.last_uid, row.updated_at = uidvalidity, last_uid, now


# -- one account -------------------------------------------------------------
class AccountPoller:
    """Keeps one account's folder drained into the spool until ``stop`` is set."""

    def __init__(
        self,
        account: ImapAccount,
        spool: Spool,
        sessions: sessionmaker[Session],
        now: Callable[[], Any],
        wake: Callable[[], None],
        stop: asyncio.Event,
    ) -> None:
        self.account = account
        self.spool = spool
        self.sessions = sessions
        self.now = now
        self.wake = wake
        self.stop = stop
        self.state = "starting"
        self.idles = 0  # IDLE commands issued (tests read it)
        self.fetched = 0
        self._connected = False
        self._fields = {"account": account.name, "server": account.server, "folder": account.folder}

    def _change(self, state: str, level: int, message: str, **fields: Any) -> None:
        """Log a state only when it differs from the last one (no line per retry)."""
        if state != self.state:
            log.log(level, message, extra={**self._fields, **fields})
        self.state = state

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    async def run(self) -> None:
        from mailgate.doors.imap_client import ImapAuthError, ImapError  # not imported by `mailgate ingest`

        backoff = 0.0
        while not self.stop.is_set():
            self._connected = False
            try:
                await self.session()
                return
            except ImapAuthError as exc:
                self._change(
                    "login failed",
                    logging.ERROR,
                    "IMAP login failed: wrong username or password? retrying slowly",
                    user=self.account.username,
                    error=str(exc),
                    retry_in=f"{AUTH_RETRY:.0f}s",
                )
                delay = AUTH_RETRY
            except (OSError, ImapError) as exc:  # network, TLS, timeouts, NO/BAD
                backoff = next_backoff(0.0 if self._connected else backoff)
                if isinstance(exc, OSError):
                    self._change(
                        "disconnected",
                        logging.WARNING,
                        "IMAP server unreachable or connection lost; reconnecting with backoff",
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in=f"{backoff:.0f}s",
                    )
                else:
                    self._change(
                        "refused",
                        logging.WARNING,
                        "IMAP server refused a command; reconnecting with backoff",
                        error=str(exc),
                        retry_in=f"{backoff:.0f}s",
                    )
                delay = backoff
            except Exception as exc:  # a bug must not end the daemon either
                backoff = next_backoff(0.0 if self._connected else backoff)
                if self.state != "bug":
                    log.exception("IMAP poller failed; retrying", extra={**self._fields, "error": repr(exc)})
                self.state = "bug"
                delay = backoff
            log.debug("IMAP retry", extra={**self._fields, "state": self.state, "retry_in": delay})
            await self._pause(delay)

    async def session(self) -> None:
        """One connection: log in, drain the folder, wait for more, until stop or an error."""
        from mailgate.doors.imap_client import ImapClient

        account = self.account
        client = await ImapClient.connect(account)
        try:
            if account.after_store == "move" and await client.ensure_folder(account.move_to):
                log.info("created folder for processed mail", extra={**self._fields, "move_to": account.move_to})
            selected = await client.select(account.folder)
            last_uid = await self._start_uid(selected.uidvalidity)
            idle = client.has("IDLE")
            self._connected = True
            self._change(
                "connected",
                logging.INFO,
                "IMAP connected",
                idle="yes" if idle else "no",
                uidvalidity=selected.uidvalidity,
                last_uid=last_uid,
                messages=selected.exists,
            )
            renew = idle_renew(account.poll_interval)
            while not self.stop.is_set():
                last_uid = await self.drain(client, selected.uidvalidity, last_uid)
                if self.stop.is_set():
                    break
                if idle:
                    self.idles += 1
                    await client.idle(renew, self.stop)
                else:
                    await self._pause(account.poll_interval)
            await client.logout()
        finally:
            client.close()

    async def _start_uid(self, uidvalidity: int) -> int:
        remembered = await asyncio.to_thread(load_state, self.sessions, self.account.name, self.account.folder)
        if remembered is None:
            return 0
        old_validity, last_uid = remembered
        if old_validity != uidvalidity:
            log.warning(
                "UIDVALIDITY changed: reading the whole folder again (duplicates are dropped)",
                extra={**self._fields, "old": old_validity, "new": uidvalidity},
            )
            await asyncio.to_thread(
                save_state, self.sessions, self.now(), self.account.name, self.account.folder, uidvalidity, 0
            )
            return 0
        return last_uid

    async def drain(self, client: ImapClient, uidvalidity: int, last_uid: int) -> int:
        """Fetch, spool, settle on the server and remember, batch by batch, until nothing is new."""
        while not self.stop.is_set():
            uids = await client.uids_after(last_uid)
            if not uids:
                return last_uid
            before = last_uid
            for start in range(0, len(uids), FETCH_BATCH):
                sizes = await client.sizes(uids[start : start + FETCH_BATCH])
                listed = [(uid, sizes[uid]) for uid in uids[start : start + FETCH_BATCH] if uid in sizes]
                for batch in plan_batches(listed):
                    if self.stop.is_set():
                        return last_uid
                    await self._batch(client, uidvalidity, batch)
                    last_uid = max(last_uid, *batch)
                    await asyncio.to_thread(
                        save_state,
                        self.sessions,
                        self.now(),
                        self.account.name,
                        self.account.folder,
                        uidvalidity,
                        last_uid,
                    )
            if last_uid == before:  # listed but gone before we could fetch: look again after the next wait
                return last_uid
        return last_uid

    async def _batch(self, client: ImapClient, uidvalidity: int, batch: list[int]) -> None:
        messages = await client.fetch(batch)
        mails = [(uid, raw) for uid, raw in messages if looks_like_mail(raw)]
        for uid, raw in messages:
            if not looks_like_mail(raw):
                log.warning(
                    "not a mail (no header); left in the folder", extra={**self._fields, "uid": uid, "size": len(raw)}
                )
        await asyncio.to_thread(self._spool_all, mails, uidvalidity)
        if mails:
            self.wake()
        done = [uid for uid, _ in mails]
        if done:
            action = self.account.after_store
            if action == "move":
                await client.move(done, self.account.move_to)
            elif action == "flag":
                await client.flag_seen(done)
            else:
                await client.delete(done)
        self.fetched += len(mails)
        log.info(
            "fetched",
            extra={
                **self._fields,
                "count": len(mails),
                "first_uid": batch[0],
                "last_uid": batch[-1],
                "bytes": sum(len(r) for _, r in mails),
                "then": self.account.after_store,
            },
        )

    def _spool_all(self, mails: list[tuple[int, bytes]], uidvalidity: int) -> None:
        for uid, raw in mails:
            meta = SpoolMeta(
                id="",
                source="imap",
                peer=self.account.server,
                extra={
                    "account": self.account.name,
                    "folder": self.account.folder,
                    "uid": uid,
                    "uidvalidity": uidvalidity,
                },
            )
            self.spool.put(raw, meta)


# -- plugin ------------------------------------------------------------------
def install(runtime: Runtime) -> None:
    """Check the [[imap]] accounts now, so a bad one stops `serve` with a config error."""
    runtime.services.imap_accounts = parse_accounts(runtime.config)


def pollers(runtime: Runtime, stop: asyncio.Event) -> list[AccountPoller]:
    services = runtime.services

    def wake() -> None:
        """The daemon's worker, when there is one (tests run pollers without it)."""
        wake_worker = services.wake_worker
        if wake_worker is not None:
            wake_worker()

    return [
        AccountPoller(account, runtime.spool, runtime.sessions, runtime.services.clock.now, wake, stop)
        for account in services.imap_accounts
    ]


async def start(runtime: Runtime, stop: asyncio.Event) -> None:
    """One task per account, until ``stop`` is set."""
    tasks = [asyncio.create_task(p.run(), name=f"imap:{p.account.name}") for p in pollers(runtime, stop)]
    if tasks:
        await asyncio.gather(*tasks)
