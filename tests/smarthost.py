"""A small SMTP smarthost on 127.0.0.1, port 0, that misbehaves on cue.

Written here rather than on aiosmtpd because the misbehaviour sits between protocol lines that a
server library keeps to itself: a 421 to QUIT, a connection dropped right after the 250 to DATA, or
dropped after the data and before any reply. It counts what it acknowledged with a 250, per Message-ID.
"""

from __future__ import annotations

import asyncio
import email
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

QUIT_421 = b"421 4.3.2 shutting down\r\n"


class Smarthost:
    """Run in its own thread; ``drops_before_250`` DATA transfers are cut before their reply, then each
    DATA is answered 250 and, with ``drop_after_250``, the connection is closed at once."""

    def __init__(
        self,
        quit_reply: bytes = b"221 2.0.0 bye\r\n",
        drop_after_250: bool = False,
        drops_before_250: int = 0,
        on_quit: Callable[[], None] | None = None,
    ) -> None:
        self.quit_reply = quit_reply
        self.on_quit = on_quit  # called when QUIT arrives, before it is answered
        self.drop_after_250 = drop_after_250
        self.drops_before_250 = drops_before_250
        self.lock = threading.Lock()
        self.delivered: Counter[str] = Counter()  # Message-ID -> times acknowledged with 250
        self.transfers = 0  # DATA transfers received, acknowledged or not
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Smarthost:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._session, "127.0.0.1", 0), self._loop)
        self._server = future.result(30)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def deliveries(self) -> int:
        with self.lock:
            return sum(self.delivered.values())

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 smarthost.example ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-smarthost.example\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                if not await self._data(reader, writer):
                    return
            elif verb == b"QUIT":
                if self.on_quit is not None:
                    self.on_quit()
                writer.write(self.quit_reply)
                await writer.drain()
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()

    async def _data(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one mail up to the lone dot; answer as told. False: the connection is to be dropped."""
        lines: list[bytes] = []
        while (line := await reader.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b".") else line)
        message: Any = email.message_from_bytes(b"".join(lines))
        with self.lock:
            self.transfers += 1
            if self.drops_before_250 > 0:
                self.drops_before_250 -= 1
                return False
            self.delivered[str(message["Message-ID"])] += 1
        writer.write(b"250 2.0.0 queued\r\n")
        await writer.drain()
        return not self.drop_after_250
