"""Config: checked once at load, units resolved, errors that name file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.config import auto_workers, load_config, usable_cores
from mailgate.errors import ConfigError
from mailgate.units import parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_config_loads_as_is():
    config = load_config(ROOT / "config.example.toml")
    assert config.smtp.port == 2525 and config.smtp.host == "127.0.0.1"
    assert config.smtp.max_message_size == 25_000_000
    assert config.data_dir == ROOT / "storage"
    assert config.db_url.startswith("sqlite:///") and config.db_url.endswith("storage/mailgate.sqlite3")
    assert config.support.address == "support@example.com"
    assert config.outbound.smarthost == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [("25MB", 25_000_000), ("512KiB", 524_288), ("1000", 1000), ("1.5 GB", 1_500_000_000), (42, 42)],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d12h", 129600), ("500ms", 0.5), (90, 90)]
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "12 parsecs", "m5", "-3s"])
def test_bad_durations_raise(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ('[smtp]\nlisten = "nowhere"', "smtp.listen", "host:port"),
        ('[smtp]\nmax_message_size = "big"', "smtp.max_message_size", "size"),
        ('[support]\naddress = "not-an-address"', "support.address", "mail address"),
        ('[support]\naccept = ["nodomain"]', "support.accept", "@domain"),
        ("[spool]\nmax_attempts = 0", "spool.max_attempts", ">= 1"),
        ("[spool]\nworkers = -1", "spool.workers", '"auto" or an integer >= 0'),
        ('[spool]\nworkers = "many"', "spool.workers", '"auto" or an integer >= 0'),
        ('[mailgate]\nlog_level = "loud"', "mailgate.log_level", "one of"),
        ('[mailgate]\nhostnme = "x"', "mailgate.hostnme", "unknown key"),
        ('[outbound]\nsmarthost = "mail.example.com"', "outbound.smarthost", "host:port"),
        ('[[agents]]\nname = "Bob"', "agents[0].address", "required"),
        ("[smtp\nlisten = 1", "", "not valid TOML"),
    ],
)
def test_errors_name_the_file_the_key_and_what_was_expected(tmp_path, toml, key, expected):
    path = tmp_path / "config.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert key in message and expected in message


def test_paths_are_relative_to_the_config_file(tmp_path):
    path = tmp_path / "etc" / "config.toml"
    path.parent.mkdir()
    path.write_text('[mailgate]\ndata_dir = "../var"\n')
    assert load_config(path).data_dir == tmp_path / "etc" / ".." / "var"


def test_accept_takes_addresses_domains_and_plus_extensions(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[support]\naddress = "support@example.com"\naccept = ["support@example.com", "@help.example"]\n')
    support = load_config(path).support
    assert support.accepts("support@example.com") and support.accepts("<SUPPORT@Example.COM>")
    assert support.accepts("support+12.abc@example.com")
    assert support.accepts("anyone@help.example")
    assert not support.accepts("sales@example.com") and not support.accepts("support@example.com.evil")


def test_init_copies_the_example_config_and_refuses_to_overwrite(tmp_path):
    from tests.helpers import mailgate

    target = tmp_path / "etc" / "config.toml"
    first = mailgate(target, "init")
    assert first.returncode == 0, first.stderr
    assert target.read_text() == (ROOT / "config.example.toml").read_text()
    assert mailgate(target, "init").returncode == 1
    assert mailgate(target, "init", "--force").returncode == 0


def test_the_pipeline_runs_beside_the_door_in_one_process_per_core_but_the_doors_by_default(tmp_path):
    path = tmp_path / "config.toml"
    cores = usable_cores()
    for text, workers in (("", max(1, cores - 1)), ('[spool]\nworkers = "auto"', max(1, cores - 1))):
        path.write_text(text + "\n")
        assert load_config(path).spool.workers == workers
        assert load_config(path).spool.workers_auto
    for count in (0, 1, 3):
        path.write_text(f"[spool]\nworkers = {count}\n")
        assert load_config(path).spool.workers == count  # 0: the pipeline in the daemon's own process
        assert not load_config(path).spool.workers_auto


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (4, 3), (16, 15)])
def test_auto_leaves_the_door_a_core_and_keeps_at_least_one_worker(cores, workers):
    assert auto_workers(cores) == workers
