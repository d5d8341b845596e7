"""A worker reads every mail of its batch before the batch's transaction begins.

Reading needs no database; done first, no lock is held while it runs (SQLite's one write lock is
taken at the first statement), so another worker's transaction can run meanwhile.
"""

from __future__ import annotations

from sqlalchemy import event

from mailgate.mail import parse as parsing
from tests.helpers import make_mail, spool_mails, stored_message_ids


def test_every_mail_of_a_batch_is_read_before_its_first_statement(harness, monkeypatch):
    seen: list[str] = []
    real_parse = parsing.parse

    def parse(raw: bytes):
        seen.append("read")
        return real_parse(raw)

    monkeypatch.setattr(parsing, "parse", parse)
    event.listen(harness.runtime.engine, "before_cursor_execute", lambda *a: seen.append("sql"))
    spool_mails(harness, *(make_mail(subject=f"mail {i}", msgid=f"<p{i}@customer.example>") for i in range(3)))
    harness.worker.drain()

    assert seen[:4] == ["read", "read", "read", "sql"]
    assert seen.count("read") == 3  # each mail read once: the pipeline's parse step is not run again
    assert sorted(stored_message_ids(harness.runtime.config.path)) == [f"<p{i}@customer.example>" for i in range(3)]


def test_the_reading_counts_against_the_mails_work_budget(harness_factory, make_config, clock, monkeypatch):
    harness = harness_factory(make_config(spool={"mail_budget": "60s", "max_attempts": 5}))
    real_parse = parsing.parse

    def slow_parse(raw: bytes):
        mail = real_parse(raw)
        if "[slow]" in mail.subject:
            clock.advance(61)
        return mail

    monkeypatch.setattr(parsing, "parse", slow_parse)
    spool_mails(
        harness,
        make_mail(subject="[slow] a heavy one", msgid="<heavy@customer.example>"),
        make_mail(subject="a light one", msgid="<light@customer.example>"),
    )
    harness.worker.drain()

    [quarantined] = harness.runtime.spool.entries("quarantine")
    assert "MailBudgetExceeded" in quarantined.read_meta().last_error
    assert stored_message_ids(harness.runtime.config.path) == ["<light@customer.example>"]


def test_a_mail_that_cannot_be_read_ahead_is_read_in_its_turn_and_fails_alone(harness, monkeypatch):
    real_parse = parsing.parse
    calls = {"bad": 0}

    def flaky_parse(raw: bytes):
        if b"<bad@customer.example>" in raw:
            calls["bad"] += 1
            raise RuntimeError("the reader broke on this one")
        return real_parse(raw)

    monkeypatch.setattr(parsing, "parse", flaky_parse)
    spool_mails(
        harness,
        make_mail(subject="first", msgid="<good1@customer.example>"),
        make_mail(subject="broken", msgid="<bad@customer.example>"),
        make_mail(subject="third", msgid="<good2@customer.example>"),
    )
    harness.worker.drain()

    assert calls["bad"] == 2  # read ahead, then again by the parse step, where the failure is that mail's
    stored = sorted(stored_message_ids(harness.runtime.config.path))
    assert stored == ["<good1@customer.example>", "<good2@customer.example>"]
    [waiting] = harness.runtime.spool.entries("incoming")
    assert "the reader broke on this one" in waiting.read_meta().last_error


def test_a_batch_never_holds_two_mails_over_its_byte_bound(harness, monkeypatch):
    """Every mail of a batch is read before it is stored: two big mails in one batch would be held at once."""
    from mailgate.pipeline import worker as worker_module

    batches: list[list[int]] = []
    real = worker_module.process_batch

    def process_batch(items, sessions, services):
        batches.append([len(raw) for raw, _ in items])
        return real(items, sessions, services)

    monkeypatch.setattr(worker_module, "process_batch", process_batch)
    harness.worker.batch_bytes = 1_500_000
    big, small = "word " * 400_000, "word"  # about 2 MB, and a line
    spool_mails(
        harness,
        *(
            make_mail(subject=f"mail {i}", body=body, msgid=f"<b{i}@customer.example>")
            for i, body in enumerate([small, big, big, small])
        ),
    )
    harness.worker.drain()

    assert [[size > harness.worker.batch_bytes for size in sizes] for sizes in batches] == [
        [False, True],
        [True],
        [False],
    ]
    assert len(stored_message_ids(harness.runtime.config.path)) == 4
