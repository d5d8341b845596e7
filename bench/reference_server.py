"""The reference the benchmark measures mailgate against: a bare durable SMTP sink.

A stock aiosmtpd server whose DATA handler does the least a mail server may do
before it answers 250: write the message to a temporary file, fsync it, rename
it into place and fsync the directory. No parsing, no database, no sidecar.
It runs as its own process, like ``mailgate serve``, so its CPU time and peak
memory are measured the same way.

    python bench/reference_server.py --dir /tmp/sink

prints ``listening 127.0.0.1:<port>`` on stdout once it accepts connections
(port 0 by default: the kernel picks a free one) and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import sys
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

_ids = itertools.count()


class DurableSink:
    def __init__(self, root: Path) -> None:
        self.tmp = root / "tmp"
        self.new = root / "new"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.new.mkdir(parents=True, exist_ok=True)

    def write(self, data: bytes) -> None:
        name = f"{os.getpid()}.{next(_ids)}.eml"
        fd = os.open(self.tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp / name, self.new / name)
        dir_fd = os.open(self.new, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.write, envelope.original_content or b"")
        except OSError:
            return "451 4.3.0 Cannot store the message"
        return "250 2.0.0 Ok"


async def serve(root: Path, host: str, port: int, max_size: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sink = DurableSink(root)
    server = await loop.create_server(
        lambda: SMTP(
            sink,
            data_size_limit=max_size,
            enable_SMTPUTF8=True,
            hostname="reference.bench",
            ident="reference ESMTP",
            loop=loop,
        ),
        host,
        port,
    )
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"listening {bound_host}:{bound_port}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A bare aiosmtpd server that only stores each mail durably.")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-size", type=int, default=25_000_000)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.dir, args.host, args.port, args.max_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
