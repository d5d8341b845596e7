"""The SMTP door reads DATA in blocks and streams it into the spool.

What must hold whatever the TCP segmentation: the bytes stored are exactly the
bytes the client meant (dot-stuffing undone), the end of DATA is only
CRLF . CRLF (no smuggling through a bare LF), commands pipelined after the end
of DATA are not lost, limits answer 500/552 after the data is drained, and a
big message goes to spool/tmp while it arrives instead of into memory.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path

import pytest

from mailgate.config import load_config
from mailgate.doors.smtp import IntakeHandler, read_data, smtp_factory
from mailgate.spool.disk import SPILL_BYTES, Spool
from tests.helpers import make_mail, wait_for, write_config

LIMIT = 10_000_000


class InlineExecutor(Executor):
    """Runs the spill at once in the event loop's thread, so a test knows when it happened."""

    def submit(self, fn: Callable[..., object], /, *args: object, **kwargs: object) -> Future[object]:
        future: Future[object] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _receive(
    spool: Spool, pieces: list[bytes], line_limit: int = 1000, size_limit: int | None = LIMIT, after: bytes = b""
) -> tuple[str, bytes, bytes]:
    """Feed ``pieces`` to read_data one read at a time; return (problem, stored bytes, what is left to read)."""

    async def scenario() -> tuple[str, bytes, bytes]:
        reader = asyncio.StreamReader()
        entry = spool.open_entry()

        async def feed() -> None:
            for piece in pieces:
                reader.feed_data(piece)
                await asyncio.sleep(0)  # let read_data take this piece alone
            reader.feed_data(after)
            reader.feed_eof()

        feeder = asyncio.create_task(feed())
        problem = await read_data(reader, entry, None, line_limit, size_limit)
        await feeder
        left = await reader.read()
        stored = b""
        if not problem:
            meta = entry.commit()
            stored = spool.find(meta.id).read_raw()
        else:
            entry.discard()
        return problem, stored, left

    return asyncio.run(scenario())


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool(tmp_path / "spool")
    s.ensure()
    return s


MESSAGE = (
    b"From: a@customer.example\r\nSubject: dots\r\n\r\n"
    b"..leading dot\r\n...\r\n..\r\nmiddle . line\r\n.\xc3\xa9t\xc3\xa9\r\nlast\r\n"
)
MEANT = (
    b"From: a@customer.example\r\nSubject: dots\r\n\r\n"
    b".leading dot\r\n..\r\n.\r\nmiddle . line\r\n\xc3\xa9t\xc3\xa9\r\nlast\r\n"
)


@pytest.mark.parametrize("cut", range(1, len(MESSAGE) + 5))
def test_dot_stuffing_is_undone_wherever_the_segments_are_cut(spool, cut):
    wire = MESSAGE + b".\r\n"
    problem, stored, left = _receive(spool, [wire[:cut], wire[cut:]], after=b"QUIT\r\n")
    assert problem == ""
    assert stored == MEANT
    assert left == b"QUIT\r\n"


def test_one_byte_at_a_time_gives_the_same_bytes(spool):
    wire = MESSAGE + b".\r\n"
    problem, stored, left = _receive(spool, [wire[i : i + 1] for i in range(len(wire))], after=b"NOOP\r\n")
    assert (problem, stored, left) == ("", MEANT, b"NOOP\r\n")


def test_an_empty_message_ends_at_the_first_dot_line(spool):
    assert _receive(spool, [b".\r\n"], after=b"RSET\r\n") == ("", b"", b"RSET\r\n")


@pytest.mark.parametrize("bare", [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r\n"])
def test_a_dot_next_to_a_bare_line_feed_does_not_end_the_message(spool, bare):
    smuggled = b"Subject: outer\r\n\r\nfirst" + bare + b"MAIL FROM:<evil@x>\r\nRCPT TO:<support@example.com>\r\n"
    problem, stored, left = _receive(spool, [smuggled, b"tail\r\n.\r\n"])
    assert problem == ""
    assert stored == (smuggled + b"tail\r\n").replace(b"\r\n.", b"\r\n")  # a line's first dot is stuffing
    assert b"MAIL FROM:<evil@x>" in stored and left == b""


def test_commands_pipelined_after_the_end_of_data_are_kept_in_order(spool):
    _, stored, left = _receive(
        spool, [b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<b@x>\r\nRCPT"], after=b" TO:<c@x>\r\n"
    )
    assert stored == b"Subject: x\r\n\r\nbody\r\n"
    assert left == b"MAIL FROM:<b@x>\r\nRCPT TO:<c@x>\r\n"


def test_a_line_over_the_limit_is_refused_with_500_after_the_data_is_drained(spool):
    long_line = b"Subject: x\r\n\r\n" + b"y" * 5000 + b"\r\nmore\r\n"
    problem, _, left = _receive(
        spool, [long_line[:3000], long_line[3000:], b".\r\n"], line_limit=1001, after=b"QUIT\r\n"
    )
    assert problem.startswith("500 ")
    assert left == b"QUIT\r\n"
    assert not any(spool.tmp.iterdir())


def test_a_long_line_inside_one_big_read_is_found_too(spool):
    data = b"Subject: x\r\n\r\n" + b"short\r\n" * 100 + b"z" * 1500 + b"\r\n" + b"short\r\n" * 100 + b".\r\n"
    assert _receive(spool, [data], line_limit=1001)[0].startswith("500 ")
    assert _receive(spool, [data], line_limit=2000)[0] == ""


def test_a_message_over_the_size_limit_is_refused_with_552_and_not_kept(spool):
    big = b"Subject: x\r\n\r\n" + b"0123456789" * 100 + b"\r\n"
    problem, _, left = _receive(
        spool, [big * 20, big * 20, b".\r\n"], line_limit=2000, size_limit=30_000, after=b"QUIT\r\n"
    )
    assert problem.startswith("552 ")
    assert left == b"QUIT\r\n"
    assert not any(spool.tmp.iterdir()) and not any(spool.dirs["incoming"].iterdir())


def test_a_big_message_is_written_to_spool_tmp_while_it_arrives(spool):
    line = b"A" * 998 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (3 * SPILL_BYTES // len(line))

    async def scenario() -> tuple[int, int, bytes]:
        reader = asyncio.StreamReader()
        entry = spool.open_entry()
        on_disk_before_end = 0

        async def feed() -> None:
            nonlocal on_disk_before_end
            for start in range(0, len(body), 65536):
                reader.feed_data(body[start : start + 65536])
                await asyncio.sleep(0)
            on_disk_before_end = sum(p.stat().st_size for p in spool.tmp.iterdir())
            reader.feed_data(b".\r\n")

        feeder = asyncio.create_task(feed())
        assert await read_data(reader, entry, InlineExecutor(), 1000, LIMIT) == ""
        await feeder
        in_memory = sum(len(c) for c in entry._chunks)
        meta = entry.commit()
        return on_disk_before_end, in_memory, spool.find(meta.id).read_raw()

    on_disk, in_memory, stored = asyncio.run(scenario())
    assert stored == body
    assert on_disk >= 2 * SPILL_BYTES
    assert in_memory < SPILL_BYTES + 70_000
    assert not any(spool.tmp.iterdir())


class _Server:
    """The real SMTP door on 127.0.0.1:0, in a thread with its own event loop."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.spool = Spool(self.config.spool_dir)
        self.spool.ensure()
        self.handler = IntakeHandler(self.config.support, self.spool)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            self.loop.create_server(smtp_factory(self.config, self.handler), "127.0.0.1", 0)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.handler.executor.shutdown()

    def stored(self) -> list[bytes]:
        return [e.read_raw() for e in self.spool.entries("incoming")]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", smtp={"max_message_size": "200KB"})
    s = _Server(config)
    yield s
    s.close()


def test_a_mail_sent_with_smtplib_is_stored_byte_for_byte(server):
    raw = make_mail(body="Hello\n.hidden dot line\n..two dots\n.\nend\n")
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.sendmail("alice@customer.example", ["support@example.com"], raw)
        code, _ = client.noop()
    assert code == 250
    assert server.stored() == [raw]
    meta = server.spool.entries("incoming")[0].read_meta()
    assert (meta.mail_from, meta.rcpt_tos, meta.source) == ("alice@customer.example", ["support@example.com"], "smtp")


def test_over_the_size_limit_552_and_the_session_goes_on(server):
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo()
        client.esmtp_features.pop("size")  # a client that ignores SIZE: the limit must hold at DATA too
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("alice@customer.example", ["support@example.com"], make_mail(body="x" * 300_000))
        assert info.value.smtp_code == 552
        client.sendmail("alice@customer.example", ["support@example.com"], make_mail(subject="second"))
    assert len(server.stored()) == 1 and b"Subject: second" in server.stored()[0]


def test_not_a_mail_is_refused_with_550_and_leaves_nothing(server):
    with smtplib.SMTP("127.0.0.1", server.port) as client, pytest.raises(smtplib.SMTPDataError) as info:
        client.sendmail("alice@customer.example", ["support@example.com"], b"no header at all\r\n")
    assert info.value.smtp_code == 550
    assert server.stored() == [] and not any(server.spool.tmp.iterdir())


def test_an_unwritable_spool_gets_451_for_small_and_big_mail(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", smtp={"max_message_size": "10MB"})
    s = _Server(config)
    try:
        s.spool.tmp.rmdir()
        s.spool.tmp.write_text("not a folder")
        for size in (100, 3 * SPILL_BYTES):
            with smtplib.SMTP("127.0.0.1", s.port) as client, pytest.raises(smtplib.SMTPDataError) as info:
                client.sendmail("alice@customer.example", ["support@example.com"], make_mail(body="y" * size))
            assert info.value.smtp_code == 451
        assert s.stored() == []
    finally:
        s.close()


def test_a_connection_lost_in_the_middle_of_data_leaves_nothing(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", smtp={"max_message_size": "10MB"})
    s = _Server(config)
    try:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        reader = sock.makefile("rb")
        reader.readline()
        for line in (
            b"EHLO x\r\n",
            b"MAIL FROM:<a@customer.example>\r\n",
            b"RCPT TO:<support@example.com>\r\n",
            b"DATA\r\n",
        ):
            sock.sendall(line)
            while reader.readline()[3:4] == b"-":
                pass
        sock.sendall(b"Subject: cut\r\n\r\n" + (b"z" * 998 + b"\r\n") * (3 * SPILL_BYTES // 1000))
        wait_for(lambda: any(s.spool.tmp.iterdir()), timeout=10, message="the big mail spilled to spool/tmp")
        reader.close()
        sock.close()
        wait_for(lambda: not any(s.spool.tmp.iterdir()), timeout=10, message="spool/tmp emptied")
        with smtplib.SMTP("127.0.0.1", s.port) as client:
            client.sendmail("alice@customer.example", ["support@example.com"], make_mail(subject="after"))
        assert len(s.stored()) == 1 and b"Subject: after" in s.stored()[0]
    finally:
        s.close()
