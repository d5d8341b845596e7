"""Structure: HTML-only mail, broken header blocks, attachments from every container, signed and encrypted mail."""

from __future__ import annotations

import hashlib

import pytest

from mailgate.doors.checks import looks_like_mail
from mailgate.mail.parse import parse
from tests.reading import fixture, names, read


def test_html_only_mail_reads_as_text_with_paragraphs_lists_links_and_entities_and_no_css():
    text = read("html_only.eml").text
    assert text.startswith("Glück 'auf'\n\nSee [the setup guide](https://docs.example.com/setup).")
    assert "* first step" in text and "* second step" in text
    assert "color" not in text and "&" not in text


def test_an_empty_text_part_does_not_win_over_a_non_empty_html_part():
    mail = read("empty_plain_with_html.eml")
    assert mail.text == "The real text is here."
    assert "The real text" in mail.html


def test_an_unindented_continuation_line_does_not_end_the_header_block():
    mail = read("unindented_continuation.eml")
    assert (mail.from_addr, mail.subject) == ("old@example.net", "Still here")
    assert mail.text.strip() == "body text"
    assert any(d.startswith("UnindentedContinuation") for d in mail.defects)


def test_a_banner_above_the_headers_is_skipped_and_the_mail_is_accepted_by_the_doors():
    raw = fixture("banner_above_headers.eml")
    assert looks_like_mail(raw)
    mail = parse(raw)
    assert (mail.from_name, mail.from_addr, mail.subject) == ("Banner Person", "banner@example.net", "Exported mail")
    assert mail.text.strip() == "body under a banner"


def test_attachment_names_come_from_name_rfc2047_rfc2231_and_never_from_content_id_brackets():
    mail = read("attachment_names.eml")
    assert names(mail) == ["invoice-2026.pdf", "Résumé.txt", "Übersicht der Kosten.txt", "image000.png"]
    assert mail.text.strip() == "see attached"


def test_the_files_inside_winmail_dat_are_the_attachments():
    mail = read("tnef.eml")
    assert names(mail) == ["report.txt"]
    assert mail.attachments[0].payload == b"quarterly numbers\r\n"


def test_a_uuencoded_block_becomes_an_attachment_and_leaves_the_text():
    mail = read("uuencode.eml")
    assert names(mail) == ["log.txt"]
    assert mail.attachments[0].payload == b"hello from a uuencoded file\n"
    assert "begin 644" not in mail.text and "Here is the log." in mail.text and "Thanks" in mail.text


def test_appledouble_keeps_the_data_fork_only():
    mail = read("appledouble.eml")
    assert [(a.filename, a.payload) for a in mail.attachments] == [("notes.txt", b"the data fork")]


def test_an_attached_message_is_kept_whole_with_a_stable_name_and_its_files_listed_as_its_own():
    first, again = read("attached_message.eml"), read("attached_message.eml")
    assert [(a.filename, a.part_of) for a in first.attachments] == [
        ("The original.eml", ""),
        ("data.csv", "The original.eml"),
    ]
    assert names(first) == names(again)
    assert b"inner body text" in first.attachments[0].payload
    assert "inner body text" not in first.text  # its body is not appended to the ticket's text
    assert first.text.strip() == "forwarding this"


def test_pgp_signed_mail_reads_the_signed_content_and_keeps_the_signature_as_an_attachment():
    mail = read("signed_pgp.eml")
    assert mail.text.strip() == "The signed words."
    assert [(a.filename, a.content_type) for a in mail.attachments] == [("signature.asc", "application/pgp-signature")]


def test_smime_signed_mail_reads_the_signed_content_and_names_the_signature():
    mail = read("signed_smime.eml")
    assert mail.text.strip() == "Signed by S/MIME."
    assert [(a.filename, a.content_type) for a in mail.attachments] == [("smime.p7s", "application/pkcs7-signature")]


def test_encrypted_mail_is_kept_raw_with_a_clear_note():
    mail = read("encrypted_pgp.eml")
    assert mail.encrypted and "encrypted: not readable by mailgate" in mail.defects
    assert mail.text == "[encrypted: not readable by mailgate]"
    [blob] = mail.attachments
    assert blob.filename == "encrypted.asc" and b"BEGIN PGP MESSAGE" in blob.payload


def test_the_reading_of_every_attachment_is_stable_across_parses():
    first, again = read("attachment_names.eml"), read("attachment_names.eml")
    digest = [hashlib.sha256(a.payload).hexdigest() for a in first.attachments]
    assert digest == [hashlib.sha256(a.payload).hexdigest() for a in again.attachments]


def test_a_bounce_that_defeats_the_mime_walk_still_gets_its_headers_from_the_fallback():
    raw = b"From: MAILER-DAEMON@mx.example\r\nSubject: failure\r\nContent-Type: multipart/report\r\n\r\nno boundary\r\n"
    mail = parse(raw)
    assert mail.from_addr == "mailer-daemon@mx.example" and mail.subject == "failure"


def test_messages_attached_inside_an_attached_message_are_not_copied_again():
    inner = b"From: c@example.com\r\nSubject: deepest\r\n\r\ndeep text\r\n"
    for level in range(3):
        head = b'From: b@example.com\r\nSubject: level\r\nContent-Type: multipart/mixed; boundary="L%d"\r\n\r\n' % level
        inner = head + b"--L%d\r\nContent-Type: message/rfc822\r\n\r\n" % level + inner + b"\r\n--L%d--\r\n" % level
    mail = parse(
        b'From: a@example.com\r\nSubject: top\r\nContent-Type: multipart/mixed; boundary="T"\r\n\r\n'
        b"--T\r\nContent-Type: text/plain\r\n\r\ntop text\r\n--T\r\nContent-Type: message/rfc822\r\n\r\n"
        + inner
        + b"\r\n--T--\r\n"
    )
    assert [(a.filename, a.part_of) for a in mail.attachments] == [("level.eml", "")]
    assert mail.text.strip() == "top text"


CLEANED = [
    "plain ascii",
    "  padded  ",
    "tab\there",
    "line\r\nbreak",
    "nul\x00and\x7fdel",
    "Привет",
    "caf\udce9",  # an 8-bit byte kept by the stdlib as a lone surrogate
    "",
    "~!@#$%^&*()_+{}|:<>?",
]


@pytest.mark.parametrize("value", CLEANED)
def test_a_header_value_is_cleaned_the_same_whether_it_is_plain_ascii_or_not(value):
    from mailgate.mail.parse import _CONTROL, clean_header, proper_text

    slow = _CONTROL.sub("", proper_text(value).replace("\r", " ").replace("\n", " ")).strip()
    assert clean_header(value) == slow
