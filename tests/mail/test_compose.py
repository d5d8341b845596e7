"""The bytes of a mail we send: no header injection, our own Message-ID, threading headers that hold."""

from __future__ import annotations

import base64
import email
import email.header
import email.policy
import itertools
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from mailgate.mail import compose
from mailgate.mail.compose import Outgoing
from mailgate.outbound import outbox as outbox_module
from mailgate.storage.models import Ticket
from tests.helpers import make_mail
from tests.outbound_helpers import flush, parse, sent_mails

WHEN = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
INJECTIONS = [
    "Hello\r\nBcc: victim@evil.example",
    "Hello\nX-Injected: yes\n\nbody",
    "Hello\rContent-Type: text/html",
    "Hello\r\n\r\nTo: everyone@evil.example",
    "Hello\x00\x0bBcc: nul@evil.example",
]


def outgoing(**changes):
    fields = dict(
        from_addr="support@example.com",
        from_name="Example Support",
        to=[("Alice", "alice@customer.example")],
        subject="Printer on fire",
        text="Hi.\n",
        date=WHEN,
        message_id=compose.new_message_id("support.example.com"),
    )
    fields.update(changes)
    return Outgoing(**fields)


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line and line[0] not in " \t"]


@pytest.mark.parametrize("subject", INJECTIONS)
def test_a_subject_with_cr_lf_never_adds_a_header(subject):
    raw = compose.compose(outgoing(subject=subject, from_name=subject, to=[(subject, "alice@customer.example")]))
    names = header_names(raw)
    assert not {"bcc", "x-injected", "content-type"} & (set(names) - {"content-type"})
    assert names.count("content-type") == 1 and names.count("to") == 1
    mail = parse(raw)
    assert "\n" not in mail["Subject"] and "\r" not in mail["Subject"]
    assert mail["Subject"].startswith("Hello")
    assert mail["Bcc"] is None and mail["X-Injected"] is None
    assert [a.addr_spec for a in mail["To"].addresses] == ["alice@customer.example"]


@pytest.mark.parametrize("subject", INJECTIONS)
def test_no_mail_we_send_carries_an_injected_header_end_to_end(make_config, harness_factory, subject):
    """Whatever reaches a ticket's subject (here set directly, as a later edit could), every mail stays clean."""
    h = harness_factory(make_config(agents=[{"address": "bob@example.com", "name": "Bob", "queues": ["support"]}]))
    h.deliver(make_mail(subject="=?utf-8?q?Hi=0D=0ABcc:_victim@evil.example?="))
    with h.session() as s, s.begin():
        ticket = s.scalar(select(Ticket))
        ticket.subject = subject.replace("\x00", "")  # PostgreSQL text holds no NUL
        outbox_module.enqueue(
            s,
            h.runtime.services,
            ticket=ticket,
            kind="resolved",
            recipients=[(subject, "alice@customer.example")],
            context={"ticket": {"subject": subject}},
        )
    flush(h)
    mails = sent_mails(h.runtime.config.data_dir)
    assert len(mails) == 3  # acknowledgment, notification, resolved notice
    for mail in mails:
        assert mail["Bcc"] is None and mail["X-Injected"] is None
        assert len(mail.get_all("To")) == 1 and len(mail.get_all("Content-Type")) == 1
        assert "\n" not in mail["Subject"]


def test_an_address_that_is_not_one_is_refused():
    for bad in ("alice@customer.example\r\nBcc: x@y", "no-at-sign", "a,b@c.example", "<a@b>@c"):
        with pytest.raises(ValueError):
            compose.compose(outgoing(to=[("A", bad)]))


def test_our_message_id_is_at_our_hostname_and_unique():
    first, second = compose.new_message_id("support.example.com"), compose.new_message_id("support.example.com")
    assert first != second and first.endswith("@support.example.com>") and first.startswith("<")
    assert compose.new_message_id("bad host\r\nX: y").endswith("@badhostXy>")


def test_references_keep_the_thread_and_stay_bounded():
    chain = " ".join(f"<m{n}@customer.example>" for n in range(50))
    in_reply_to, references = compose.thread_headers("<m50@customer.example>", chain)
    assert in_reply_to == "<m50@customer.example>"
    assert len(references) == compose.MAX_REFERENCES
    assert references[0] == "<m0@customer.example>" and references[-1] == "<m50@customer.example>"
    assert compose.thread_headers("<bad id with spaces>", "<ok@x> <evil\r\n@x>") == ("", ["<ok@x>"])


def test_automatic_mail_says_so_and_a_person_s_mail_does_not():
    auto = parse(compose.compose(outgoing(auto_submitted="auto-replied", loop_marker="support@example.com")))
    assert auto["Auto-Submitted"] == "auto-replied" and auto["X-Auto-Response-Suppress"] == "All"
    assert auto["X-Loop"] == "support@example.com"
    person = parse(compose.compose(outgoing()))
    assert person["Auto-Submitted"] is None and person["X-Auto-Response-Suppress"] is None


def test_a_text_part_always_and_an_html_part_when_there_is_one():
    plain = parse(compose.compose(outgoing()))
    assert plain.get_content_type() == "text/plain"
    both = parse(compose.compose(outgoing(html="<p>Hi.</p>")))
    assert both.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in both.iter_parts()] == ["text/plain", "text/html"]


def test_international_text_and_names_are_encoded():
    raw = compose.compose(
        outgoing(subject="Принтер горит", to=[("Иван", "ivan@customer.example")], text="Здравствуйте\n")
    )
    assert raw.isascii()
    mail = parse(raw)
    assert mail["Subject"] == "Принтер горит" and mail["To"].addresses[0].display_name == "Иван"
    assert mail.get_content().strip() == "Здравствуйте"


def test_lines_end_in_crlf_and_bodies_are_7bit_clean():
    raw = compose.compose(outgoing(text="Ligne un\nFrom the start\nÉté " + "x" * 1200 + "\n", html="<p>É</p>"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii() and max(len(line) for line in raw.split(b"\r\n")) <= 998
    mail = parse(raw.replace(b"\r\n", b"\n"))  # as a maildir keeps it
    assert mail.get_body(("plain",)).get_content() == "Ligne un\nFrom the start\nÉté " + "x" * 1200 + "\n"
    assert mail.get_body(("html",)).get_content().strip() == "<p>É</p>"


def test_an_address_outside_ascii_takes_the_smtputf8_path():
    raw = compose.compose(outgoing(to=[("José", "josé@customer.example")], subject="Olá"))
    mail = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)  # 8-bit headers
    assert mail["To"].addresses[0].addr_spec == "josé@customer.example"
    assert mail["Subject"] == "Olá" and mail["X-Loop"] is None and mail["Message-ID"]


def test_a_multipart_boundary_never_occurs_in_a_part_that_is_sent_as_it_is(monkeypatch):
    import uuid

    taken, other = uuid.UUID(int=1 << 120), uuid.UUID(int=2 << 120)  # they differ within the boundary's digits
    values = iter([taken, taken, other, uuid.UUID(int=3 << 120)])
    monkeypatch.setattr(compose.uuid, "uuid4", lambda: next(values))
    text = f"a line that looks like one: --=_{taken.hex[:24]}\n"

    raw = compose.compose(outgoing(text=text, html="<p>hello</p>"))

    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail.get_boundary() == f"=_{other.hex[:24]}", "the boundary found in the text was not used"
    assert [p.get_content_type() for p in mail.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    assert mail.get_body(("plain",)).get_content().replace("\r\n", "\n") == text


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 02 Dec 2026 09:00:00 +0000",
        "<0f3a@helpdesk.example>",
        'multipart/alternative; boundary="=_0f3a"',
        "Alice <alice@customer.example>",
        "a  b",
        " leading and trailing ",
        "x" * 69,  # 78 with "Subject: "
        "x" * 70,  # one past: folded by the classic folder
        "a\tb",
        "Привет",
        "one <a@b>, " * 12,
    ],
)
def test_a_header_is_written_exactly_as_the_classic_folder_writes_it(value):
    classic = email.policy.compat32.clone(linesep="\r\n", mangle_from_=False)
    assert compose._WIRE.fold_binary("Subject", value) == classic.fold_binary("Subject", value)


PNG = compose.OutAttachment("logo.png", "image/png", bytes(range(256)) * 20, content_id="logo@x", inline=True)
SHAPES = {
    "plain ascii": {},
    "no line end at the end": {"text": "Hi, no newline"},
    "empty text": {"text": ""},
    "every kind of line end": {"text": "one\r\ntwo\rthree\n\nfour\n"},
    "international": {"text": "Été\nПривет\n" * 40, "subject": "Принтер горит", "to": [("Иван", "i@c.example")]},
    "long lines": {"text": "x" * 1500 + "\n" + "word " * 400 + "\n"},
    "html": {"html": "<p>Hi.</p>\n<p>É</p>"},
    "html with an inline image": {"html": '<p><img src="cid:logo@x"></p>', "attachments": [PNG]},
    "attachments": {
        "attachments": [
            compose.OutAttachment("report.pdf", "application/pdf", b"%PDF" * 3000),
            compose.OutAttachment("données.txt", "text/plain", "é".encode() * 100),
            compose.OutAttachment("", "", b""),
        ]
    },
    "everything": {
        "html": "<p>a</p>",
        "attachments": [PNG, compose.OutAttachment("a.bin", "application/octet-stream", b"\x00" * 99)],
        "cc": [("Bob, the boss", "bob@c.example")],
        "reply_to": "reply+1@example.com",
        "reply_to_name": "Example Support",
        "in_reply_to": "<a@c.example>",
        "references": ["<a@c.example>", "<b@c.example>"],
        "auto_submitted": "auto-replied",
        "loop_marker": "support@example.com",
        "subject": "Re: [Support #12] " + "a long subject " * 10,
    },
}


@pytest.mark.parametrize("changes", SHAPES.values(), ids=SHAPES.keys())
def test_a_mail_is_written_byte_for_byte_as_the_stdlib_generator_writes_its_tree(changes):
    mail = outgoing(**changes)
    sender = compose.checked(mail.from_name, mail.from_addr)
    to = [compose.checked(n, a) for n, a in mail.to]
    cc = [compose.checked(n, a) for n, a in mail.cc]
    reply_to = compose.checked(mail.reply_to_name, mail.reply_to) if mail.reply_to else None
    tree = compose.tree(mail, sender, to, cc, reply_to)
    assert compose.flat(tree) == tree.as_bytes(policy=compose._WIRE)


def test_a_part_it_does_not_write_itself_goes_to_the_generator():
    inner = email.message_from_bytes(make_mail())
    wrapper = email.message.Message()
    wrapper["Content-Type"] = "message/rfc822"
    wrapper.set_payload([inner])
    with_preamble = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\npre\r\n--b\r\n\r\nx\r\n--b--\r\n'
    odd = email.message_from_bytes(with_preamble)
    for message in (wrapper, odd):
        assert compose.flat(message) == message.as_bytes(policy=compose._WIRE)


TEXTS = [
    "Été\n",
    "trailing blanks \nand tabs\t\n",
    "a = b, =41 is not A\n",
    ".\nA lone dot above\n",
    "From the start\n",
    "é" * 300 + "\n" + "x" * 2000 + "\n",
    "no line end, non-ASCII: Привет",
    "CRLF\r\nand CR\ronly\n",
    "\u00a0non-breaking\u2009thin space\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_a_quoted_printable_body_reads_back_as_its_text_in_short_7bit_lines(text):
    raw = compose.compose(outgoing(text=text, html=f"<p>{text}</p>"))
    assert raw.isascii() and max(len(line) for line in raw.split(b"\r\n")) <= 76
    mail = parse(raw)
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert mail.get_body(("plain",)).get_content().replace("\r\n", "\n") == expected
    assert mail.get_body(("html",)).get_content().replace("\r\n", "\n") == f"<p>{expected}</p>"


SUBJECTS = [
    "Принтер горит",
    "Problème d'impression: l'imprimante du 3ᵉ étage ne répond plus depuis ce matin",
    "日本語の件名がとても長い場合にはいくつかの単語に分けて折り返されます。" * 3,
    "emoji 🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥 in a row",
    "[#1234] Re: " + "é" * 500,
    "x" * 41 + "é",  # the first word's room ends inside the character
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_subject_outside_ascii_folds_into_short_encoded_words_that_read_back_as_it(subject):
    raw = compose.compose(outgoing(subject=subject))
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines = head.split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Subject: "))
    folded = [lines[start], *itertools.takewhile(lambda line: line.startswith(" "), lines[start + 1 :])]
    assert all(len(line) <= 78 for line in folded)
    words = " ".join(folded).removeprefix("Subject: ").split()
    assert all(len(word) <= 75 and word.startswith("=?utf-8?b?") for word in words)
    for word in words:  # each word holds whole characters (RFC 2047 5)
        base64.b64decode(word[len("=?utf-8?b?") : -2]).decode("utf-8")
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject


def test_a_subject_outside_ascii_is_written_as_the_classic_header_writes_its_base64():
    subject = "[#1234] Re: Проблема с оплатой заказа номер 5"
    classic = email.header.Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")
    assert compose.EncodedWords(subject, "Subject").folded("Subject", "\r\n") == f"Subject: {classic}\r\n"


def test_a_multipart_content_type_fits_on_one_line():
    raw = compose.compose(outgoing(html="<p>hello</p>", attachments=[PNG]))
    assert [line for line in raw.split(b"\r\n") if line.startswith(b"Content-Type: multipart/")] and not [
        line for line in raw.split(b"\r\n") if line.startswith(b" boundary=")
    ]
