"""Deterministic helpdesk mail for the benchmark.

Why a generator and not a folder of samples: the benchmark needs thousands of
mails whose shape is known (how many open a conversation, which ones follow up
on which), that are the same on every machine and every run, and that look
like what customers really send: several languages and charsets, RFC 2047
subjects, multipart/alternative with HTML, attachments with real magic numbers,
quoted replies. One seed gives one stream, byte for byte.

The stream, message by message:

* about 70 % are ``new`` mails that open a conversation, 30 % ``followup``
  mails in a conversation opened earlier in the same stream. The first mail
  is always new.
* a follow-up points at its conversation by ``In-Reply-To``/``References``
  (the opening mail's Message-ID first, then later follow-ups of the same
  conversation), by a subject token ``[#N]``, or both. ``N`` is the 1-based
  position of the opening mail among the *new* mails of the stream: this
  assumes the helpdesk numbers tickets in arrival order, starting at 1, and
  that the stream is delivered in order into an empty helpdesk. The same
  number is in ``Message.thread``, so a benchmark can check the threading
  without relying on the assumption.
* senders come from a pool of 300 customers (colleagues share a company
  host, and one in ten mails copies a colleague); a follow-up comes from the
  customer who opened the conversation. Envelope sender = the customer's
  address; envelope recipient = the support address. Dates move forward
  through the stream, in each sender's time zone.
* every host name in an address or a Message-ID ends in ``domain``, so that
  whatever a helpdesk answers to this corpus stays inside a domain the
  benchmark controls.
* about 10 % carry a 50-500 KB attachment (PDF, PNG or ZIP bytes with the
  right magic numbers) unless ``small``. The attachment bytes come from a
  per-message random source, so with ``small`` every mail without an
  attachment stays byte-identical and every Message-ID stays the same (to load
  two streams into one helpdesk, use two seeds).

Command line::

    python bench/corpus.py --count 10000 --seed 1 --small --out DIR
    python bench/corpus.py --count 10000 --seed 1 --mbox corpus.mbox
"""

from __future__ import annotations

import argparse
import html
import io
import mailbox
import random
import sys
import tomllib
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email import charset as email_charset
from email import encoders
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message as MimeMessage
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import format_datetime, formataddr
from pathlib import Path

NEW = "new"
FOLLOWUP = "followup"
FOLLOWUP_RATIO = 0.30
HTML_RATIO = 0.50
ATTACHMENT_RATIO = 0.10
CUSTOMER_POOL = 300
START = datetime(2024, 3, 4, 7, 30, tzinfo=UTC)


class _Policy(Compat32):
    """compat32 with CRLF, skipping the header folder for short ASCII lines.

    The stdlib builds a ``Header`` object for every header it writes, which was
    half the generation time; for a short ASCII line the result is the line.
    """

    def fold_binary(self, name: str, value: object) -> bytes:
        if isinstance(value, str) and value.isascii() and "\n" not in value and len(name) + len(value) + 2 <= 78:
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _Policy(linesep="\r\n")


@dataclass(frozen=True)
class Message:
    """One mail as an SMTP client would submit it."""

    mail_from: str
    rcpt_to: list[str]
    raw: bytes  # CRLF line endings, ready for SMTP DATA
    message_id: str  # with angle brackets, as in the header
    kind: str  # NEW or FOLLOWUP
    thread: int  # 1-based index among new mails of the mail opening this conversation


PHRASES = Path(__file__).with_name("corpus_phrases.toml")


@dataclass(frozen=True)
class _Lang:
    """What customers writing in one language say; loaded from ``PHRASES``."""

    code: str
    weight: int
    charsets: tuple[str, ...]  # the usual one first
    topics: tuple[tuple[str, str], ...]  # (subject, first sentence) of a new conversation
    greetings: tuple[str, ...]
    details: tuple[str, ...]
    asks: tuple[str, ...]
    closings: tuple[str, ...]
    nudges: tuple[str, ...]  # opens a follow-up
    reply_prefixes: tuple[str, ...]
    quote_intro: str
    log_intro: str
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]


def _load_languages(path: Path = PHRASES) -> tuple[_Lang, ...]:
    with path.open("rb") as f:
        tables = tomllib.load(f)["language"]

    def frozen(value: object) -> object:
        return tuple(frozen(v) for v in value) if isinstance(value, list) else value

    return tuple(_Lang(**{k: frozen(v) for k, v in table.items()}) for table in tables)


_LANGS = _load_languages()

_PRODUCTS = ("Model X200 router", "StudioDesk", "label printer", "Pro license", "scanner")
_BROWSERS = ("Firefox 123", "Chrome 122", "Safari 17.3", "Edge 122")
_COMPANIES = (
    "nordwind",
    "acme",
    "bluefin",
    "orion-logistik",
    "petit-bateau",
    "solaris",
    "kvant",
    "meridian",
    "zefiro",
    "tatra",
    "lumen",
    "harbour",
    "graniteworks",
    "vostok",
    "alpenblick",
    "mirador",
    "copperleaf",
    "brightline",
    "polaris",
    "fjord",
)
_MAILERS = (
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.8.0"),
    ("X-Mailer", "Microsoft Outlook 16.0"),
    ("X-Mailer", "Apple Mail (2.3774.400.31)"),
    ("User-Agent", "Roundcube Webmail/1.6.6"),
    ("User-Agent", "K-9 Mail for Android"),
    (None, None),
)
_TZ_HOURS = (-5, 0, 1, 1, 2, 3)
_SYSTEMS = ("Windows 11 23H2", "macOS 14.3", "Ubuntu 22.04", "Android 14", "iOS 17.3")
_LOG_EVENTS = (
    ("INFO ", "GET /api/v2/orders/{order} 200 ({ms} ms) req={req}"),
    ("INFO ", "export started for account, format=csv, rows={n}000 req={req}"),
    ("WARN ", "retrying upstream call after {ms} ms (attempt 2/3) req={req}"),
    ("ERROR", "export failed: {error} timeout waiting for storage req={req}"),
    ("ERROR", "POST /api/v2/invoices/{invoice}/pay 409 duplicate payment req={req}"),
    ("DEBUG", "session refresh rejected: token expired {ms} ms ago req={req}"),
)


@dataclass(frozen=True)
class _Customer:
    name: str
    address: str
    host: str
    lang: _Lang
    tz: timezone
    mailer: tuple[str | None, str | None]


@dataclass
class _Thread:
    number: int
    customer: _Customer
    subject: str
    ids: list[str]
    date: datetime
    quote: list[str]  # first lines of the opening mail, for quoting


_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        (
            "a",
            "b",
            "v",
            "g",
            "d",
            "e",
            "e",
            "zh",
            "z",
            "i",
            "y",
            "k",
            "l",
            "m",
            "n",
            "o",
            "p",
            "r",
            "s",
            "t",
            "u",
            "f",
            "kh",
            "ts",
            "ch",
            "sh",
            "shch",
            "",
            "y",
            "",
            "e",
            "yu",
            "ya",
        ),
        strict=True,
    )
)


def _ascii_slug(name: str) -> str:
    """``Łukasz`` → ``lukasz``, ``Ольга`` → ``olga``: how people pick addresses."""
    out = []
    for ch in name.lower().replace("ł", "l").replace("ß", "ss"):
        ch = _CYRILLIC.get(ch, ch)
        out.append(unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode())
    return "".join(out)


def _customers(rng: random.Random, domain: str) -> list[_Customer]:
    """A fixed pool so senders repeat, as they do on a real helpdesk."""
    langs = [lang for lang in _LANGS for _ in range(lang.weight)]
    pool: list[_Customer] = []
    seen: set[str] = set()
    while len(pool) < CUSTOMER_POOL:
        lang = rng.choice(langs)
        first, last = rng.choice(lang.first_names), rng.choice(lang.last_names)
        host = f"{rng.choice(_COMPANIES)}.{domain}"
        f, la = _ascii_slug(first), _ascii_slug(last)
        local = rng.choice((f"{f}.{la}", f"{f[0]}{la}", f"{f}_{la}", f"{f}{rng.randrange(100)}"))
        if f"{local}@{host}" in seen:
            local = f"{local}{len(pool)}"
        seen.add(f"{local}@{host}")
        tz = timezone(timedelta(hours=rng.choice(_TZ_HOURS)))
        pool.append(_Customer(f"{first} {last}", f"{local}@{host}", host, lang, tz, rng.choice(_MAILERS)))
    return pool


def _slots(rng: random.Random, when: datetime) -> dict[str, object]:
    """Values shared by every sentence of one mail, so a mail stays consistent."""
    return {
        "order": f"A-{rng.randrange(10000, 99999)}",
        "invoice": f"INV-{when.year}-{rng.randrange(1000, 9999)}",
        "amount": f"{rng.randrange(9, 900)},{rng.randrange(100):02d} EUR",
        "version": f"4.{rng.randrange(12)}.{rng.randrange(9)}",
        "error": f"E{rng.randrange(1000, 9999)}",
        "product": rng.choice(_PRODUCTS),
        "browser": rng.choice(_BROWSERS),
        "day": (when - timedelta(days=rng.randrange(1, 20))).strftime("%Y-%m-%d"),
        "n": rng.randrange(2, 60),
    }


def _wrap(paragraph: str, width: int = 72) -> list[str]:
    """Greedy word wrap: textwrap is correct but too slow for 10,000 mails."""
    lines: list[str] = []
    line = ""
    for word in paragraph.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return lines


def _size(paras: list[list[str]]) -> int:
    return sum(len(line.encode()) + 1 for p in paras for line in p) + len(paras)


def _log_lines(rng: random.Random, when: datetime, slots: dict[str, object]) -> Iterator[str]:
    """An endless pasted log excerpt: what long support mails are mostly made of."""
    t = when - timedelta(minutes=rng.randrange(5, 300))
    while True:
        t += timedelta(milliseconds=rng.randrange(3, 9000))
        level, text = rng.choice(_LOG_EVENTS)
        worker, req = rng.randrange(1, 9), rng.getrandbits(40)
        yield (
            f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} {level} [worker-{worker}] "
            + text.format(**slots, req=f"{req:010x}", ms=rng.randrange(2, 30000))
        )


def _paragraphs(
    rng: random.Random,
    customer: _Customer,
    when: datetime,
    slots: dict[str, object],
    target: int,
    opener: str,
    quote: list[str],
) -> list[list[str]]:
    """Paragraphs (lists of lines) of about ``target`` bytes: prose, then pasted details."""
    lang = customer.lang
    head = [[rng.choice(lang.greetings)], _wrap(opener.format(**slots))]
    tail = [
        _wrap(rng.choice(lang.asks)),
        [rng.choice(lang.closings), customer.name],
        ["-- ", customer.name, customer.host.split(".")[0].title()],
    ]
    if quote:
        tail.append(quote)
    budget = target - _size(head) - _size(tail)
    details = rng.sample(lang.details, len(lang.details))
    middle: list[list[str]] = []
    while budget > 0 and details:  # overshoots by one sentence at most
        take: list[str] = []
        for _ in range(rng.randint(2, 4)):
            if budget <= 0 or not details:
                break
            take.append(details.pop().format(**slots))
            budget -= len(take[-1].encode()) + 1
        middle.append(_wrap(" ".join(take)))
        budget -= 4
    if budget > 200 and rng.random() < 0.5:
        info = [
            f"App version: {slots['version']}",
            f"Browser: {slots['browser']}",
            f"OS: {rng.choice(_SYSTEMS)}",
            f"Account: {customer.address}",
        ]
        middle.append(info)
        budget -= _size([info])
    if budget > 0:
        log = [lang.log_intro, ""]
        for line in _log_lines(rng, when, slots):
            if budget <= 0:
                break
            log.append(line)
            budget -= len(line) + 1
        middle.append(log)
    return head + middle + tail


def _text_part(rng: random.Random, text: str, subtype: str, charsets: tuple[str, ...]) -> MIMEText:
    """A text part in one of the language's charsets, with a varied transfer encoding."""
    name = charsets[0] if rng.random() < 0.7 else rng.choice(charsets)
    try:
        text.encode(name)
    except UnicodeEncodeError:
        name = "utf-8"
    cs = email_charset.Charset(name)
    if subtype == "html":  # HTML lines can be long: never 8bit
        cs.body_encoding = email_charset.QP if rng.random() < 0.8 else email_charset.BASE64
    elif text.isascii():
        cs.body_encoding = None
    else:
        cs.body_encoding = rng.choice((None, email_charset.QP, email_charset.BASE64))
    part = MIMEText(text, subtype, cs)
    del part["MIME-Version"]  # belongs to the top level only
    return part


def _html(paras: list[list[str]], quoted: bool) -> str:
    """The same text as the plain part, the way webmail clients render it."""
    out = ['<html><head><meta charset="utf-8"></head><body><div dir="ltr">']
    for i, para in enumerate(paras):
        body = "<br>\n".join(html.escape(line) for line in para)
        if quoted and i == len(paras) - 1:
            body = "<br>\n".join(html.escape(line.removeprefix(">").lstrip()) for line in para)
            out.append(f'<blockquote style="margin:0 0 0 .8ex;border-left:1px solid #ccc"><p>{body}</p></blockquote>')
        else:
            out.append(f"<p>{body}</p>")
    out.append("</div></body></html>\n")
    return "\n".join(out)


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + tag + body + zlib.crc32(tag + body).to_bytes(4, "big")


def _attachment(rng: random.Random, lang: str) -> MIMEBase:
    """50-500 KB of random bytes behind the right magic number, base64-encoded."""
    size = rng.randrange(50_000, 500_000)
    kind = rng.choice(("pdf", "png", "zip"))
    if kind == "pdf":
        data = (
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length "
            + str(size).encode()
            + b" >>\nstream\n"
            + rng.randbytes(size)
            + b"\nendstream\nendobj\n%%EOF\n"
        )
        part = MIMEBase("application", "pdf")
        name = "счёт.pdf" if lang == "ru" else f"invoice-{rng.randrange(1000, 9999)}.pdf"
    elif kind == "png":
        ihdr = (640).to_bytes(4, "big") + (480).to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
        data = (
            b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", rng.randbytes(size))
            + _png_chunk(b"IEND", b"")
        )
        part = MIMEBase("image", "png")
        name = "capture d'écran.png" if lang == "fr" else "screenshot.png"
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
            info = zipfile.ZipInfo("logs/app.log.1", date_time=(2024, 3, 1, 12, 0, 0))
            archive.writestr(info, rng.randbytes(size))
        data = buf.getvalue()
        part = MIMEBase("application", "zip")
        name = "logs.zip"
    del part["MIME-Version"]
    part.set_payload(data)
    encoders.encode_base64(part)
    filename: str | tuple[str, str, str] = name if name.isascii() else ("utf-8", "", name)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


def _encoded(value: str, charsets: tuple[str, ...], rng: random.Random) -> str | Header:
    """A header value, RFC 2047-encoded in one of the language's charsets if not ASCII."""
    if value.isascii():
        return value
    name = rng.choice(charsets)
    try:
        value.encode(name)
    except UnicodeEncodeError:
        name = "utf-8"
    return Header(value, name)


def _subject(rng: random.Random, lang: _Lang, thread: _Thread, how: str) -> str:
    """A reply subject carrying the ticket token where ``how`` says so."""
    prefix, token = rng.choice(lang.reply_prefixes), f"[#{thread.number}]"
    if how == "headers":
        return f"{prefix}{thread.subject}"
    if how == "token" or rng.random() < 0.5:
        return f"{prefix}{token} {thread.subject}"
    return f"{prefix}{thread.subject} {token}"


def _serialise(msg: MimeMessage, headers: list[tuple[str, str | Header]], boundary: str) -> bytes:
    """Envelope headers first and content headers last, as mail clients write them."""
    content = [(k, v) for k, v in msg.items() if k.lower().startswith("content-")]
    for k, _ in content:
        del msg[k]
    del msg["MIME-Version"]
    for k, v in [*headers, ("MIME-Version", "1.0"), *content]:
        msg[k] = v
    # Fixed boundaries: the stdlib draws them from the global random otherwise.
    for n, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"----=_Part_{boundary}_{n}")
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_POLICY).flatten(msg)
    return out.getvalue()


def generate(
    n: int,
    seed: int = 1,
    small: bool = False,
    support: str = "support@example.com",
    domain: str = "example.com",
) -> Iterator[Message]:
    """Yield ``n`` mails; the same arguments always yield the same bytes."""
    rng = random.Random(seed)
    customers = _customers(random.Random(f"customers:{seed}:{domain}"), domain)
    threads: list[_Thread] = []
    when = START
    for i in range(n):
        when += timedelta(seconds=rng.randrange(5, 900))
        with_html = rng.random() < HTML_RATIO
        with_attachment = rng.random() < ATTACHMENT_RATIO
        thread: _Thread | None = None
        slots = _slots(rng, when)
        if threads and rng.random() < FOLLOWUP_RATIO:
            thread = rng.choice(threads[-50:] if rng.random() < 0.8 else threads)
            customer, lang = thread.customer, thread.customer.lang
            how = rng.choices(("both", "headers", "token"), (4, 3, 3))[0]
            subject = _subject(rng, lang, thread, how)
            opener = rng.choice(lang.nudges)
            date = thread.date.astimezone(customer.tz).strftime("%Y-%m-%d %H:%M")
            quote = [lang.quote_intro.format(date=date, name=customer.name)]
            quote += [f"> {line}" if line else ">" for line in thread.quote]
        else:
            customer = rng.choice(customers)
            lang = customer.lang
            subject, opener = rng.choice(lang.topics)
            subject = subject.format(**slots)
            quote = []
        paras = _paragraphs(rng, customer, when, slots, rng.randrange(1024, 4700), opener, quote)
        plain = _text_part(rng, "\n\n".join("\n".join(p) for p in paras) + "\n", "plain", lang.charsets)
        body: MimeMessage = plain
        if with_html:
            html_part = _text_part(rng, _html(paras, bool(quote)), "html", ("utf-8",))
            body = MIMEMultipart("alternative", _subparts=[plain, html_part])
        if with_attachment and not small:
            part_rng = random.Random(f"{seed}:{i}:attachment")
            body = MIMEMultipart("mixed", _subparts=[body, _attachment(part_rng, lang.code)])
        unique = f"{when:%Y%m%d%H%M%S}.{seed:x}.{i:x}.{rng.getrandbits(32):08x}"
        message_id = f"<{unique}@{customer.host}>"
        headers: list[tuple[str, str | Header]] = [
            ("From", formataddr((customer.name, customer.address), charset="utf-8")),
            ("To", support),
        ]
        if rng.random() < 0.1:
            colleagues = [c for c in customers if c.host == customer.host and c != customer]
            if colleagues:
                cc = rng.choice(colleagues)
                headers.append(("Cc", formataddr((cc.name, cc.address), "utf-8")))
        headers += [
            ("Subject", _encoded(subject, lang.charsets, rng)),
            ("Date", format_datetime(when.astimezone(customer.tz))),
            ("Message-ID", message_id),
        ]
        if thread is not None and how != "token":  # "token": a client that drops them
            headers.append(("In-Reply-To", thread.ids[-1]))
            headers.append(("References", " ".join(thread.ids[:1] + thread.ids[1:][-4:])))
        if customer.mailer[0] and customer.mailer[1]:
            headers.append((customer.mailer[0], customer.mailer[1]))
        headers.append(("Content-Language", lang.code))
        raw = _serialise(body, headers, f"{seed:x}_{i:x}")
        if thread is None:
            opening = [line for p in paras[1:3] for line in (*p, "")][:-1]
            thread = _Thread(len(threads) + 1, customer, subject, [], when, opening)
            threads.append(thread)
            kind = NEW
        else:
            kind = FOLLOWUP
        thread.ids.append(message_id)
        yield Message(customer.address, [support], raw, message_id, kind, thread.number)


def write_eml(messages: Iterator[Message], directory: Path) -> int:
    """One ``NNNNNN.eml`` per mail, in stream order; returns how many."""
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, message in enumerate(messages, 1):
        (directory / f"{count:06d}.eml").write_bytes(message.raw)
    return count


def write_mbox(messages: Iterator[Message], path: Path) -> int:
    """One mbox (LF line endings, ``>From`` escaping by the stdlib); returns how many.

    The From_ line carries the envelope sender and a fixed date, so the file is
    byte-identical for one seed (the stdlib would stamp the current time).
    """
    path.unlink(missing_ok=True)
    box = mailbox.mbox(path, create=True)
    count = 0
    try:
        for message in messages:
            count += 1
            from_line = f"From {message.mail_from} Mon Mar  4 07:30:00 2024\n".encode()
            box.add(from_line + message.raw.replace(b"\r\n", b"\n"))
        box.flush()
    finally:
        box.close()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a deterministic helpdesk mail corpus.")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--small", action="store_true", help="no attachments")
    parser.add_argument("--support", default="support@example.com")
    parser.add_argument("--domain", default="example.com")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="directory for .eml files")
    target.add_argument("--mbox", type=Path, help="mbox file (replaced)")
    args = parser.parse_args(argv)
    messages = generate(args.count, args.seed, args.small, args.support, args.domain)
    count = write_eml(messages, args.out) if args.out else write_mbox(messages, args.mbox)
    print(f"wrote {count} messages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
