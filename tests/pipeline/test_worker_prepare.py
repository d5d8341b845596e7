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


def test_the_reply_and_the_content_digest_are_read_before_the_first_statement_too(harness, monkeypatch):
    """Quotes, commands and the dedupe digest are functions of the mail alone: none waits inside the lock."""
    from mailgate.pipeline import run as pipeline
    from mailgate.pipeline.steps import agents

    seen: list[str] = []
    real_split, real_digest = agents.split_reply, pipeline.content_digest
    monkeypatch.setattr(agents, "split_reply", lambda text: seen.append("split") or real_split(text))
    monkeypatch.setattr(pipeline, "content_digest", lambda raw: seen.append("digest") or real_digest(raw))
    event.listen(harness.runtime.engine, "before_cursor_execute", lambda *a: seen.append("sql"))
    spool_mails(
        harness,
        *(
            make_mail(subject=f"mail {i}", body=f"New text {i}\n\n> quoted\n", msgid=f"<r{i}@c.example>")
            for i in range(3)
        ),
    )
    harness.worker.drain()

    first_sql = seen.index("sql")
    assert sorted(seen[:first_sql]) == ["digest"] * 3 + ["split"] * 3
    assert seen.count("split") == 3 and seen.count("digest") == 3  # and not again by the steps
    with harness.session() as session:
        from sqlalchemy import select

        from mailgate.storage.models import Message

        assert sorted(session.scalars(select(Message.new_text))) == [f"New text {i}" for i in range(3)]


FRENCH = "Bonjour,\nmon imprimante ne fonctionne plus depuis hier soir et elle fait un bruit étrange.\nMerci\n"


class _Counting:
    """py3langid's identifier, noting each classification in ``seen``."""

    def __init__(self, real, seen: list[str]) -> None:
        self.real, self.seen = real, seen

    def classify(self, sample: str):
        self.seen.append("classify")
        return self.real.classify(sample)


def _count_classifications(harness, monkeypatch) -> list[str]:
    from mailgate.mail import language

    seen: list[str] = []
    counting = _Counting(language._identifier(), seen)
    language._detect_sample.cache_clear()  # answers remembered by earlier tests would hide the classifications
    monkeypatch.setattr(language, "_identifier", lambda: counting)
    event.listen(harness.runtime.engine, "before_cursor_execute", lambda *a: seen.append("sql"))
    return seen


def _locales(harness) -> list[str]:
    from sqlalchemy import select

    from mailgate.storage.models import Ticket

    with harness.session() as session:
        return list(session.scalars(select(Ticket.locale).order_by(Ticket.number)))


def test_the_language_of_a_mail_that_opens_a_ticket_is_told_before_the_transaction(harness, monkeypatch):
    seen = _count_classifications(harness, monkeypatch)
    spool_mails(
        harness,
        make_mail(subject="Imprimante", body=FRENCH, msgid="<fr1@c.example>"),
        make_mail(subject="Imprimante encore", body=FRENCH + "Deux fois.\n", msgid="<fr2@c.example>"),
    )
    harness.worker.drain()

    assert seen.count("classify") == 2  # once each, before the first statement: the store step finds the answer
    assert seen.index("sql") > max(i for i, what in enumerate(seen) if what == "classify")
    assert _locales(harness) == ["fr", "fr"]


def test_a_mail_naming_an_earlier_one_is_not_told_ahead_and_still_gets_its_language(harness, monkeypatch):
    """The guess only moves work: a reply to a mail we never saw opens a ticket, told inside, the same."""
    seen = _count_classifications(harness, monkeypatch)
    spool_mails(harness, make_mail(subject="Re: Imprimante", body=FRENCH, in_reply_to="<unknown@c.example>"))
    harness.worker.drain()

    assert seen.count("classify") == 1
    assert seen.index("classify") > seen.index("sql")  # in the store step, inside the transaction
    assert _locales(harness) == ["fr"]


def test_a_known_content_language_is_not_told_from_the_text(harness, monkeypatch):
    seen = _count_classifications(harness, monkeypatch)
    raw = make_mail(subject="Drucker", body=FRENCH).replace(b"Subject:", b"Content-Language: de-DE\r\nSubject:", 1)
    spool_mails(harness, raw)
    harness.worker.drain()

    assert seen.count("classify") == 0
    assert _locales(harness) == ["de"]
