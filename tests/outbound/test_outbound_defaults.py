"""STARTTLS to the smarthost is on unless the admin turns it off, and the docs say the same as the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from mailgate.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _minimal_config(tmp_path: Path, outbound: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        '[mailgate]\nhostname = "support.example.com"\n[support]\naddress = "support@example.com"\n' + outbound
    )
    return path


def test_starttls_is_on_when_the_config_does_not_mention_it(tmp_path: Path) -> None:
    config = load_config(_minimal_config(tmp_path, '[outbound]\nsmarthost = "mail.example.com:587"\n'))
    assert config.outbound.starttls is True


def test_an_admin_turns_starttls_off_explicitly_for_a_loopback_smarthost(tmp_path: Path) -> None:
    config = load_config(_minimal_config(tmp_path, '[outbound]\nsmarthost = "127.0.0.1:25"\nstarttls = false\n'))
    assert config.outbound.starttls is False


def test_config_example_shows_the_code_default(tmp_path: Path) -> None:
    line = next(s for s in (ROOT / "config.example.toml").read_text().splitlines() if s.startswith("# starttls ="))
    shown = tomllib.loads(line.removeprefix("# "))["starttls"]
    default = load_config(_minimal_config(tmp_path, "")).outbound.starttls
    assert shown is default


def test_docs_outbound_configuration_shows_the_code_default(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "outbound.md").read_text()
    section = docs[docs.index("## Configuration") :]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    shown = tomllib.loads(block.group(1))["outbound"]["starttls"]
    assert shown is load_config(_minimal_config(tmp_path, "")).outbound.starttls
    assert "on by default" in docs
