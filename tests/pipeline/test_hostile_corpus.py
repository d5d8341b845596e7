"""The hostile mail corpus (tests/hostile.py) is what it claims to be.

These tests check the corpus as *input*: enough distinct kinds of damage, each
one present, and every mail readable by the standard library's parser. What
mailgate does with them is tested where mailgate is.
"""

from __future__ import annotations

import email
import email.policy

import pytest

from tests.hostile import BIG_ATTACHMENT_BYTES, BUILDERS, hostile_messages

# The kinds of damage the pipeline must survive, each a separate mail.
REQUIRED = {
    "mime_missing_closing_boundary",
    "mime_boundary_never_used",
    "mime_boundary_in_header_only",
    "base64_invalid_characters",
    "base64_wrong_padding",
    "base64_truncated",
    "quoted_printable_garbage",
    "charset_unknown",
    "charset_lie_utf8_is_latin1",
    "charset_lie_ascii_has_8bit",
    "charset_utf16_without_bom",
    "rfc2047_unterminated",
    "rfc2047_bad_base64",
    "rfc2047_unknown_charset",
    "nul_in_headers",
    "nul_in_body",
    "empty_body",
    "no_headers_at_all",
    "headers_only_no_blank_line",
    "ten_thousand_headers",
    "header_line_100kb",
    "nested_multipart_200_deep",
    "flat_multipart_2000_parts",
    "filename_unix_traversal",
    "filename_windows_traversal",
    "filename_absolute_path",
    "filename_control_characters",
    "filename_5000_chars",
    "rfc2231_unknown_charset",
    "content_type_lies_png_is_executable",
    "attachment_20mb",
    "rfc822_attachment_50_deep",
    "html_active_content",
    "subject_folded_header_injection",
    "duplicate_from",
    "duplicate_to",
    "duplicate_message_id",
    "from_1000_addresses",
    "address_without_at",
    "date_invalid",
    "date_year_9999",
    "mixed_line_endings",
    "body_lines_over_10000_chars",
    "header_name_8bit",
    "header_without_colon",
    "message_id_empty",
    "message_id_2000_chars",
}


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    messages = hostile_messages()
    as_dict = dict(messages)
    assert len(as_dict) == len(messages), "names must be unique"
    return as_dict


def _parse(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def test_at_least_45_distinct_kinds_of_damage(corpus: dict[str, bytes]) -> None:
    assert len(corpus) >= 45
    assert all(isinstance(raw, bytes) for raw in corpus.values())
    assert len(set(corpus.values())) == len(corpus), "two entries are the same mail"


def test_every_required_kind_is_present(corpus: dict[str, bytes]) -> None:
    assert set(corpus) >= REQUIRED


def test_every_kind_documents_its_damage() -> None:
    for name, build in BUILDERS.items():
        assert build.__doc__ and build.__doc__.strip(), name


def test_one_kind_can_be_built_alone(corpus: dict[str, bytes]) -> None:
    assert BUILDERS["nul_in_body"]() == corpus["nul_in_body"]


def test_the_big_attachment_is_at_least_20_mb(corpus: dict[str, bytes]) -> None:
    raw = corpus["attachment_20mb"]
    assert len(raw) >= 20_000_000
    (attachment,) = [p for p in _parse(raw).walk() if p.get_filename() == "big.bin"]
    assert len(attachment.get_payload(decode=True)) >= BIG_ATTACHMENT_BYTES


@pytest.mark.parametrize("name", list(BUILDERS))
def test_the_stdlib_parser_reads_it_without_crashing(corpus: dict[str, bytes], name: str) -> None:
    msg = _parse(corpus[name])
    for part in msg.walk():
        for _, value in part.items():
            str(value)
        part.get_filename()
        part.get_content_charset()
        if not part.is_multipart():
            part.get_payload(decode=True)


# --- the damage is really there ------------------------------------------------------


def test_sizes_and_counts_are_what_the_names_say(corpus: dict[str, bytes]) -> None:
    assert len(_parse(corpus["ten_thousand_headers"]).items()) >= 10_000
    assert max(len(line) for line in corpus["header_line_100kb"].split(b"\r\n")) >= 100_000
    assert max(len(line) for line in corpus["body_lines_over_10000_chars"].split(b"\r\n")) > 10_000
    flat = _parse(corpus["flat_multipart_2000_parts"])
    assert len(flat.get_payload()) == 2000
    assert len(_parse(corpus["message_id_2000_chars"])["Message-ID"]) == 2000
    assert _parse(corpus["message_id_empty"])["Message-ID"] == "<>"
    assert corpus["from_1000_addresses"].count(b"@example.net>") == 1000
    assert len(_parse(corpus["filename_5000_chars"]).get_payload()[1].get_filename()) == 5000


def test_nesting_is_as_deep_as_the_names_say(corpus: dict[str, bytes]) -> None:
    def depth(msg: email.message.Message, ctype: str) -> int:
        inner = [depth(p, ctype) for p in msg.get_payload() if isinstance(p, email.message.Message)]
        return (msg.get_content_type() == ctype) + max(inner, default=0)

    assert depth(_parse(corpus["nested_multipart_200_deep"]), "multipart/mixed") == 200
    assert depth(_parse(corpus["rfc822_attachment_50_deep"]), "message/rfc822") == 50


def test_filenames_carry_the_attack(corpus: dict[str, bytes]) -> None:
    def filename(name: str) -> str:
        return _parse(corpus[name]).get_payload()[1].get_filename()

    assert filename("filename_unix_traversal") == "../../etc/passwd"
    assert filename("filename_windows_traversal") == "..\\..\\windows\\system32\\evil.dll"
    assert filename("filename_absolute_path") == "/etc/shadow"
    assert {"\x00", "\r", "\n"} <= set(filename("filename_control_characters"))


def test_the_png_is_an_executable(corpus: dict[str, bytes]) -> None:
    part = _parse(corpus["content_type_lies_png_is_executable"]).get_payload()[1]
    assert part.get_content_type() == "image/png"
    assert part.get_payload(decode=True).startswith(b"MZ")


def test_bytes_that_do_not_belong(corpus: dict[str, bytes]) -> None:
    assert b"\x00" in corpus["nul_in_headers"].partition(b"\r\n\r\n")[0]
    assert b"\x00" in corpus["nul_in_body"].partition(b"\r\n\r\n")[2]
    assert corpus["empty_body"].endswith(b"\r\n\r\n")
    assert b"\r\n\r\n" not in corpus["headers_only_no_blank_line"]
    assert b":" not in corpus["no_headers_at_all"].split(b"\r\n")[0]
    mixed = corpus["mixed_line_endings"]
    assert b"\n" in mixed.replace(b"\r\n", b"") and b"\r" in mixed.replace(b"\r\n", b"")
    names = [line.split(b":")[0] for line in corpus["header_name_8bit"].split(b"\r\n\r\n")[0].split(b"\r\n")]
    assert any(not name.isascii() for name in names)
    with pytest.raises(UnicodeDecodeError):
        corpus["charset_lie_utf8_is_latin1"].decode("utf-8")
    assert not corpus["charset_utf16_without_bom"].partition(b"\r\n\r\n")[2].startswith((b"\xff\xfe", b"\xfe\xff"))
