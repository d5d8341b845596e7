"""Bounded work per mail: HTML past a bound is flattened or dropped and the mail says so; a body the parser
gives up on keeps its headers."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mailgate.mail.parse import parse
from mailgate.mail.sanitize import MAX_ATTRIBUTES, MAX_DEPTH, MAX_HTML, MAX_TAGS, sanitize
from tests.helpers import make_mail
from tests.mail.test_sanitize import Tree


def notes_named(notes: list[str], name: str) -> list[str]:
    return [note for note in notes if note.startswith(name + ":")]


def test_nesting_past_the_depth_bound_is_flattened_and_its_content_kept():
    html = "<div>" * (MAX_DEPTH + 50) + "deep text" + "</div>" * (MAX_DEPTH + 50) + "<p>after</p>"
    clean, notes = sanitize(html)
    assert Tree(clean).max_depth == MAX_DEPTH
    assert clean.count("<div>") == clean.count("</div>") == MAX_DEPTH
    assert "deep text" in clean and clean.endswith("</div><p>after</p>")
    assert notes == [f"HtmlTooDeep: 50 tags nested deeper than {MAX_DEPTH} were flattened"]


def test_html_within_every_bound_has_no_note():
    html = "<div>" * MAX_DEPTH + "x" + "</div>" * MAX_DEPTH
    assert sanitize(html) == (html, [])


def test_tags_past_the_count_are_dropped_and_the_tags_before_kept():
    pairs = MAX_TAGS // 2 + 5000
    clean, notes = sanitize("<i>x</i>" * pairs + "<b>late</b>")
    assert clean == "<i>x</i>" * (MAX_TAGS // 2)
    assert notes == [f"HtmlTooManyTags: the markup after the first {MAX_TAGS} tags was dropped"]


def test_attributes_past_the_bound_on_one_tag_are_dropped():
    fillers = " ".join(f"x{i}=v" for i in range(MAX_ATTRIBUTES - 1))
    clean, notes = sanitize(f'<p dir="rtl" {fillers} lang="ar" x="y" z>text</p>')
    assert clean == '<p dir="rtl">text</p>'  # lang is attribute 50 + 1, past the bound
    assert notes == [f"HtmlTooManyAttributes: 3 attributes past {MAX_ATTRIBUTES} on a tag were dropped"]


def test_html_past_the_size_bound_is_cut():
    clean, notes = sanitize("<p>start</p>" + "y" * MAX_HTML)
    assert clean.startswith("<p>start</p>yyy")
    assert len(clean) <= MAX_HTML
    assert notes == [f"HtmlTooLarge: the HTML part was cut at {MAX_HTML} characters"]


def test_an_unterminated_comment_or_script_ends_the_markup():
    assert sanitize("<p>kept</p><!-- <b>never closed")[0] == "<p>kept</p>"
    assert sanitize("<p>kept</p><script>" + "<div>" * 50_000)[0] == "<p>kept</p>"


def bomb_mail(html: str) -> bytes:
    return make_mail(subject="bomb", body="The text part of a bomb.\n", html=html)


def test_a_mail_of_60000_nested_divs_is_parsed_within_the_bounds_and_noted():
    mail = parse(bomb_mail("<p>before</p>" + "<div>" * 60_000 + "deep" + "</div>" * 60_000))
    assert mail.html.startswith("<p>before</p><div><div>")
    assert Tree(mail.html).max_depth <= MAX_DEPTH
    assert notes_named(mail.defects, "HtmlTooDeep") and notes_named(mail.defects, "HtmlTooManyTags")
    assert mail.text == "The text part of a bomb.\n"


def test_a_mail_of_240000_small_tags_keeps_the_first_and_notes_the_rest():
    mail = parse(bomb_mail("<b>first</b>" + "<i>x</i>" * 120_000))
    assert mail.html.startswith("<b>first</b><i>x</i>")
    assert len(re.findall("<i>", mail.html)) == MAX_TAGS // 2 - 1
    assert notes_named(mail.defects, "HtmlTooManyTags")


def test_a_mail_with_10000_attributes_on_one_tag_keeps_the_allowed_one_before_the_bound():
    attributes = " ".join(f"a{i}=v" for i in range(10_000))
    mail = parse(bomb_mail(f'<p lang="en" {attributes}>text</p>'))
    assert mail.html.strip() == '<p lang="en">text</p>'
    assert notes_named(mail.defects, "HtmlTooManyAttributes") == [
        f"HtmlTooManyAttributes: {10_001 - MAX_ATTRIBUTES} attributes past {MAX_ATTRIBUTES} on a tag were dropped"
    ]


def test_a_mail_of_10000_nested_bold_tags_is_flattened():
    mail = parse(bomb_mail("<b>" * 10_000 + "bold"))
    assert mail.html.count("<b>") == MAX_DEPTH
    assert "bold" in mail.html
    assert notes_named(mail.defects, "HtmlTooDeep") == [
        f"HtmlTooDeep: {10_000 - MAX_DEPTH} tags nested deeper than {MAX_DEPTH} were flattened"
    ]


def nested_multipart(depth: int) -> bytes:
    """A mail whose body is ``depth`` multiparts inside each other: the parser gives up on the body."""
    head = (
        b"From: Bob Builder <Bob@Customer.example>\r\n"
        b"To: Support <support@example.com>, other@example.com\r\n"
        b"Subject: =?utf-8?q?Deep_m=C3=BCltipart?=\r\n"
        b"Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n"
        b"Message-ID: <deep@customer.example>\r\n"
        b"In-Reply-To: <earlier@customer.example>\r\n"
        b"MIME-Version: 1.0\r\n"
    )
    parts = [b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n']
    for level in range(1, depth):
        parts.append(f'--b{level - 1}\r\nContent-Type: multipart/mixed; boundary="b{level}"\r\n\r\n'.encode())
    parts.append(f"--b{depth - 1}\r\nContent-Type: text/plain\r\n\r\nat the bottom\r\n".encode())
    return head + b"".join(parts)


def test_a_body_the_parser_gives_up_on_keeps_the_top_level_headers():
    mail = parse(nested_multipart(50_000))
    assert [d for d in mail.defects if d.startswith("ParserError:")], mail.defects
    assert mail.from_addr == "bob@customer.example"
    assert mail.from_name == "Bob Builder"
    assert mail.to == ["support@example.com", "other@example.com"]
    assert mail.subject == "Deep mültipart"
    assert mail.date == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert mail.message_id == "<deep@customer.example>"
    assert mail.in_reply_to == ["<earlier@customer.example>"]
    assert "at the bottom" in mail.text
