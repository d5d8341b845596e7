"""``mailgate outbox list [--failed]``, ``retry ID|--all``, ``suppressed [--json]`` and ``unsuppress ADDRESS``.

The suppression list is what proven hard bounces acted on (docs/security.md): an admin sees it and
lifts an entry when the address works again, rather than waiting ``[bounces] suppress_days``.
"""

from __future__ import annotations

import argparse
import sys

from mailgate.cli.common import print_json, print_table, runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("outbox", help="outgoing mail: what waits, what failed, what was held back")
    osub = p.add_subparsers(dest="outbox_command", metavar="ACTION")
    osub.required = True
    lst = osub.add_parser("list", help="mail not yet sent (pending, held back, failed), newest first")
    lst.add_argument("--failed", action="store_true", help="only mail that failed for good")
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--format", choices=("table", "json"), default="table")
    lst.set_defaults(func=cmd_list)
    retry = osub.add_parser("retry", help="send a failed or held-back mail again, now")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the outbox id (see `mailgate outbox list`)")
    which.add_argument("--all", action="store_true", help="every failed mail")
    retry.set_defaults(func=cmd_retry)
    sup = osub.add_parser("suppressed", help="addresses that get no automatic mail (hard bounces), and why")
    sup.add_argument("--all", action="store_true", help="also entries whose time has run out")
    sup.add_argument("--format", choices=("table", "json"), default="table")
    sup.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    sup.set_defaults(func=cmd_suppressed)
    lift = osub.add_parser("unsuppress", help="lift the suppression of an address: automatic mail goes to it again")
    lift.add_argument("address")
    lift.set_defaults(func=cmd_unsuppress)


def cmd_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from mailgate.storage.models import Outbox, Ticket

    rt = runtime(args)
    statuses = ("failed",) if args.failed else ("pending", "held", "failed")
    with rt.sessions() as session:
        query = (
            select(Outbox, Ticket.number)
            .outerjoin(Ticket, Ticket.id == Outbox.ticket_id)
            .where(Outbox.status.in_(statuses))
            .order_by(Outbox.id.desc())
            .limit(args.limit)
        )
        rows = [
            {
                "id": row.id,
                "status": row.status,
                "kind": row.kind,
                "ticket": number,
                "to": ",".join(row.rcpt_tos),
                "attempts": row.attempts,
                "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "pending" else None,
                "created_at": row.created_at.isoformat(),
                "message_id": row.message_id,
                "error": row.last_error,
            }
            for row, number in session.execute(query).all()
        ]
    if args.format == "json":
        print_json(rows)
    else:
        print_table(rows, ["id", "status", "kind", "ticket", "to", "attempts", "next_attempt_at", "error"])
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from mailgate.storage import audit
    from mailgate.storage.models import Outbox, Ticket

    rt = runtime(args)
    now = rt.services.clock.now()
    with rt.sessions() as session, session.begin():
        if args.all:
            rows = list(session.scalars(select(Outbox).where(Outbox.status == "failed")))
        else:
            row = session.get(Outbox, args.id)
            if row is None or row.status not in ("failed", "held"):
                state = "no such mail" if row is None else f"it is {row.status}"
                print(f"mailgate: outbox {args.id}: cannot retry ({state}; only failed or held mail)", file=sys.stderr)
                return 1
            rows = [row]
        for row in rows:
            ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
            audit.record(
                session,
                now,
                "mail.retried",
                ticket=ticket,
                actor="admin",
                outbox=row.id,
                was=row.status,
                error=row.last_error,
            )
            row.status, row.next_attempt_at, row.claimed_until, row.last_error = "pending", now, None, ""
    print(f"{len(rows)} mail(s) queued again; a running daemon sends them at its next sweep")
    return 0


def cmd_suppressed(args: argparse.Namespace) -> int:
    from sqlalchemy import or_, select

    from mailgate.storage.models import Suppression

    rt = runtime(args)
    now = rt.services.clock.now()
    with rt.sessions() as session:
        query = select(Suppression).order_by(Suppression.created_at, Suppression.address)
        if not args.all:
            query = query.where(or_(Suppression.until.is_(None), Suppression.until > now))
        rows = [
            {
                "address": row.address,
                "until": row.until.isoformat() if row.until else None,
                "since": row.created_at.isoformat(),
                "reason": row.reason,
            }
            for row in session.scalars(query)
        ]
    if args.format == "json":
        print_json(rows)
    else:
        print_table(rows, ["address", "until", "since", "reason"])
    return 0


def cmd_unsuppress(args: argparse.Namespace) -> int:
    from mailgate.storage import audit
    from mailgate.storage.models import Suppression

    rt = runtime(args)
    address = args.address.strip().strip("<>").lower()
    with rt.sessions() as session, session.begin():
        row = session.get(Suppression, address)
        if row is None:
            print(f"mailgate: {address} is not suppressed", file=sys.stderr)
            return 1
        audit.record(
            session,
            rt.services.clock.now(),
            "suppression.lifted",
            actor="admin",
            address=address,
            reason=row.reason,
            until=row.until.isoformat() if row.until else None,
        )
        session.delete(row)
    print(f"{address}: suppression lifted; automatic mail goes to it again")
    return 0
