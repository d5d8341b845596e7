"""The outbound settings: checked at start, errors naming file and key; the example block is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.app import build
from mailgate.config import load_config
from mailgate.errors import ConfigError
from mailgate.outbound import plugin as outbound
from mailgate.outbound import templating
from mailgate.outbound.settings import parse
from tests.helpers import mailgate

ROOT = Path(__file__).resolve().parents[2]


def example_block() -> dict[str, dict[str, str]]:
    """The commented outbound block at the end of config.example.toml, uncommented, table by table."""
    text = (ROOT / "config.example.toml").read_text()
    block = text[text.index("# Outgoing mail (see docs/outbound.md)") :]
    tables: dict[str, dict[str, str]] = {"outbound": {}}
    current = "outbound"
    for line in block.splitlines()[2:]:
        line = line.removeprefix("#").strip()
        if line.startswith("["):
            current = line.strip("[]")
            tables[current] = {}
        elif "=" in line:
            key, _, value = line.partition("=")
            tables[current][key.strip()] = value.split("  #", 1)[0].strip()
    return tables


def test_every_key_of_the_example_block_is_read_and_valid(tmp_path):
    lines = []
    for table, values in example_block().items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {v}" for k, v in values.items() if k != "password_file"]
    (tmp_path / "templates").mkdir()
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    settings = parse(load_config(path), templating.SHIPPED_DIR)
    assert settings.outbound.admin_address == "postmaster@example.com"
    assert (settings.outbound.retry_base, settings.outbound.retry_max, settings.outbound.max_age) == (
        60,
        3600,
        3 * 86400,
    )
    assert (settings.loop.per_sender_per_hour, settings.loop.per_ticket_limit, settings.loop.system_limit) == (
        3,
        30,
        500,
    )
    assert settings.loop.system_window == 600 and settings.bounces.suppress_days == 30
    assert settings.template_dirs == ((tmp_path / "templates").resolve(), templating.SHIPPED_DIR.resolve())


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ('[loop]\nmax_autoreplies_per_sender_per_hour = "many"', "loop.max_autoreplies_per_sender_per_hour", "integer"),
        ('[loop]\nsystem_window = "soon"', "loop.system_window", "duration"),
        ("[loop]\nper_sender = 3", "loop.per_sender", "unknown key"),
        ("[bounces]\nsuppress_days = -1", "bounces.suppress_days", ">= 0"),
        ('[outbound]\nadmin_address = "nobody"', "outbound.admin_address", "mail address"),
        ('[outbound]\nretry_base = "0s"', "outbound.retry_base", "> 0"),
        ('[templates]\ndir = "missing"', "templates.dir", "no such directory"),
    ],
)
def test_a_bad_value_stops_the_start_naming_file_and_key(tmp_path, db_url, toml, key, expected):
    path = tmp_path / "config.toml"
    path.write_text(f'[mailgate]\ndatabase_url = "{db_url}"\n{toml}\n')
    with pytest.raises(ConfigError) as info:
        build(load_config(path))
    assert str(info.value).startswith(str(path)) and key in str(info.value) and expected in str(info.value)


def test_a_bad_value_stops_serve_with_exit_78(make_config):
    result = mailgate(make_config(loop={"system_limit": "lots"}), "serve", timeout=60)
    assert result.returncode == 78 and b"loop.system_limit" in result.stderr


def test_sighup_reload_keeps_the_old_templates_when_the_new_ones_are_broken(harness, tmp_path):
    runtime = harness.runtime
    override = tmp_path / "templates" / "en"
    override.mkdir(parents=True)
    (override / "resolved.j2").write_text("{% block text %}{{ ticket.number }} is done{% endblock %}")
    outbound.reload(runtime)
    state = runtime.services.outbound
    assert state.templates.render("resolved", "en", templating.sample_context()).text == "42 is done\n"
    (override / "resolved.j2").write_text("{% block text %}{{ ticket.numbr }}{% endblock %}")
    with pytest.raises(ConfigError, match=r"resolved\.j2:1"):
        outbound.reload(runtime)
    assert state.templates.render("resolved", "en", templating.sample_context()).text == "42 is done\n"


def test_the_migration_adds_the_columns_and_indexes_the_loop_counts_use(db_url):
    from sqlalchemy import inspect

    from mailgate.storage import db

    engine = db.make_engine(db_url)
    db.upgrade(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("outbox")}
    indexes = {i["name"] for i in inspect(engine).get_indexes("outbox")}
    engine.dispose()
    assert {"automatic", "recipient"} <= columns
    assert {"ix_outbox_recipient", "ix_outbox_created_at"} <= indexes
