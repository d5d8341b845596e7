"""The [[imap]] accounts in config.toml, and the small pure parts of the IMAP door (no server needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailgate.config import load_config
from mailgate.doors.imap import IDLE_RENEW_MAX, idle_renew, next_backoff, plan_batches
from mailgate.doors.imap_config import ImapAccount, parse_accounts
from mailgate.doors.imap_wire import decode_folder, encode_folder, parse_fetch, parse_list, uid_set
from mailgate.errors import ConfigError
from tests.helpers import mailgate

MINIMAL = {"host": "imap.example.com", "username": "support@example.com", "password": "secret"}


def accounts(make_config: Callable[..., Path], *tables: dict[str, Any]) -> tuple[ImapAccount, ...]:
    return parse_accounts(load_config(make_config(imap=list(tables))))


def error(make_config: Callable[..., Path], *tables: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        accounts(make_config, *tables)
    return str(info.value)


def test_defaults_are_implicit_tls_on_993_moving_inbox_mail_to_processed(make_config: Callable[..., Path]) -> None:
    [account] = accounts(make_config, MINIMAL)
    assert account == ImapAccount(
        name="support@example.com@imap.example.com",
        host="imap.example.com",
        port=993,
        tls="tls",
        username="support@example.com",
        password="secret",
        folder="INBOX",
        after_store="move",
        move_to="Processed",
        poll_interval=60.0,
    )
    assert "secret" not in repr(account)


def test_starttls_and_none_default_to_port_143(make_config: Callable[..., Path]) -> None:
    starttls, none = accounts(
        make_config,
        {**MINIMAL, "name": "a", "tls": "starttls"},
        {**MINIMAL, "name": "b", "host": "127.0.0.1", "tls": "none"},
    )
    assert (starttls.port, none.port) == (143, 143)


def test_every_key_is_read(make_config: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "imap.secret").write_text("s3cret\n")
    [account] = accounts(
        make_config,
        {
            "name": "sales",
            "host": "mail.example.net",
            "port": 1993,
            "tls": "tls",
            "username": "sales",
            "password_file": "imap.secret",
            "folder": "Anfragen",
            "after_store": "flag",
            "poll_interval": "5m",
        },
    )
    assert (
        account.name,
        account.port,
        account.password,
        account.folder,
        account.after_store,
        account.poll_interval,
    ) == ("sales", 1993, "s3cret", "Anfragen", "flag", 300.0)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({**MINIMAL, "tls": "none"}, 'imap[0].tls: "none" sends the password in clear'),
        ({**MINIMAL, "tls": "ssl"}, "imap[0].tls: expected one of tls, starttls, none, got 'ssl'"),
        ({**MINIMAL, "password_file": "x"}, "imap[0].password: give either password or password_file"),
        ({"host": "imap.example.com", "username": "u"}, "imap[0].password: give either password or password_file"),
        ({**MINIMAL, "password": ""}, "imap[0].password: the password is empty"),
        ({**MINIMAL, "after_store": "archive"}, "imap[0].after_store: expected one of move, flag, delete"),
        (
            {**MINIMAL, "after_store": "flag", "move_to": "Done"},
            'imap[0].move_to: is only used with after_store = "move"',
        ),
        ({**MINIMAL, "move_to": "INBOX"}, "imap[0].move_to: must differ from folder"),
        ({**MINIMAL, "poll_interval": "0s"}, "imap[0].poll_interval: expected at least 1s"),
        ({**MINIMAL, "poll_interval": "often"}, "imap[0].poll_interval: expected a duration"),
        ({**MINIMAL, "port": 70000}, "imap[0].port: expected a port number up to 65535"),
        ({**MINIMAL, "pasword": "typo"}, "imap[0].pasword: unknown key"),
        ({"username": "u", "password": "p"}, "imap[0].host: is required"),
    ],
)
def test_mistakes_name_the_file_and_the_key(
    make_config: Callable[..., Path], table: dict[str, Any], expected: str
) -> None:
    message = error(make_config, table)
    assert "config.toml: " in message and expected in message


def test_a_missing_password_file_is_named(make_config: Callable[..., Path]) -> None:
    message = error(
        make_config, {**{k: v for k, v in MINIMAL.items() if k != "password"}, "password_file": "nowhere/secret"}
    )
    assert "imap[0].password_file: cannot read" in message and "nowhere/secret" in message


def test_two_accounts_may_not_share_a_name_or_a_folder(make_config: Callable[..., Path]) -> None:
    assert "two [[imap]] accounts are called 'x'" in error(
        make_config, {**MINIMAL, "name": "x"}, {**MINIMAL, "name": "x", "username": "other"}
    )
    assert "imap[1].folder: another [[imap]] account already reads 'INBOX'" in error(
        make_config, {**MINIMAL, "name": "x"}, {**MINIMAL, "name": "y"}
    )
    assert len(accounts(make_config, {**MINIMAL, "name": "x"}, {**MINIMAL, "name": "y", "folder": "Sales"})) == 2


def test_imap_must_be_an_array_of_tables(make_config: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match=r"imap: expected an array of tables"):
        parse_accounts(load_config(make_config(imap=MINIMAL)))


def test_a_bad_account_stops_serve_with_a_config_error(make_config: Callable[..., Path]) -> None:
    result = mailgate(make_config(imap=[{**MINIMAL, "tls": "none"}]), "serve", timeout=60)
    assert result.returncode == 78
    assert "imap[0].tls" in result.stderr.decode()


def test_no_imap_section_means_no_accounts(make_config: Callable[..., Path]) -> None:
    assert parse_accounts(load_config(make_config())) == ()


# -- the wire format ---------------------------------------------------------------------------
def test_folder_names_use_modified_utf7_as_in_rfc_3501() -> None:
    assert encode_folder("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert encode_folder("Tom & Jerry") == "Tom &- Jerry"
    assert encode_folder("Erledigt Übergeben") == "Erledigt &ANw-bergeben"
    for name in ("~peter/mail/台北/日本語", "Tom & Jerry", "Входящие", "INBOX", "a&b&"):
        assert decode_folder(encode_folder(name)) == name
    assert decode_folder("&broken") == "&broken"


def test_uid_sets_cover_only_the_uids_given() -> None:
    assert uid_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"
    assert uid_set([3, 1, 2, 2]) == "1:3"


def test_fetch_answers_give_uid_and_bytes_wherever_the_server_puts_the_uid() -> None:
    lines = [
        b"1 FETCH (UID 7 BODY[] {5}",
        bytearray(b"a: b\n"),
        b")",
        b"2 FETCH (BODY[] {5}",
        bytearray(b"c: d\n"),
        b" UID 9)",
        b"3 FETCH (UID 10 FLAGS (\\Seen))",
        b"Fetch completed.",
    ]
    assert parse_fetch(lines) == [(7, b"a: b\n"), (9, b"c: d\n")]


def test_list_answers_give_decoded_names_and_flags() -> None:
    lines = [
        b'(\\HasNoChildren) "." INBOX',
        b'(\\Noselect \\HasChildren) "/" "Sent Items"',
        b'(\\HasNoChildren) NIL "&ANw-bersicht"',
        b"List completed.",
    ]
    assert parse_list(lines) == [
        ("INBOX", {"\\HasNoChildren"}),
        ("Sent Items", {"\\Noselect", "\\HasChildren"}),
        ("Übersicht", {"\\HasNoChildren"}),
    ]


# -- batches and timing --------------------------------------------------------------------------
def test_batches_are_bounded_by_count_and_by_bytes() -> None:
    sizes = [(uid, 1000) for uid in range(1, 121)]
    assert [len(b) for b in plan_batches(sizes, max_count=50, max_bytes=10**9)] == [50, 50, 20]
    assert [len(b) for b in plan_batches(sizes, max_count=50, max_bytes=10_000)] == [10] * 12
    huge = [(1, 10), (2, 5_000_000), (3, 10)]
    assert list(plan_batches(huge, max_count=50, max_bytes=1_000_000)) == [[1], [2], [3]]
    assert list(plan_batches([])) == []


def test_idle_is_renewed_before_29_minutes_whatever_the_poll_interval() -> None:
    assert idle_renew(60) == 60
    assert idle_renew(3600) == IDLE_RENEW_MAX < 29 * 60


def test_reconnect_backoff_doubles_up_to_two_minutes() -> None:
    delays = [next_backoff(0.0)]
    for _ in range(10):
        delays.append(next_backoff(delays[-1]))
    assert delays[:5] == [1, 2, 4, 8, 16] and delays[-1] == 120
