"""A command that only reads never creates the SQLite database: it says where the database is expected.

Run as root before the daemon's first start, a created file would belong to root and the
service user could then not write it ("attempt to write a readonly database").
"""

from __future__ import annotations

import pytest

from mailgate.config import load_config
from tests.helpers import mailgate, write_config


@pytest.fixture
def sqlite_config(tmp_path):
    return write_config(tmp_path, "")  # no database_url: the SQLite file in data_dir


@pytest.mark.parametrize("command", [("tickets", "list"), ("outbox", "list"), ("search", "printer")])
def test_a_read_only_command_on_a_fresh_install_says_there_is_no_database_and_creates_none(sqlite_config, command):
    done = mailgate(sqlite_config, *command)
    path = load_config(sqlite_config).data_dir / "mailgate.sqlite3"
    assert done.returncode == 78, done.stderr
    assert f"no database yet at {path}" in done.stderr.decode()
    assert "mailgate serve" in done.stderr.decode()
    assert not path.exists()


def test_after_db_upgrade_the_same_command_answers(sqlite_config):
    assert mailgate(sqlite_config, "db", "upgrade").returncode == 0
    done = mailgate(sqlite_config, "tickets", "list")
    assert done.returncode == 0, done.stderr
    assert b"(none)" in done.stdout
