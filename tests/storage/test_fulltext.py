"""SQLite's full-text index is written beside each message row, by every way a message is stored.

With an insert trigger, FTS5 wrote every mail as an index segment of its own (the trigger's statement
savepoint flushes its pending terms); written by a statement of its own, a batch's terms are one segment.
"""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from sqlalchemy import select, text

from mailgate.outbound import outbox
from mailgate.reports.search import Filters, search
from mailgate.storage import db
from mailgate.storage.models import Message, Ticket
from tests.helpers import make_mail, spool_mails


def _is_sqlite(harness) -> bool:
    return harness.runtime.engine.dialect.name == "sqlite"


def _found(harness, words: str) -> list[int]:
    with harness.session() as session:
        return [r["number"] for r in search(session, words, Filters())]


def _triggers(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))


def test_a_mail_the_pipeline_stores_is_found_at_once(harness):
    harness.deliver(make_mail(subject="Printer on fire", body="The zanzibar printer smokes.\n"))
    assert _found(harness, "zanzibar") == [1]
    assert _found(harness, "printer fire") == [1]


def test_an_answer_stored_by_the_outbound_side_is_found(harness):
    harness.deliver(make_mail(subject="Printer on fire"))
    with harness.runtime.sessions() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        outbox.enqueue(
            session,
            harness.runtime.services,
            ticket=ticket,
            kind="acknowledgment",
            recipients=["alice@customer.example"],
            automatic=False,
            context={"ticket_note": "quixotic"},
        )
    with harness.session() as session:
        subjects = session.scalars(select(Message.subject).where(Message.direction == "out")).all()
    assert len(subjects) == 1
    word = subjects[0].split()[0].strip("[]#:")  # the answer's own subject, as a word of its own
    assert 1 in _found(harness, word)


def test_a_message_the_unit_of_work_flushes_is_found_and_a_deleted_one_is_gone(harness, clock):
    harness.deliver(make_mail(subject="Printer on fire"))
    with harness.runtime.sessions() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        session.add(
            Message(
                ticket_id=ticket.id,
                direction="note",
                dedupe_key="note-1",
                subject="internal",
                text="the flibbertigibbet cable",
                created_at=clock.now(),
            )
        )
    assert _found(harness, "flibbertigibbet") == [1]
    with harness.runtime.sessions() as session, session.begin():
        session.delete(session.scalars(select(Message).where(Message.dedupe_key == "note-1")).one())
    assert _found(harness, "flibbertigibbet") == []


def test_a_batch_of_mails_is_one_index_segment(harness):
    if not _is_sqlite(harness):
        pytest.skip("SQLite's FTS5 index; PostgreSQL indexes an expression over the table")
    spool_mails(harness, *(make_mail(subject=f"Request {n}", body=f"word{n} and more words\n") for n in range(20)))
    assert harness.worker.drain() == 20
    with harness.runtime.engine.connect() as conn:
        segments = conn.scalar(text("SELECT count(DISTINCT segid) FROM messages_fts_idx"))
    assert segments == 1
    assert _found(harness, "word7") == [8]


def test_the_migration_drops_the_insert_trigger_and_keeps_what_it_indexed(db_url):
    engine = db.make_engine(db_url)
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has no trigger")
    db.upgrade(engine, "0008_ticket_numbers")
    assert "messages_fts_ai" in _triggers(engine)
    # a mail stored before the upgrade, indexed by the trigger (written by hand, its ticket aside)
    with contextlib.closing(sqlite3.connect(engine.url.database)) as conn, conn:
        conn.execute(
            'INSERT INTO messages (ticket_id, direction, dedupe_key, message_id, in_reply_to, "references",'
            " from_addr, from_name, to_addrs, cc_addrs, subject, text, html, new_text, raw_sha256, size,"
            " source, author, parse_defects, created_at) VALUES (1, 'in', 'k', '', '', '', '', '', '[]',"
            " '[]', 'old', 'the lighthouse keeper', '', '', '', 0, '', '', '[]', '2026-01-01')"
        )
    db.upgrade(engine)
    assert "messages_fts_ai" not in _triggers(engine)
    assert {"messages_fts_ad", "messages_fts_au"} <= _triggers(engine)
    with engine.connect() as conn:
        hits = conn.scalars(text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'lighthouse'")).all()
    assert hits == [1]
    db.downgrade(engine, "0008_ticket_numbers")
    assert "messages_fts_ai" in _triggers(engine)
    engine.dispose()
