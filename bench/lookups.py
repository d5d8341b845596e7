"""Ticket lookups on a big database against a small one: do they stay indexed?

The rows are written with bulk SQL straight into mailgate's schema (created by
its own migrations), not through the pipeline: a million messages through the
pipeline would take an hour and measure the pipeline, not the lookups. Each
ticket gets three messages; every message's Message-ID is in
``message_refs`` under its sha256, as the store step writes it.

What is timed is the real code the thread step runs:
:func:`mailgate.storage.threads.by_token` (subject token → ticket number → ticket)
and :func:`mailgate.storage.threads.by_references` (In-Reply-To/References →
message_refs → ticket), each on random targets, a fresh ORM session every
100 lookups so the identity map does not answer instead of the database.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

MESSAGES_PER_TICKET = 3
_WHEN = "2024-01-01 00:00:00.000000"


def _ticket_count(messages: int) -> int:
    return max(1, -(-messages // MESSAGES_PER_TICKET))


def msgid(i: int) -> str:
    return f"m{i}@lookup.bench.example"


def _fill_sqlite(engine: Engine, messages: int) -> None:
    tickets, customers = _ticket_count(messages), max(10, messages // 100)
    seq = "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}) "
    raw = engine.raw_connection()
    try:
        raw.driver_connection.create_function(
            "sha256_hex", 1, lambda s: hashlib.sha256(s.encode()).hexdigest(), deterministic=True
        )
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA journal_mode=MEMORY")
        for trigger in ("messages_fts_ai", "messages_fts_ad", "messages_fts_au"):  # full-text search is not timed
            cur.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        cur.execute("BEGIN")
        cur.execute(
            seq.format(n=customers) + "INSERT INTO customers (id, address, name, created_at) "
            f"SELECT i, 'c' || i || '@lookup.bench.example', 'Customer ' || i, '{_WHEN}' FROM seq"
        )
        cur.execute(
            seq.format(n=tickets) + "INSERT INTO tickets (id, number, subject, status, queue, priority, "
            "tags, spam, locale, customer_id, created_at, updated_at, time_spent) "
            f"SELECT i, i, 'Ticket ' || i, 'open', 'support', 'normal', '[]', 0, 'en', 1 + i % {customers}, "
            f"'{_WHEN}', '{_WHEN}', 0 FROM seq"
        )
        cur.execute(
            seq.format(n=messages) + "INSERT INTO messages (id, ticket_id, direction, dedupe_key, "
            'message_id, in_reply_to, "references", from_addr, from_name, to_addrs, cc_addrs, subject, '
            "date, text, html, new_text, raw_sha256, size, source, author, parse_defects, created_at) "
            f"SELECT i, 1 + (i - 1) / {MESSAGES_PER_TICKET}, 'in', printf('%064x', i), "
            "'<m' || i || '@lookup.bench.example>', '', '', 'c@lookup.bench.example', '', '[]', '[]', "
            f"'Ticket', '{_WHEN}', 'Hello', '', 'Hello', '', 1000, 'smtp', '', '[]', '{_WHEN}' FROM seq"
        )
        cur.execute(
            "INSERT INTO message_refs (msgid_sha256, ticket_id, message_pk) "
            "SELECT sha256_hex('m' || id || '@lookup.bench.example'), ticket_id, id FROM messages"
        )
        cur.execute(f"UPDATE counters SET value = {tickets} WHERE name = 'ticket'")
        cur.execute("COMMIT")
        cur.execute("ANALYZE")
        cur.close()
    finally:
        raw.close()


def _fill_postgresql(engine: Engine, messages: int) -> None:
    tickets, customers = _ticket_count(messages), max(10, messages // 100)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customers (id, address, name, created_at) SELECT i, 'c' || i || '@lookup.bench.example', "
                f"'Customer ' || i, '{_WHEN}+00' FROM generate_series(1, {customers}) AS i"
            )
        )
        conn.execute(
            text(
                "INSERT INTO tickets (id, number, subject, status, queue, priority, tags, spam, locale, customer_id, "
                f"created_at, updated_at, time_spent) SELECT i, i, 'Ticket ' || i, 'open', 'support', 'normal', '[]', "
                f"false, 'en', 1 + i % {customers}, '{_WHEN}+00', '{_WHEN}+00', 0 FROM generate_series(1, {tickets}) i"
            )
        )
        conn.execute(
            text(
                'INSERT INTO messages (id, ticket_id, direction, dedupe_key, message_id, in_reply_to, "references", '
                "from_addr, from_name, to_addrs, cc_addrs, subject, date, text, html, new_text, raw_sha256, size, "
                "source, author, parse_defects, created_at) "
                f"SELECT i, 1 + (i - 1) / {MESSAGES_PER_TICKET}, 'in', lpad(to_hex(i), 64, '0'), "
                "'<m' || i || '@lookup.bench.example>', '', '', 'c@lookup.bench.example', '', '[]', '[]', 'Ticket', "
                f"'{_WHEN}+00', 'Hello', '', 'Hello', '', 1000, 'smtp', '', '[]', '{_WHEN}+00' "
                f"FROM generate_series(1, {messages}) AS i"
            )
        )
        conn.execute(
            text(
                "INSERT INTO message_refs (msgid_sha256, ticket_id, message_pk) SELECT "
                "encode(sha256(convert_to('m' || id || '@lookup.bench.example', 'UTF8')), 'hex'), ticket_id, id "
                "FROM messages"
            )
        )
        for table in ("customers", "tickets", "messages"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
        conn.execute(text(f"UPDATE counters SET value = {tickets} WHERE name = 'ticket'"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


def build(url: str, messages: int) -> float:
    """Create mailgate's schema at ``url`` and fill it; returns the seconds it took."""
    from mailgate.storage import db

    started = time.perf_counter()
    engine = db.make_engine(url)
    try:
        db.ensure_schema(engine)
        if engine.dialect.name == "sqlite":
            _fill_sqlite(engine, messages)
        else:
            _fill_postgresql(engine, messages)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def time_lookups(url: str, messages: int, count: int, seed: int = 7) -> dict[str, float]:
    """Microseconds per lookup by token and by References, on random existing targets."""
    from sqlalchemy.orm import Session

    from mailgate.storage import db
    from mailgate.storage import threads as followup

    engine = db.make_engine(url)
    rng = random.Random(seed)
    tickets = _ticket_count(messages)
    numbers = [rng.randint(1, tickets) for _ in range(count)]
    refs = [[f"<{msgid(rng.randint(1, messages))}>" for _ in range(4)] for _ in range(count)]
    results: dict[str, float] = {}
    try:
        for name, call in (
            ("token", lambda s, i: followup.by_token(s, f"Re: [#{numbers[i]}] Ticket", "")),
            ("references", lambda s, i: followup.by_references(s, refs[i][:1], refs[i][1:])),
        ):
            found = 0
            started = time.perf_counter()
            for block in range(0, count, 100):
                with Session(engine) as session:
                    for i in range(block, min(block + 100, count)):
                        found += call(session, i) is not None
            results[f"{name}_us"] = round((time.perf_counter() - started) / count * 1e6, 1)
            if found != count:
                raise AssertionError(f"lookup by {name} found {found} of {count} tickets")
    finally:
        engine.dispose()
    return results


def query_plans(url: str) -> dict[str, str]:
    """The database's plan for the two lookups' queries: an index search, never a scan of the table."""
    from mailgate.storage import db

    queries = {
        "token": "SELECT id FROM tickets WHERE number = 12345",
        "references": "SELECT msgid_sha256, ticket_id FROM message_refs WHERE msgid_sha256 IN ('ab', 'cd')",
    }
    engine = db.make_engine(url)
    plans = {}
    try:
        with engine.connect() as conn:
            for name, sql in queries.items():
                prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
                rows = conn.execute(text(prefix + sql)).all()
                plans[name] = " | ".join(str(r[-1]).strip() for r in rows)
    finally:
        engine.dispose()
    return plans


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def measure(small: int, big: int, count: int, pg_url: str | None = None, rounds: int = 3) -> dict[str, Any]:
    """Lookups on a ``big``-message database against a ``small`` one, SQLite (and PostgreSQL if given).

    Both databases exist at once and are measured in alternation, ``rounds``
    times, so a burst of noise on a shared machine hits both; the median of
    each is kept.
    """
    from contextlib import ExitStack

    out: dict[str, Any] = {}
    for backend in ("sqlite", "postgresql") if pg_url else ("sqlite",):
        row: dict[str, Any] = {"small_messages": small, "big_messages": big}
        with ExitStack() as stack:
            urls = {}
            for label, size in (("small", small), ("big", big)):
                if backend == "sqlite":
                    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-lookup-"))
                    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
                    urls[label] = f"sqlite:///{workdir / 'lookup.sqlite3'}"
                else:
                    from servers import pg_schema

                    assert pg_url is not None
                    urls[label] = stack.enter_context(pg_schema(pg_url))
                row[f"{label}_build_s"] = round(build(urls[label], size), 1)
                time_lookups(urls[label], size, min(count, 200))  # warm the caches
            samples: dict[str, list[dict[str, float]]] = {"small": [], "big": []}
            for _ in range(rounds):
                for label, size in (("small", small), ("big", big)):
                    samples[label].append(time_lookups(urls[label], size, count))
            for label in ("small", "big"):
                row[label] = {key: _median([s[key] for s in samples[label]]) for key in samples[label][0]}
            row["plans_big"] = query_plans(urls["big"])
        row["token_ratio"] = round(row["big"]["token_us"] / row["small"]["token_us"], 2)
        row["references_ratio"] = round(row["big"]["references_us"] / row["small"]["references_us"], 2)
        out[backend] = row
    return out
