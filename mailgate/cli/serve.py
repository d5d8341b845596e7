"""``mailgate serve``: run the daemon until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio

from mailgate.cli.common import load, runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the daemon (SMTP intake, pipeline, outbound, timers)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from mailgate.daemon import serve

    config = load(args)
    rt = runtime(args, config, create=True)
    try:
        asyncio.run(serve(rt))
    finally:
        rt.close()
    return 0
