"""Bodies and headers in legacy and broken charsets read as mail clients read them."""

from __future__ import annotations

import pytest

from mailgate.mail import charsets
from mailgate.mail.parse import parse
from tests.reading import read


def test_iso_2022_jp_is_read_with_its_cp932_extensions_in_body_subject_and_display_name():
    mail = read("iso2022jp.eml")
    assert mail.text.strip() == "①番の件、よろしくお願いします。"
    assert mail.subject == "注文について"
    assert (mail.from_name, mail.from_addr) == ("山田太郎", "yamada@example.jp")
    assert "\x1b" not in mail.text


def test_text_labelled_gb2312_that_is_really_gbk_reads_through_gb18030():
    mail = read("gb2312_really_gbk.eml")
    assert mail.text.strip() == "王喆您好，我的订单还没有到。"
    assert mail.subject == "订单问题"
    assert mail.charsets[0]["used"] == "gb18030" and mail.charsets[0]["how"] == "superset"


def test_utf7_is_decoded_and_leaves_no_plus_sequences():
    assert read("utf7.eml").text.strip() == "Grüße, die Lieferung ist nicht angekommen."


def test_8bit_text_with_no_charset_is_detected():
    mail = read("undeclared_8bit.eml")
    assert "Frau Müller" in mail.text and "Grüße aus Köln" in mail.text
    assert mail.charsets[0]["how"] == "detected"


def test_raw_8bit_headers_are_read_in_the_body_charset_not_left_as_surrogates():
    mail = read("header_8bit_gbk.eml")
    assert (mail.from_name, mail.from_addr) == ("王小明", "wang@example.cn")
    assert mail.subject == "打印机坏了"


@pytest.mark.parametrize(
    ("label", "text", "codec"),
    [
        ("iso-8859-1", "Caf\u00e9 \u20ac5 \u201cquoted\u201d", "cp1252"),  # the euro and quotes of windows-1252
        ("us-ascii", "na\u00efve \u2013 dash", "cp1252"),
        ("big5", "\u7881\u8a18", "big5hkscs"),  # HKSCS characters
        ("ks_c_5601-1987", "\ub620\ubc29", "cp949"),  # UHC syllables outside EUC-KR
    ],
)
def test_a_declared_label_is_read_through_its_whatwg_superset(label, text, codec):
    decoded, decision = charsets.decode(text.encode(codec), label)
    assert decoded == text and decision.used == codec


def test_utf8_mislabelled_as_latin1_is_read_as_utf8():
    decoded, decision = charsets.decode("Grüße".encode(), "iso-8859-1")
    assert decoded == "Grüße" and decision.used == "utf-8"


def test_an_unknown_label_falls_back_to_detection_and_never_raises():
    text = "Здравствуйте! У меня не работает принтер. Помогите, пожалуйста, как можно скорее."
    decoded, decision = charsets.decode(text.encode("koi8-r"), "x-no-such-charset")
    assert decoded == text and decision.how == "detected"


def test_decoded_text_never_holds_a_surrogate():
    for data, label in ((b"+2D3cAA-", "utf-7"), (b"\xed\xa0\x80abc", "utf-8"), (b"\xff\xfe\x00\xd8", "utf-16")):
        decoded, _ = charsets.decode(data, label)
        decoded.encode("utf-8")  # raises on a lone surrogate


def test_encoded_words_split_across_one_multibyte_character_are_joined_before_decoding():
    raw = (
        b"From: a@example.com\r\nTo: support@example.com\r\n"
        b"Subject: =?utf-8?q?Gr=C3?= =?utf-8?q?=BC=C3=9Fe?=\r\n\r\nx\r\n"
    )
    assert parse(raw).subject == "Grüße"


def test_a_plain_utf8_mail_takes_the_strict_path_without_the_detector():
    mail = parse("From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n".encode())
    assert mail.text.strip() == "Grüße" and mail.charsets[0]["how"] == "declared"


def test_utf8_with_one_broken_sequence_stays_utf8_with_one_replacement_character():
    decoded, decision = charsets.decode("Grüße aus Köln, schöne Grüße".encode() + b" \xe9 Ende", "utf-8")
    assert decoded == "Grüße aus Köln, schöne Grüße \ufffd Ende" and decision.how == "replaced"


def test_latin1_text_labelled_utf8_reads_as_windows_1252_not_another_latin_code_page():
    decoded, _ = charsets.decode("Café, déjà vu, voilà: ça coûte 15 Euro.".encode("latin-1"), "utf-8")
    assert decoded == "Café, déjà vu, voilà: ça coûte 15 Euro."


def test_a_multipart_whose_boundary_never_comes_is_read_as_text():
    raw = (
        b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="never"\r\n\r\n'
        b"Just text, no delimiter line at all.\r\n"
    )
    mail = parse(raw)
    assert mail.text.strip() == "Just text, no delimiter line at all." and mail.attachments == []


def test_windows_1252_reads_its_five_undefined_bytes_as_c1_controls_and_every_other_byte_as_the_codec_does():
    every = bytes(range(256))
    expected = "".join(chr(b) if b in (0x81, 0x8D, 0x8F, 0x90, 0x9D) else bytes([b]).decode("cp1252") for b in every)
    text, decision = charsets.decode(every, "windows-1252")
    assert text == expected
    assert (decision.used, decision.how) == ("cp1252", "declared")


def test_a_big_windows_1252_text_with_an_undefined_byte_is_read_without_an_object_per_byte():
    import tracemalloc

    data = b"\x80 Euro \x93quoted\x94 " * 50_000 + b"\x81"  # 850 kB: one str per byte costs 25 times that
    tracemalloc.start()
    try:
        text, _ = charsets.decode(data, "windows-1252")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text.startswith("\u20ac Euro \u201cquoted\u201d ") and text.endswith("\x81")
    assert peak < 8 * len(data), f"peak {peak / len(data):.1f} times the text"
