"""``mailgate imap test [ACCOUNT]``: can we log in, what is there, what would be fetched.

Changes nothing: no message is fetched, flagged or moved, and no folder is
created. Exit 0 when every account checked is fine, 1 when one is not
(unreachable, login refused, folder missing), 2 for an unknown account.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from mailgate.cli.common import load, runtime

if TYPE_CHECKING:
    from mailgate.app import Runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("imap", help="the [[imap]] accounts mail is fetched from")
    isub = p.add_subparsers(dest="imap_command", metavar="ACTION")
    isub.required = True
    test = isub.add_parser("test", help="log in, list folder counts, say what would be fetched")
    test.add_argument("account", nargs="?", help="the account's name (default: every account)")
    test.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    config = load(args, log=False)
    rt = runtime(args, config, create=True)  # run before the first serve, as the tour does
    try:
        accounts = rt.services.imap_accounts
        if not accounts:
            print(f"mailgate: no [[imap]] account in {config.path}", file=sys.stderr)
            return 1
        if args.account:
            accounts = [a for a in accounts if a.name == args.account]
            if not accounts:
                names = ", ".join(a.name for a in rt.services.imap_accounts)
                print(f"mailgate: no [[imap]] account named {args.account!r} (there are: {names})", file=sys.stderr)
                return 2
        results = [asyncio.run(_test(rt, account)) for account in accounts]
    finally:
        rt.close()
    return 0 if all(results) else 1


async def _list_folders(client: Any) -> list[str]:
    """Print the selectable folders with their counts; return their names."""
    print("  folders:")
    names = []
    for name, flags in await client.folders():
        if "\\Noselect" in flags or "\\NonExistent" in flags:
            continue
        names.append(name)
        status = await client.status(name)
        print(f"    {name:<30} {status.get('MESSAGES', 0):>7} messages {status.get('UNSEEN', 0):>7} unseen")
    return names


async def _test(rt: Runtime, account: Any) -> bool:
    from mailgate.doors.imap import load_state
    from mailgate.doors.imap_client import ImapAuthError, ImapClient, ImapError

    print(f"{account.name}: {account.server} (tls: {account.tls}) as {account.username}")
    try:
        client = await ImapClient.connect(account, timeout=20)
    except ImapAuthError as exc:
        print(f"  login FAILED: {exc} (wrong username or password?)")
        return False
    except (OSError, ImapError) as exc:
        print(f"  cannot connect: {type(exc).__name__}: {exc}")
        return False
    try:
        wanted = [c for c in ("IDLE", "MOVE", "UIDPLUS") if client.has(c)]
        print(
            f"  login ok; server has {', '.join(wanted) or 'none of IDLE, MOVE, UIDPLUS'}"
            f"{'' if 'IDLE' in wanted else f' (polling every {account.poll_interval:g}s)'}"
        )
        names = await _list_folders(client)
        if account.folder not in names:
            print(f"  folder {account.folder!r} does not exist: nothing can be fetched")
            return False
        if account.after_store == "move" and account.move_to not in names:
            print(f"  folder {account.move_to!r} does not exist yet; `serve` creates it")
        selected = await client.select(account.folder)
        remembered = await asyncio.to_thread(load_state, rt.sessions, account.name, account.folder)
        last_uid = 0
        if remembered is not None and remembered[0] == selected.uidvalidity:
            last_uid = remembered[1]
            print(f"  {account.folder}: UIDVALIDITY {selected.uidvalidity}, fetched up to UID {last_uid}")
        elif remembered is not None:
            print(
                f"  {account.folder}: UIDVALIDITY changed ({remembered[0]} -> {selected.uidvalidity}): "
                "the whole folder is read again; mails stored before are dropped as duplicates"
            )
        else:
            print(f"  {account.folder}: never fetched before (UIDVALIDITY {selected.uidvalidity})")
        uids = await client.uids_after(last_uid)
        then = {"move": f"moved to {account.move_to!r}", "flag": "flagged \\Seen", "delete": "deleted (expunged)"}[
            account.after_store
        ]
        if uids:
            print(
                f"  would fetch {len(uids)} message{'s' if len(uids) != 1 else ''} "
                f"(UIDs {uids[0]}-{uids[-1]}), each {then} once stored"
            )
        else:
            print("  nothing new to fetch")
        return True
    except (OSError, ImapError) as exc:
        print(f"  FAILED: {type(exc).__name__}: {exc}")
        return False
    finally:
        await client.logout()
