"""Against a real `mailgate serve` over real SMTP: an HTML bomb is stored, and the mail behind it is too."""

from __future__ import annotations

import json

from tests.helpers import mailgate, make_mail, wait_for

BOMBS = {
    "divs": "<div>" * 60_000 + "deep" + "</div>" * 60_000,
    "tags": "<i>x</i>" * 120_000,
    "attributes": "<p " + " ".join(f"a{i}=v" for i in range(10_000)) + ">x</p>",
    "bold": "<b>" * 10_000 + "bold",
}


def tickets(config):
    result = mailgate(config, "tickets", "list", "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    return {t["subject"]: t["messages"] for t in json.loads(result.stdout)}


def test_the_60000_div_bomb_and_the_mail_after_it_are_both_stored(daemon, config_file):
    assert daemon.send(make_mail(subject="bomb divs", html=BOMBS["divs"])) == {}
    assert daemon.send(make_mail(subject="the mail after the bomb")) == {}
    wait_for(
        lambda: tickets(config_file) == {"bomb divs": 1, "the mail after the bomb": 1},
        timeout=120,
        message="the bomb and the next mail stored",
    )
    assert daemon.alive


def test_each_bomb_is_stored_and_the_mail_after_them_too(daemon, config_file):
    for name, html in BOMBS.items():
        assert daemon.send(make_mail(subject=f"bomb {name}", html=html)) == {}
    assert daemon.send(make_mail(subject="the mail after the bombs")) == {}
    expected = {f"bomb {name}": 1 for name in BOMBS} | {"the mail after the bombs": 1}
    wait_for(lambda: tickets(config_file) == expected, timeout=180, message="every bomb and the next mail stored")
    show = json.loads(mailgate(config_file, "tickets", "show", "1", "--format", "json").stdout)
    assert show["subject"] == "bomb divs"
    assert "Hello" in show["messages"][0]["text"]
