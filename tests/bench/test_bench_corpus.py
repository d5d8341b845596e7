"""The benchmark's mail generator (bench/corpus.py): what the benchmark relies on."""

from __future__ import annotations

import email
import email.policy
import importlib.util
import mailbox
import re
import subprocess
import sys
from collections import Counter
from email.header import decode_header, make_header
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_corpus() -> ModuleType:
    """bench/ is a folder of scripts, not a package: load the module by path."""
    spec = importlib.util.spec_from_file_location("bench_corpus", BENCH / "corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_corpus"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()

TOKEN = re.compile(r"\[#(\d+)\]")


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


@pytest.fixture(scope="module")
def stream() -> list:
    return list(corpus.generate(1000, seed=7))


@pytest.fixture(scope="module")
def parsed(stream: list) -> list[email.message.EmailMessage]:
    return [_parse(m.raw) for m in stream]


@pytest.fixture(scope="module")
def small_stream() -> list:
    return list(corpus.generate(1000, seed=7, small=True))


def _plain_text(msg: email.message.Message) -> str:
    part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    return part.get_content()


def _attachments(msg: email.message.Message) -> list:
    return [p for p in msg.walk() if p.get_content_disposition() == "attachment"]


# --- determinism -----------------------------------------------------------------------


def test_the_same_seed_gives_byte_identical_mail() -> None:
    first = [m.raw for m in corpus.generate(300, seed=3)]
    second = [m.raw for m in corpus.generate(300, seed=3)]
    assert first == second


def test_another_seed_gives_other_mail() -> None:
    one = [m.raw for m in corpus.generate(20, seed=3)]
    other = [m.raw for m in corpus.generate(20, seed=4)]
    assert not set(one) & set(other)


def test_small_drops_attachments_and_leaves_the_rest_of_the_stream_alone(
    stream: list, parsed: list, small_stream: list
) -> None:
    assert [m.message_id for m in stream] == [m.message_id for m in small_stream]
    for full, msg, small in zip(stream, parsed, small_stream, strict=True):
        if not _attachments(msg):
            assert full.raw == small.raw


# --- the mix ---------------------------------------------------------------------------


def test_about_seventy_percent_open_a_conversation(stream: list) -> None:
    kinds = Counter(m.kind for m in stream)
    assert set(kinds) == {"new", "followup"}
    assert 0.66 <= kinds["new"] / len(stream) <= 0.74
    assert stream[0].kind == "new"


def test_about_half_have_an_html_alternative(stream: list, parsed: list) -> None:
    with_html = sum(any(p.get_content_type() == "text/html" for p in msg.walk()) for msg in parsed)
    assert 0.45 <= with_html / len(stream) <= 0.55
    alternative = sum(b"multipart/alternative" in m.raw for m in stream)
    assert alternative == with_html


def test_about_ten_percent_carry_a_50_to_500_kb_attachment_with_its_magic_number(
    parsed: list,
) -> None:
    magic = {"application/pdf": b"%PDF-", "image/png": b"\x89PNG\r\n\x1a\n", "application/zip": b"PK\x03\x04"}
    found = Counter()
    for msg in parsed:
        for part in _attachments(msg):
            data = part.get_content()
            assert 50_000 <= len(data) <= 510_000
            assert data.startswith(magic[part.get_content_type()])
            assert part["Content-Transfer-Encoding"] == "base64"
            assert part.get_filename()
            found[part.get_content_type()] += 1
    assert 0.07 <= sum(found.values()) / len(parsed) <= 0.13
    assert set(found) == set(magic)


def test_small_mail_has_no_attachment(small_stream: list) -> None:
    for m in small_stream:
        msg = _parse(m.raw)
        assert not _attachments(msg)
        assert all(p.get_content_maintype() in {"text", "multipart"} for p in msg.walk())
        assert len(m.raw) < 20_000


def test_plain_text_bodies_are_1_to_5_kb_in_several_languages(small_stream: list) -> None:
    languages = Counter()
    for m in small_stream:
        msg = _parse(m.raw)
        text = _plain_text(msg)
        assert 1000 <= len(text.encode()) <= 5120
        languages[msg["Content-Language"]] += 1
    assert {"en", "fr", "de", "ru", "es"} <= set(languages)
    assert languages["en"] < len(small_stream) / 2


def test_bodies_use_several_charsets_and_transfer_encodings(small_stream: list) -> None:
    charsets, encodings = Counter(), Counter()
    for m in small_stream:
        for part in _parse(m.raw).walk():
            if part.get_content_maintype() == "text":
                charsets[part.get_content_charset()] += 1
                encodings[part["Content-Transfer-Encoding"]] += 1
    assert {"us-ascii", "utf-8", "iso-8859-1", "koi8-r", "windows-1251"} <= set(charsets)
    assert {"7bit", "8bit", "quoted-printable", "base64"} <= set(encodings)


def test_some_subjects_are_rfc2047_encoded_russian_and_french(stream: list, parsed: list) -> None:
    russian = french = plain = 0
    for m, msg in zip(stream, parsed, strict=True):
        encoded = email.message_from_bytes(m.raw)["Subject"]  # compat32: as on the wire
        decoded = str(make_header(decode_header(encoded)))
        assert decoded == str(msg["Subject"])
        if "=?" not in encoded:
            plain += 1
        elif re.search("[а-яё]", decoded, re.I):
            russian += 1
        elif re.search("[éèêàçôû]", decoded, re.I):
            french += 1
    assert russian > 25 and french > 10 and plain > 250


# --- senders, dates, identifiers -------------------------------------------------------


def test_senders_come_from_a_pool_of_a_few_hundred_customers(stream: list, parsed: list) -> None:
    senders = Counter(m.mail_from for m in stream)
    assert 150 <= len(senders) <= corpus.CUSTOMER_POOL
    for m, msg in zip(stream, parsed, strict=True):
        ((_, header_address),) = getaddresses([str(msg["From"])])
        assert header_address == m.mail_from


def test_some_mails_copy_a_colleague_from_the_same_company(stream: list, parsed: list) -> None:
    copied = 0
    for m, msg in zip(stream, parsed, strict=True):
        if msg["Cc"]:
            ((_, cc),) = getaddresses([str(msg["Cc"])])
            assert cc != m.mail_from
            assert cc.split("@")[1] == m.mail_from.split("@")[1]
            assert m.rcpt_to == ["support@example.com"]  # a copy is not an envelope recipient
            copied += 1
    assert 0.04 <= copied / len(stream) <= 0.12


def test_envelope_goes_to_support_and_every_host_is_under_the_domain() -> None:
    for m in corpus.generate(200, seed=2, support="help@desk.test", domain="corp.test"):
        assert m.rcpt_to == ["help@desk.test"]
        assert m.mail_from.endswith(".corp.test")
        assert m.message_id.endswith(".corp.test>")
        assert _parse(m.raw)["To"] == "help@desk.test"


def test_message_ids_are_unique_and_in_their_header(stream: list, parsed: list) -> None:
    assert len({m.message_id for m in stream}) == len(stream)
    for m, msg in zip(stream, parsed, strict=True):
        assert msg["Message-ID"] == m.message_id
        assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", m.message_id)


def test_dates_parse_and_never_go_backwards(parsed: list) -> None:
    dates = [parsedate_to_datetime(str(msg["Date"])) for msg in parsed]
    assert all(d.tzinfo is not None for d in dates)
    assert dates == sorted(dates)


# --- follow-ups ------------------------------------------------------------------------


def test_every_followup_points_at_an_earlier_new_mail(stream: list, parsed: list) -> None:
    new_ids: dict[str, int] = {}  # Message-ID of a new mail -> its 1-based number
    seen: set[str] = set()
    how = Counter()
    for m, msg in zip(stream, parsed, strict=True):
        if m.kind == "new":
            new_ids[m.message_id] = len(new_ids) + 1
            assert m.thread == len(new_ids)
            assert not msg["In-Reply-To"] and not msg["References"]
            assert not TOKEN.search(str(msg["Subject"]))
        else:
            references = str(msg["References"] or "").split()
            token = TOKEN.search(str(msg["Subject"]))
            assert references or token
            if references:
                assert new_ids[references[0]] == m.thread
                assert set(references) <= seen
                assert str(msg["In-Reply-To"]) == references[-1]
            if token:
                assert int(token.group(1)) == m.thread <= len(new_ids)
            how[(bool(references), bool(token))] += 1
        seen.add(m.message_id)
    assert set(how) == {(True, True), (True, False), (False, True)}


def test_a_followup_comes_from_the_customer_who_opened_the_conversation(stream: list) -> None:
    opener: dict[int, str] = {}
    for m in stream:
        if m.kind == "new":
            opener[m.thread] = m.mail_from
        else:
            assert m.mail_from == opener[m.thread]


# --- well-formed as SMTP input ---------------------------------------------------------


def test_every_mail_parses_without_defects(stream: list, parsed: list) -> None:
    for m, msg in zip(stream, parsed, strict=True):
        assert all(not part.defects for part in msg.walk()), m.message_id
        assert _plain_text(msg)
        legacy = email.message_from_bytes(m.raw, policy=email.policy.compat32)
        assert all(not part.defects for part in legacy.walk()), m.message_id


def test_mail_has_crlf_lines_no_longer_than_smtp_allows(stream: list) -> None:
    for m in stream:
        assert b"\n" not in m.raw.replace(b"\r\n", b"")
        assert b"\r" not in m.raw.replace(b"\r\n", b"")
        assert max(len(line) for line in m.raw.split(b"\r\n")) <= 998
        assert m.raw.endswith(b"\r\n")


def test_the_corpus_is_made_lazily_one_mail_at_a_time() -> None:
    """A run of any size costs memory for one mail, not for the corpus (its speed is bench/'s business)."""
    import itertools

    stream = corpus.generate(10**9, seed=5, small=True)
    assert [m.raw for m in itertools.islice(stream, 3)] == [m.raw for m in corpus.generate(3, seed=5, small=True)]


# --- command line ----------------------------------------------------------------------


def test_cli_writes_one_eml_per_mail_in_stream_order(tmp_path: Path) -> None:
    out = tmp_path / "eml"
    subprocess.run(
        [sys.executable, str(BENCH / "corpus.py"), "--count", "40", "--seed", "9", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.eml" for i in range(1, 41)]
    assert [f.read_bytes() for f in files] == [m.raw for m in corpus.generate(40, seed=9)]


def test_cli_writes_a_reproducible_mbox_with_from_lines_escaped(tmp_path: Path) -> None:
    messages = list(corpus.generate(200, seed=11, small=True))
    assert any(b"\r\nFrom " in m.raw for m in messages)  # the case escaping exists for
    first, second = tmp_path / "a.mbox", tmp_path / "b.mbox"
    assert corpus.main(["--count", "200", "--seed", "11", "--small", "--mbox", str(first)]) == 0
    assert corpus.main(["--count", "200", "--seed", "11", "--small", "--mbox", str(second)]) == 0
    data = first.read_bytes()
    assert data == second.read_bytes()
    assert b"\r" not in data
    assert data.startswith(b"From ")
    assert data.count(b"\nFrom ") + 1 == 200  # only From_ lines start with "From "
    assert b"\n>From " in data
    box = mailbox.mbox(first)
    try:
        ids = [msg["Message-ID"] for msg in box]
    finally:
        box.close()
    assert ids == [m.message_id for m in messages]


def test_cli_replaces_an_existing_mbox(tmp_path: Path) -> None:
    path = tmp_path / "c.mbox"
    path.write_bytes(b"From old Mon Jan  1 00:00:00 2024\n\nstale\n")
    corpus.main(["--count", "3", "--mbox", str(path)])
    assert b"stale" not in path.read_bytes()
    assert path.read_bytes().count(b"Message-ID: ") == 3
