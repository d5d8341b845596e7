"""A batch runs with no savepoint until a mail fails; then that mail alone is left out.

Savepoints cost two statements a mail (two round trips on PostgreSQL), and mails seldom fail. When
one does, the batch's transaction is rolled back whole (the failed mail's rows with it) and the
batch runs again with a savepoint for each other mail; the failed mail is not run a second time.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import event, func, select

from mailgate.pipeline import run as pipeline
from mailgate.pipeline.steps import store as store_step
from mailgate.storage.models import Customer, Event, Message
from tests.helpers import make_mail, spool_mails, stored_message_ids


@pytest.fixture
def watched(harness, monkeypatch):
    """The statements the batch runs, and how often the pipeline ran on each Message-ID."""
    seen: list[str] = []
    runs: Counter[str] = Counter()
    real_run = pipeline.run

    def run(raw, envelope, session, services, **kwargs):
        runs[next(line for line in raw.decode().splitlines() if line.lower().startswith("message-id"))[12:]] += 1
        return real_run(raw, envelope, session, services, **kwargs)

    monkeypatch.setattr(pipeline, "run", run)
    listener = lambda conn, cursor, statement, *rest: seen.append(statement)  # noqa: E731
    event.listen(harness.runtime.engine, "before_cursor_execute", listener)
    yield seen, runs
    event.remove(harness.runtime.engine, "before_cursor_execute", listener)


def _breaks_after_storing(monkeypatch, subject: str) -> None:
    """The store step fails on one mail after its customer, ticket and message rows are written."""
    real_record = store_step._record

    def record(ctx, *args, **kwargs):
        real_record(ctx, *args, **kwargs)
        if ctx.mail.subject == subject:
            raise RuntimeError("the store step broke on this one")

    monkeypatch.setattr(store_step, "_record", record)


def test_a_batch_with_no_failure_takes_no_savepoint(harness, watched):
    seen, runs = watched
    spool_mails(harness, *(make_mail(subject=f"mail {i}", msgid=f"<m{i}@customer.example>") for i in range(3)))
    harness.worker.drain()

    assert sorted(stored_message_ids(harness.runtime.config.path)) == [f"<m{i}@customer.example>" for i in range(3)]
    assert [s for s in seen if "SAVEPOINT" in s] == []
    assert set(runs.values()) == {1}


def test_a_failed_mail_is_rolled_back_whole_and_the_rest_of_its_batch_runs_again_each_in_a_savepoint(
    harness, watched, monkeypatch
):
    seen, runs = watched
    _breaks_after_storing(monkeypatch, "broken")
    spool_mails(
        harness,
        make_mail(subject="first", msgid="<good1@customer.example>"),
        make_mail(subject="broken", msgid="<bad@customer.example>", sender="Bob <bob@elsewhere.example>"),
        make_mail(subject="third", msgid="<good2@customer.example>"),
    )
    harness.worker.drain()

    assert sorted(stored_message_ids(harness.runtime.config.path)) == [
        "<good1@customer.example>",
        "<good2@customer.example>",
    ]
    with harness.session() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 2, "stored once each"
        assert session.scalars(select(Customer.address)).all() == ["alice@customer.example"], "its rows are gone"
        assert session.scalar(select(func.count()).select_from(Event).where(Event.kind == "ticket.created")) == 2
    # the first ran, then the failure stopped the batch; run again: the first and the third, not the failed one
    assert runs == Counter({"<good1@customer.example>": 2, "<bad@customer.example>": 1, "<good2@customer.example>": 1})
    assert len([s for s in seen if s.startswith("SAVEPOINT")]) == 2, "one for each mail run again"
    [waiting] = harness.runtime.spool.entries("incoming")
    assert "the store step broke on this one" in waiting.read_meta().last_error


def test_a_batch_of_one_failed_mail_is_not_run_again(harness, watched, monkeypatch):
    seen, runs = watched
    _breaks_after_storing(monkeypatch, "broken")
    spool_mails(harness, make_mail(subject="broken", msgid="<bad@customer.example>"))
    harness.worker.drain()

    assert stored_message_ids(harness.runtime.config.path) == []
    assert runs == Counter({"<bad@customer.example>": 1})
    assert [s for s in seen if "SAVEPOINT" in s] == []
    [waiting] = harness.runtime.spool.entries("incoming")
    assert waiting.read_meta().attempts == 1
