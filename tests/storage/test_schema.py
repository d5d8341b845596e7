"""Schema: a fresh database is created and stamped; every migration walks down and up."""

from __future__ import annotations

from sqlalchemy import inspect

from mailgate.storage import db
from tests.helpers import mailgate


def test_every_migration_walks_down_and_up(db_url):
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    assert db.current_heads(engine) == db.script_heads(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"tickets", "messages", "attachments", "events", "outbox", "message_refs"} <= tables
    db.downgrade(engine, "base")
    assert db.current_heads(engine) == set()
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    db.upgrade(engine)
    assert db.current_heads(engine) == db.script_heads(engine)
    engine.dispose()


def test_db_commands(config_file):
    assert mailgate(config_file, "db", "upgrade").returncode == 0
    current = mailgate(config_file, "db", "current")
    assert current.returncode == 0 and b"current:" in current.stdout
    assert mailgate(config_file, "db", "downgrade", "base").returncode == 0
    assert mailgate(config_file, "db", "current").returncode == 1


def test_the_migrations_have_one_head(db_url):
    """Two heads would make every new revision ambiguous and `db upgrade` apply branches in no set order."""
    assert len(db.script_heads(db.make_engine(db_url))) == 1
