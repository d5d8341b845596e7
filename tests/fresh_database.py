"""A PostgreSQL database of its own for a test (created, then dropped), beside the suite's ``test`` database.

Several daemons on one database need one database, not one schema of the suite's: the copy and the
scale-out tests create ``mg_scale_<random>`` on the server at 127.0.0.1:5432 and drop it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

SERVER = os.environ.get("MAILGATE_TEST_POSTGRES_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database; skipped when no server answers."""
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    name = f"mg_scale_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server here: these tests need a real one
        admin.dispose()
        pytest.skip(f"no PostgreSQL server at {SERVER}: {exc}")
    yield SERVER.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
