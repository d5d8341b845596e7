"""`mailgate search` (full text, any language, with filters) and `mailgate tickets export` (mbox, JSON)."""

from __future__ import annotations

import json
import mailbox
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from mailgate.reports.search import Filters, matching_messages, search, words
from mailgate.storage.models import Message, Ticket
from tests.helpers import mailgate, make_mail


@pytest.fixture
def mails(harness, clock):
    """Three customers, four tickets, one of them written in Russian."""
    harness.deliver(
        make_mail(subject="Printer on fire", body="The printer in room 4 is on fire.\n", msgid="<p1@customer.example>")
    )
    clock.advance(timedelta(days=2))
    harness.deliver(
        make_mail(
            subject="Не работает принтер",
            body="Здравствуйте!\nМой ПРИНТЕР не печатает.\n",
            sender="Иван <ivan@client.example.ru>",
            msgid="<ru1@client.example.ru>",
        ),
        mail_from="ivan@client.example.ru",
    )
    clock.advance(timedelta(days=2))
    harness.deliver(
        make_mail(
            subject="Invoice question",
            body="Where is my invoice for the printer toner?\n",
            sender="bob@other.example",
            msgid="<i1@other.example>",
        ),
        mail_from="bob@other.example",
    )
    harness.deliver(
        make_mail(
            subject="Re: Printer on fire [#1]", body="Now the café smells of smoke.\n", msgid="<p2@customer.example>"
        )
    )
    return harness


def found(harness, query, **filters):
    with harness.session() as session:
        return [r["number"] for r in search(session, query, Filters(**filters))]


def test_a_word_in_a_russian_body_is_found_whatever_its_case(mails):
    assert found(mails, "принтер") == [2]
    assert found(mails, "Принтер печатает") == [2]
    assert found(mails, "печатает огонь") == []  # every word must be there


def test_subjects_and_replies_are_searched_and_results_name_the_ticket(mails):
    assert found(mails, "fire") == [1]
    assert found(mails, "CAFÉ") == [1]
    assert sorted(found(mails, "printer")) == [1, 3]
    with mails.session() as session:
        [hit] = search(session, "toner", Filters())
    assert hit["number"] == 3 and hit["customer"] == "bob@other.example" and hit["status"] == "new"
    assert "toner" in hit["snippet"] and hit["matches"] == 1


def test_prefix_search_and_operators_taken_as_words(mails):
    assert found(mails, "inv*") == [3]
    assert words('printer" OR NEAR(fire) -x') == ["printer", "OR", "NEAR", "fire", "x"]
    assert found(mails, 'fire" OR "toner') == []  # quotes and OR are not syntax: no error, no surprise
    assert found(mails, "!!!") == []


def test_filters_by_status_queue_customer_and_date(mails, clock):
    with mails.session() as session, session.begin():
        session.scalar(select(Ticket).where(Ticket.number == 3)).status = "pending"
    assert found(mails, "printer", status="pending") == [3]
    assert found(mails, "printer", status="new") == [1]
    assert found(mails, "printer", queue="support") != [] and found(mails, "printer", queue="sales") == []
    assert found(mails, "printer", customer="bob@other.example") == [3]
    assert found(mails, "принтер", customer="@client.example.ru") == [2]
    now = clock.now()
    assert found(mails, "printer", since=now - timedelta(days=1)) == [3]
    assert found(mails, "printer", until=now - timedelta(days=1)) == [1]


def test_the_index_follows_edits_and_deletes(mails):
    with mails.session() as session, session.begin():
        message = session.scalar(select(Message).where(Message.message_id == "<i1@other.example>"))
        message.text = "nothing about that any more"
    assert found(mails, "toner") == []
    assert found(mails, "nothing about") == [3]


def test_search_command_prints_json_and_exits_1_when_nothing_matches(mails, config_file):
    result = mailgate(config_file, "search", "принтер", "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    [hit] = json.loads(result.stdout)
    assert hit["number"] == 2 and hit["subject"] == "Не работает принтер"
    assert set(hit) == {
        "number",
        "subject",
        "status",
        "queue",
        "customer",
        "created_at",
        "updated_at",
        "matches",
        "snippet",
    }
    assert mailgate(config_file, "search", "zebra").returncode == 1
    table = mailgate(config_file, "search", "fire", "--status", "new")
    assert table.returncode == 0 and b"Printer on fire" in table.stdout


def test_export_mbox_holds_the_whole_conversation_as_it_was_received(mails, config_file, tmp_path):
    target = tmp_path / "ticket-1.mbox"
    result = mailgate(config_file, "tickets", "export", "1", "--mbox", str(target))
    assert result.returncode == 0, result.stderr.decode()
    box = mailbox.mbox(target)
    try:
        exported = list(box)
        assert [m["Message-ID"] for m in exported] == ["<p1@customer.example>", "<p2@customer.example>"]
        assert exported[1].get_payload(decode=True).decode().startswith("Now the café smells of smoke.")
        assert exported[0].get_from().startswith("alice@customer.example ")
    finally:
        box.close()
    with mails.session() as session:
        original = mails.runtime.services.blobs.get(
            session.scalar(select(Message.raw_sha256).where(Message.message_id == "<p1@customer.example>"))
        )
    assert original.replace(b"\r\n", b"\n") in target.read_bytes()


def test_a_from_line_inside_a_body_is_quoted_and_survives(harness, config_file, tmp_path):
    harness.deliver(make_mail(body="Hello\nFrom here on it is broken.\n>From quoted\n", msgid="<f@customer.example>"))
    target = tmp_path / "t.mbox"
    assert mailgate(config_file, "tickets", "export", "1", "--mbox", str(target)).returncode == 0
    assert b"\n>From here on" in target.read_bytes() and b"\n>>From quoted" in target.read_bytes()
    box = mailbox.mbox(target)
    try:
        assert len(box) == 1
    finally:
        box.close()


def test_export_json_has_the_ticket_its_messages_and_its_audit_trail(mails, config_file, tmp_path):
    result = mailgate(config_file, "tickets", "export", "1", "--json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert data["number"] == 1 and [m["message_id"] for m in data["messages"]] == [
        "<p1@customer.example>",
        "<p2@customer.example>",
    ]
    assert "ticket.created" in [e["kind"] for e in data["events"]]
    assert isinstance(data["outbox"], list)
    to_file = tmp_path / "t.json"
    assert mailgate(config_file, "tickets", "export", "1", "--json", str(to_file)).returncode == 0
    assert json.loads(to_file.read_text())["number"] == 1
    missing = mailgate(config_file, "tickets", "export", "99", "--json")
    assert missing.returncode == 1 and b"no ticket #99" in missing.stderr


def test_postgresql_answers_from_the_full_text_index(mails):
    with mails.session() as session:
        if session.get_bind().dialect.name != "postgresql":
            pytest.skip("PostgreSQL only (SQLite searches its FTS5 table, which is the index)")
        session.execute(text("SET enable_seqscan = off"))
        query = matching_messages(session, words("принтер"))
        plan = "\n".join(
            session.execute(
                text("EXPLAIN " + str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})))
            ).scalars()
        )
    assert "ix_messages_fts" in plan, plan
