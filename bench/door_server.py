"""mailgate's SMTP door alone: the real handler and spool of ``mailgate serve``, no pipeline worker.

Why: end to end, the door shares one interpreter with the pipeline, so its own
cost disappears behind the pipeline's. Run alone, against the same load as the
reference sink, it shows what the door itself costs: reading DATA, the checks,
the spool entry with its sidecar, group-committed fsyncs.

    python bench/door_server.py --config DIR/config.toml

prints ``listening 127.0.0.1:<port>`` (the port from the config, 0 for a free
one) and stops on SIGTERM; the spool fills up and nothing drains it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailgate.config import load_config
from mailgate.doors.smtp import IntakeHandler, smtp_factory
from mailgate.spool.disk import Spool


async def serve(config_path: Path) -> None:
    config = load_config(config_path)
    spool = Spool(config.spool_dir)
    spool.ensure()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handler = IntakeHandler(config.support, spool)
    server = await loop.create_server(smtp_factory(config, handler), config.smtp.host, config.smtp.port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)
    await stop.wait()
    server.close()
    handler.executor.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mailgate's SMTP door and spool, without the pipeline.")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
