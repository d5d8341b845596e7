"""An SMTP load client: K concurrent connections, M messages each, bounded by count and time.

Why not smtplib in threads: on a 2-core machine the client shares the CPU with
the server it measures, so it must cost as little as possible. This one is a
plain asyncio client that speaks just enough SMTP (EHLO, MAIL, RCPT, DATA,
QUIT), with the DATA payload dot-stuffed once before the clock starts.

What it reports: messages accepted per second (wall clock from the first
connection to the last reply), the latency of each SMTP transaction (MAIL FROM
sent to the final reply after the end-of-data dot), and every error by reply
code or exception name. A transaction is "accepted" only on a 250 after DATA.

Command line (against any SMTP server)::

    python bench/load.py --port 2525 --count 2000 --clients 16 --per-connection 50 --small
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class Outgoing:
    """One prepared transaction: envelope and the DATA payload, dot-stuffed and terminated."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    payload: bytes

    @classmethod
    def from_raw(cls, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> Outgoing:
        return cls(mail_from, tuple(rcpt_tos), stuff(raw))


def stuff(raw: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency, CRLF line ends, and the end-of-data line."""
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = (b"\r\n" + data).replace(b"\r\n.", b"\r\n..")[2:]
    return data + b".\r\n"


@dataclass
class LoadResult:
    sent: int = 0
    accepted: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, accepted transactions only
    started: float = 0.0
    finished: float = 0.0
    timed_out: bool = False

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the transaction latency, in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000

    def summary(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "seconds": round(self.seconds, 3),
            "msgs_per_s": round(self.rate, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "errors": dict(self.errors),
            "timed_out": self.timed_out,
        }


class SmtpReplyError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One (possibly multi-line) SMTP reply."""
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("server closed the connection")
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), "\n".join(lines)


async def _expect(reader: asyncio.StreamReader, *codes: int) -> int:
    code, text = await _reply(reader)
    if code not in codes:
        raise SmtpReplyError(code, text)
    return code


async def _transaction(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, msg: Outgoing) -> None:
    writer.write(f"MAIL FROM:<{msg.mail_from}>\r\n".encode())
    await _expect(reader, 250)
    for rcpt in msg.rcpt_tos:
        writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
        await _expect(reader, 250, 251)
    writer.write(b"DATA\r\n")
    await _expect(reader, 354)
    writer.write(msg.payload)
    await _expect(reader, 250)


async def _connection_loop(
    host: str, port: int, queue: list[Outgoing], per_connection: int, deadline: float, result: LoadResult
) -> None:
    """Open connections one after another until the queue is empty or time is up."""
    while queue and time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        except OSError as exc:
            result.errors[f"connect:{type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            await _expect(reader, 220)
            writer.write(b"EHLO load.bench.example\r\n")
            await _expect(reader, 250)
            for _ in range(per_connection):
                if not queue or time.monotonic() >= deadline:
                    break
                msg = queue.pop()
                result.sent += 1
                begin = time.perf_counter()
                try:
                    await _transaction(reader, writer, msg)
                except SmtpReplyError as exc:
                    result.errors[str(exc.code)] += 1
                    writer.write(b"RSET\r\n")
                    await _expect(reader, 250)
                    continue
                result.latencies.append(time.perf_counter() - begin)
                result.accepted += 1
            writer.write(b"QUIT\r\n")
            await _reply(reader)
        except (OSError, SmtpReplyError, asyncio.IncompleteReadError, ValueError) as exc:
            result.errors[f"session:{type(exc).__name__}"] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def run_load(
    host: str,
    port: int,
    messages: Sequence[Outgoing],
    clients: int = 16,
    per_connection: int = 50,
    max_seconds: float = 120.0,
) -> LoadResult:
    """Send ``messages`` (each at most once) over ``clients`` concurrent connections."""
    queue = list(reversed(messages))  # pop() from the end keeps stream order
    result = LoadResult()
    result.started = time.perf_counter()
    deadline = time.monotonic() + max_seconds
    tasks = [
        asyncio.create_task(_connection_loop(host, port, queue, per_connection, deadline, result))
        for _ in range(max(1, clients))
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=max_seconds + 30)
    except TimeoutError:
        result.timed_out = True
    result.timed_out = result.timed_out or bool(queue)
    result.finished = time.perf_counter()
    return result


def prepare(count: int, seed: int = 1, small: bool = True, support: str = "support@example.com") -> list[Outgoing]:
    """``count`` mails of the benchmark corpus, ready to send."""
    import corpus

    return [
        Outgoing.from_raw(m.mail_from, m.rcpt_to, m.raw)
        for m in corpus.generate(count, seed=seed, small=small, support=support)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SMTP load: K connections, M messages per connection.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000, help="messages in all")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections (K)")
    parser.add_argument("--per-connection", type=int, default=50, help="messages per connection (M)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this long")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--small", action="store_true", help="corpus without attachments")
    args = parser.parse_args(argv)
    messages = prepare(args.count, args.seed, args.small)
    result = asyncio.run(run_load(args.host, args.port, messages, args.clients, args.per_connection, args.max_seconds))
    print(json.dumps(result.summary(), indent=1))
    return 0 if not result.errors and not result.timed_out else 1


if __name__ == "__main__":
    sys.exit(main())
