"""Proof of an agent: signed reply addresses and Authentication-Results (pure functions)."""

from __future__ import annotations

import pytest

from mailgate.config import parse_config
from mailgate.domain import agent_auth
from mailgate.domain.agent_auth import AuthSettings, parse_reply_address, proof_from_headers, reply_address, signed_for
from mailgate.errors import ConfigError
from mailgate.mail.headers import header_block_end
from tests.helpers import make_mail

KEY = b"0123456789abcdef0123456789abcdef"
TRUSTED = AuthSettings(trusted_authserv_ids=frozenset({"mx.example.com"}))


class TestSignedReplyAddresses:
    def test_the_address_carries_the_ticket_and_a_mac_for_one_person_in_one_role(self):
        address = reply_address(KEY, "support@example.com", 12, "agent", "Bob@Example.com")
        local, _, domain = address.partition("@")
        assert domain == "example.com" and local.startswith("support+12.")
        signed = parse_reply_address(address)
        assert signed.number == 12
        assert signed_for(KEY, signed, "agent", "bob@example.com")
        assert not signed_for(KEY, signed, "agent", "carol@example.com")
        assert not signed_for(KEY, signed, "customer", "bob@example.com")
        assert not signed_for(b"another key of 32 bytes.........", signed, "agent", "bob@example.com")

    def test_another_ticket_number_with_the_same_mac_is_refused(self):
        address = reply_address(KEY, "support@example.com", 12, "customer", "alice@customer.example")
        forged = parse_reply_address(address.replace("+12.", "+13."))
        assert not signed_for(KEY, forged, "customer", "alice@customer.example")

    def test_a_plus_extension_already_in_the_support_address_is_replaced(self):
        assert reply_address(KEY, "help+x@example.com", 1, "agent", "b@example.com").startswith("help+1.")

    @pytest.mark.parametrize(
        "address",
        [
            "support@example.com",
            "support+12@example.com",
            "support+12.short@example.com",
            "support+x.abcdefghij@example.com",
        ],
    )
    def test_other_addresses_are_not_signed_addresses(self, address):
        assert parse_reply_address(address) is None


class TestAuthenticationResults:
    def test_rfc_8601_syntax_with_comments_versions_and_quotes(self):
        parsed = agent_auth.parse_authentication_results(
            'MX.example.com 1; dkim=pass (2048-bit key; secure) header.d=Example.com header.s="sel";'
            " spf=pass (sender (nested) ok) smtp.mailfrom=bob@example.com; dmarc=fail header.from=example.com"
        )
        assert parsed.authserv_id == "mx.example.com"
        assert [(r.method, r.result) for r in parsed.results] == [("dkim", "pass"), ("spf", "pass"), ("dmarc", "fail")]
        assert parsed.results[0].props == {"header.d": "example.com", "header.s": "sel"}

    @pytest.mark.parametrize(
        ("header", "proof"),
        [
            ("mx.example.com; dkim=pass header.d=example.com", "dkim"),
            ("mx.example.com; dkim=pass header.i=@mail.example.com", "dkim"),
            ("mx.example.com; dkim=pass header.d=corp.example.com", "dkim"),
            ("mx.example.com; spf=pass smtp.mailfrom=bounce@example.com", "spf"),
            ("mx.example.com; spf=pass smtp.mailfrom=example.com", "spf"),
            ("mx.example.com; dkim=fail header.d=example.com", ""),
            ("mx.example.com; dkim=pass header.d=evil.example", ""),
            ("mx.example.com; dkim=pass header.d=com", ""),
            ("mx.example.com; spf=softfail smtp.mailfrom=example.com", ""),
            ("attacker.example; dkim=pass header.d=example.com", ""),
            ("mx.example.com; none", ""),
        ],
    )
    def test_a_pass_aligned_with_the_from_domain_from_a_trusted_server_proves_it(self, header, proof):
        assert proof_from_headers([header], "bob@example.com", TRUSTED) == proof

    def test_spf_can_be_turned_off(self):
        dkim_only = AuthSettings(trusted_authserv_ids=frozenset({"mx.example.com"}), methods=("dkim",))
        assert (
            proof_from_headers(["mx.example.com; spf=pass smtp.mailfrom=example.com"], "b@example.com", dkim_only) == ""
        )

    def test_nothing_is_trusted_by_default(self):
        assert (
            proof_from_headers(["mx.example.com; dkim=pass header.d=example.com"], "bob@example.com", AuthSettings())
            == ""
        )

    def test_only_headers_above_the_first_received_header_are_read(self):
        raw = (
            b"Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=example.com\r\n"
            b"Received: from outside by mx.example.com\r\n"
            b"Authentication-Results: mx.example.com; dkim=pass header.d=example.com\r\n" + make_mail()
        )
        assert agent_auth.top_authentication_results(raw) == ["mx.example.com; spf=pass smtp.mailfrom=example.com"]
        forged = b"Received: from outside\r\nAuthentication-Results: mx.example.com; dkim=pass\r\n" + make_mail()
        assert agent_auth.top_authentication_results(forged) == []

    def test_settings(self, tmp_path):
        config = parse_config({"agent_auth": {"trusted_authserv_ids": ["MX.example.com"]}}, tmp_path / "c.toml")
        assert agent_auth.parse_settings(config).trusted_authserv_ids == {"mx.example.com"}
        with pytest.raises(ConfigError, match="methods"):
            agent_auth.parse_settings(parse_config({"agent_auth": {"methods": ["arc"]}}, tmp_path / "c.toml"))


AUTH = b"Authentication-Results: mx.example.com; dkim=pass header.d=example.com\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        AUTH + b"Received: from a\r\nFrom: a@example.com\r\n\r\nbody\r\n",
        AUTH + b"From: a@example.com\r\n\r\n" + AUTH,  # one in the body is no header
        AUTH.replace(b"\r\n", b"\n") + b"From: a@example.com\n\nbody\n" + AUTH,
        AUTH.replace(b"\r\n", b"\r") + b"From: a@example.com\r\rbody\r" + AUTH,
        AUTH + b"From: a@example.com\r\n\nbody\r\n" + AUTH,  # a mixed blank line
        AUTH + b"Authentication-Results: second; spf=pass\r\n folded=yes\r\n",  # no body at all
        AUTH + b"not a header line\r\n" + AUTH,
    ],
)
def test_the_top_results_are_read_from_the_header_block_as_a_whole_parse_reads_them(raw):
    from email import message_from_bytes, policy

    whole = []
    for name, value in message_from_bytes(raw, policy=policy.compat32).items():
        if name.lower() == "received":
            break
        if name.lower() == "authentication-results":
            whole.append(agent_auth.clean_header(str(value)))
    assert agent_auth.top_authentication_results(raw) == whole
    assert header_block_end(raw) <= len(raw)


def test_a_long_body_is_not_read_for_the_top_results():
    raw = AUTH + b"From: a@example.com\r\n\r\n" + b"line\r\n" * 100_000
    assert header_block_end(raw) == raw.index(b"\r\n\r\n") + 4  # just past the blank line
