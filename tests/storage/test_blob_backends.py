"""The blob store's two backends behind one interface, `blobs migrate` both ways, and the installation's key.

Runs on SQLite, and on PostgreSQL with MAILGATE_TEST_DATABASE_URL (the database backend's home).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailgate.config import load_config
from mailgate.errors import ConfigError
from mailgate.outbound import outbox as outbox_module
from mailgate.storage import db
from mailgate.storage import keys as signing
from mailgate.storage.blob_database import DatabaseBlobStore
from mailgate.storage.blob_files import FileBlobStore
from mailgate.storage.blobstore import backend_name
from mailgate.storage.migrate import copy_blobs
from mailgate.storage.models import Blob, BlobChunk, Message, Ticket
from tests.helpers import mailgate, make_mail

MIB = 1 << 20


@pytest.fixture
def engine(db_url: str) -> Iterator[object]:
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def rows(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_a_database_blob_commits_or_rolls_back_with_the_transaction_that_references_it(engine):
    blobs = DatabaseBlobStore(engine)
    with Session(engine) as session:
        session.begin()
        with blobs.batch(session):
            kept = blobs.put(b"the raw mail that was stored")
            with session.begin_nested() as savepoint:  # one message of a batch fails: its savepoint goes
                dropped = blobs.put(b"the attachment of the failed message")
                assert blobs.exists(dropped), "readable inside its transaction"
                savepoint.rollback()
            assert not blobs.exists(dropped)
            # Another connection sees nothing before the commit, and on SQLite it does not wait for the writer.
            assert not DatabaseBlobStore(engine).exists(kept), "nothing is visible before the commit"
        session.commit()
    assert blobs.get(kept) == b"the raw mail that was stored"
    assert not blobs.exists(dropped)
    with Session(engine) as session:
        session.begin()
        with blobs.batch(session):
            rolled = blobs.put(b"never committed")
        session.rollback()
    assert not blobs.exists(rolled)


def test_a_big_blob_is_cut_into_chunks_and_the_same_bytes_are_stored_once(engine):
    blobs = DatabaseBlobStore(engine, chunk_size=MIB)
    data = bytes(range(256)) * (3 * MIB // 256) + b"tail" * 1000  # 3 MiB and a bit: four chunks
    sha = blobs.put(data)
    assert blobs.put(data) == sha == hashlib.sha256(data).hexdigest()
    assert rows(engine, Blob) == 1 and rows(engine, BlobChunk) == 4
    pieces = list(blobs.iter_chunks(sha))
    assert [len(p) for p in pieces][:3] == [MIB] * 3 and len(pieces) == 4, "read a chunk at a time"
    assert blobs.get(sha) == data
    assert blobs.put(b"") == hashlib.sha256(b"").hexdigest() and blobs.get(hashlib.sha256(b"").hexdigest()) == b""


def test_a_blob_put_in_a_batch_is_two_inserts_through_the_sessions_connection_with_nothing_to_flush(engine):
    from sqlalchemy import event

    from mailgate.storage import direct

    blobs, statements = DatabaseBlobStore(engine), []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement.split()[0:3])  # noqa: E731
    with Session(engine) as session, session.begin(), blobs.batch(session):
        session.connection()  # the transaction's BEGIN is not the put's
        event.listen(engine, "before_cursor_execute", listener)
        sha = blobs.put(b"a raw mail of one chunk")
        again = blobs.put(b"a raw mail of one chunk")
        assert not session.new and not session.dirty
        queued = direct.queues_writes(session.connection())
        if queued:  # PostgreSQL: nothing sent yet, and nothing asked: the rows wait for the next round trip
            assert statements == []
    event.remove(engine, "before_cursor_execute", listener)
    assert sha == again
    head, chunk = ["INSERT", "INTO", "blobs"], ["INSERT", "INTO", "blob_chunks"]
    if queued:  # each row "unless there" itself: the second put's two do nothing, in the same round trip
        assert [words[:3] for words in statements] == [head, chunk, head, chunk]
    else:
        assert [words[:3] for words in statements] == [
            head,
            chunk,
            head,  # the second put: the head exists, nothing more is written
        ], "size and chunk count in the head row at once: no UPDATE, no lookup before"
    with engine.connect() as conn:
        assert conn.execute(select(Blob.size, Blob.chunks)).one() == (len(b"a raw mail of one chunk"), 1)


@pytest.mark.parametrize("backend", ["files", "database"])
def test_a_blob_whose_bytes_do_not_hash_to_its_name_is_refused(backend, engine, tmp_path):
    blobs = FileBlobStore(tmp_path / "blobs") if backend == "files" else DatabaseBlobStore(engine)
    named = hashlib.sha256(b"what it should be").hexdigest()
    with pytest.raises(ValueError, match="hashes to"):
        blobs.put_stream(named, iter([b"something ", b"else"]))
    assert not blobs.exists(named)
    assert blobs.put_stream(named, iter([b"what it ", b"should be"])) is True
    assert blobs.put_stream(named, iter([b"what it should be"])) is False, "already there"
    assert list(blobs.shas()) == [named]


def test_missing_blobs_raise_file_not_found_on_both_backends(engine, tmp_path):
    for blobs in (FileBlobStore(tmp_path / "blobs"), DatabaseBlobStore(engine)):
        with pytest.raises(FileNotFoundError):
            blobs.get("0" * 64)


def test_the_backend_defaults_to_database_on_both_engines_and_an_explicit_one_wins(tmp_path):
    from tests.helpers import write_config

    on_pg = load_config(write_config(tmp_path, "postgresql+psycopg://nobody@127.0.0.1/none"))
    assert backend_name(on_pg) == "database"
    (tmp_path / "lite").mkdir()
    assert backend_name(load_config(write_config(tmp_path / "lite", "sqlite:///x.sqlite3"))) == "database"
    (tmp_path / "forced").mkdir()
    forced = write_config(tmp_path / "forced", "postgresql+psycopg://nobody@127.0.0.1/none", blobs={"backend": "files"})
    assert backend_name(load_config(forced)) == "files"
    (tmp_path / "bad").mkdir()
    bad = load_config(write_config(tmp_path / "bad", "sqlite:///x.sqlite3", blobs={"backend": "s3"}))
    with pytest.raises(ConfigError, match=r"blobs\.backend: expected one of files, database"):
        backend_name(bad)


def test_a_data_directory_that_already_keeps_file_blobs_stays_on_files_and_reads_them(make_config, harness_factory):
    """Files were the default on SQLite: an installation that never named a backend must keep its attachments."""
    harness = harness_factory(make_config(blobs={"backend": "files"}))
    harness.deliver(make_mail(attachments=[("r.pdf", "application/pdf", report(1))]))
    harness.runtime.close()

    unnamed = make_config()  # the same data directory, no [blobs] section
    assert backend_name(load_config(unnamed)) == "files"
    assert mailgate(unnamed, "tickets", "attachment", "1", "1").stdout == report(1)


def test_an_empty_blob_folder_is_no_reason_to_keep_files(tmp_path):
    from tests.helpers import write_config

    config = load_config(write_config(tmp_path, "sqlite:///x.sqlite3"))
    FileBlobStore(config.blob_dir)  # makes blobs/tmp, as a files store opened once (a check, a migrate) does
    assert backend_name(config) == "database"


def test_an_automatic_mail_queued_outside_the_workers_batch_commits_its_blob_with_its_row(harness):
    """A command (an answer) or a timer queues mail in a session of its own: its blob must not wait for that writer."""
    harness.deliver(make_mail())
    services = harness.runtime.services
    assert isinstance(services.blobs, DatabaseBlobStore), "the default on both engines"
    for keep in (False, True):
        with harness.session() as s:
            s.begin()
            row = outbox_module.enqueue(
                s,
                services,
                ticket=(ticket := s.scalar(select(Ticket))),
                kind="agent_reply",
                automatic=False,
                recipients=[("Alice", "alice@customer.example")],
                in_reply_to=ticket.messages[0],
                context={"reply": {"text": "Unplug it.", "author_name": "Bob"}},
                incoming=None,
            )
            assert row is not None
            sha = s.scalar(select(Message.raw_sha256).where(Message.id == row.message_pk))
            assert sha and services.blobs.exists(sha) is False, "another connection sees it only once committed"
            s.commit() if keep else s.rollback()
        assert services.blobs.exists(sha) is keep


def report(n: int) -> bytes:
    return (b"%PDF-1.4 report " + str(n).encode() + b"\n") * 500


class Interrupted(KeyboardInterrupt):
    pass


class StopsAfter:
    """A source that is interrupted (Ctrl-C) while copying its n-th blob."""

    def __init__(self, source, n: int) -> None:
        self.source, self.n, self.read = source, n, 0

    def shas(self):
        return self.source.shas()

    def iter_chunks(self, sha: str, chunk_size: int = MIB):
        self.read += 1
        if self.read == self.n:
            yield b"half of it"
            raise Interrupted
        yield from self.source.iter_chunks(sha, chunk_size)


@pytest.mark.parametrize("direction", ["database", "files"])
def test_blobs_migrate_is_interrupted_then_resumed_and_verified(direction, make_config, harness_factory):
    config_path = make_config(blobs={"backend": "files" if direction == "database" else "database"})
    harness = harness_factory(config_path)
    for n in range(6):
        harness.deliver(make_mail(subject=f"Report {n}", attachments=[(f"r{n}.pdf", "application/pdf", report(n))]))
    services, engine = harness.runtime.services, harness.runtime.engine
    config = load_config(config_path)
    target = DatabaseBlobStore(engine) if direction == "database" else FileBlobStore(config.blob_dir)
    total = len(list(services.blobs.shas()))
    assert total == 12  # six raw mails, six attachments

    with pytest.raises(Interrupted):
        copy_blobs(StopsAfter(services.blobs, 5), target)
    assert len(list(target.shas())) == 4, "the blob being copied when it stopped is not there, half or whole"

    resumed = mailgate(config_path, "blobs", "migrate", "--to", direction)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert b"8 blobs copied" in resumed.stderr and b"4 already there" in resumed.stderr
    assert b"12 referenced blobs verified" in resumed.stderr
    assert f'backend = "{direction}"'.encode() in resumed.stdout
    assert sorted(target.shas()) == sorted(services.blobs.shas())

    switched = make_config(blobs={"backend": direction})
    assert mailgate(switched, "tickets", "attachment", "6", "1").stdout == report(5)


def test_blobs_migrate_reports_a_referenced_blob_it_cannot_find(make_config, harness_factory):
    config_path = make_config(blobs={"backend": "files"})
    harness = harness_factory(config_path)
    harness.deliver(make_mail(attachments=[("a.txt", "text/plain", b"an attachment\n")]))
    lost = hashlib.sha256(b"an attachment\n").hexdigest()
    harness.runtime.services.blobs.path(lost).unlink()
    result = mailgate(config_path, "blobs", "migrate", "--to", "database")
    assert result.returncode == 1
    assert f"blob {lost}: missing".encode() in result.stderr


def test_the_signing_key_is_created_once_in_the_database_and_a_legacy_key_file_is_adopted(make_config, engine):
    config = load_config(make_config())
    legacy = config.data_dir / "secret"
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_text("LEGACYKEYOFTHISMACHINE0123456789\n")
    assert signing.load_key(config, engine) == b"LEGACYKEYOFTHISMACHINE0123456789", "old signed addresses stay valid"
    legacy.write_text("ANOTHERKEYWRITTENLATER0123456789\n")
    assert signing.load_key(config, engine) == b"LEGACYKEYOFTHISMACHINE0123456789", "created once: the first wins"


def test_a_25_mb_attachment_moves_and_reads_back_a_chunk_at_a_time(engine, tmp_path):
    """Migrating and streaming a blob never holds it whole: the peak is a small multiple of one chunk."""
    import tracemalloc

    files = FileBlobStore(tmp_path / "blobs")
    big = b"".join(hashlib.sha256(str(i).encode()).digest() * 1024 for i in range(800))  # 25 MiB, not repetitive
    sha = files.put(big)
    database = DatabaseBlobStore(engine)
    del big
    tracemalloc.start()
    try:
        report = copy_blobs(files, database)
        digest = hashlib.sha256()
        for chunk in database.iter_chunks(sha):
            digest.update(chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.copied == 1 and digest.hexdigest() == sha
    assert rows(engine, BlobChunk) == 25
    assert peak < 6 * MIB, f"peak {peak / MIB:.1f} MiB for a 25 MiB blob"


def test_two_daemons_storing_the_same_attachment_at_once_store_it_once(engine):
    """The second transaction waits for the first, then stores nothing; no duplicate chunk, no error."""
    import threading

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite takes one writer at a time: nothing runs at once")
    data = b"the same invoice, sent to both machines\n" * 50_000
    first, second = DatabaseBlobStore(engine, chunk_size=MIB), DatabaseBlobStore(engine, chunk_size=MIB)
    errors: list[BaseException] = []

    def other_daemon() -> None:
        try:
            with Session(engine) as session, session.begin(), second.batch(session):
                second.put(data)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with Session(engine) as session:
        session.begin()
        with first.batch(session):
            first.put(data)
            thread = threading.Thread(target=other_daemon)
            thread.start()
            thread.join(timeout=1)
            assert thread.is_alive(), "the second insert waits for the first transaction"
        session.commit()
    thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    assert rows(engine, Blob) == 1 and rows(engine, BlobChunk) == 2
    assert first.get(hashlib.sha256(data).hexdigest()) == data


def test_a_daemon_without_the_key_file_of_a_file_keyed_installation_refuses_and_records_nothing(
    tmp_path, engine, db_url
):
    from mailgate.storage.models import Installation
    from tests.helpers import write_config

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "site.key").write_text("SITEKEYKEPTINAFILE0123456789ABCD\n")
    with_file = load_config(write_config(tmp_path / "a", db_url, mailgate={"secret_file": "../site.key"}))
    assert signing.load_key(with_file, engine) == b"SITEKEYKEPTINAFILE0123456789ABCD"
    without = load_config(write_config(tmp_path / "b", db_url))
    with pytest.raises(ConfigError, match="signs with a key file"):
        signing.load_key(without, engine)
    with engine.connect() as conn:
        names = set(conn.execute(select(Installation.name)).scalars())
    assert names == {"signing_key_fingerprint"}, "the key file's secret never reaches the database"
    assert signing.load_key(with_file, engine) == b"SITEKEYKEPTINAFILE0123456789ABCD"


def test_a_small_blob_stored_again_by_a_later_batch_keeps_one_head_and_one_chunk(engine):
    """On PostgreSQL its rows are written unless there, without asking first: the second batch adds nothing."""
    blobs = DatabaseBlobStore(engine)
    for _ in range(2):
        with Session(engine) as session, session.begin(), blobs.batch(session):
            sha = blobs.put(b"the same small mail")
    assert rows(engine, Blob) == 1 and rows(engine, BlobChunk) == 1
    assert blobs.get(sha) == b"the same small mail"
