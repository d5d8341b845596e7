"""The conversation carries everything, over real SMTP and a real `mailgate serve`.

The mails agents and customers send are the shapes real clients write
(tests/data/clients/: Gmail, Outlook desktop and on the web, Thunderbird,
Apple Mail). What arrives is read back from the sent maildir.
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers import make_mail, wait_for
from tests.pipeline.test_agents_e2e import Inbox as _Inbox
from tests.pipeline.test_agents_e2e import reply_to, text

CLIENTS = Path(__file__).resolve().parents[1] / "data" / "clients"
AGENTS = [{"address": "bob@example.com", "name": "Bob"}]
QUEUES = [{"name": "support", "agents": ["bob@example.com"]}]
PDF = (CLIENTS / "reset-guide.pdf").read_bytes()
PNG = (CLIENTS / "screenshot.png").read_bytes()
ANSWERS = [
    "gmail_answer.eml",
    "outlook_desktop_answer.eml",
    "outlook_web_answer.eml",
    "thunderbird_answer.eml",
    "apple_mail_answer.eml",
]


class Inbox(_Inbox):
    """The same inbox, with a wait generous enough for a machine shared with other test runs."""

    def wait(self, what: str, *words: str) -> EmailMessage:
        def match() -> EmailMessage | None:
            found = [m for m in self.mails() if all(w in text(m) for w in words)]
            assert len(found) <= 1, f"several mails for {what}"
            return found[0] if found else None

        return wait_for(match, timeout=180, message=f"{what} in the mailbox of {self.address}")


def fixture_reply(name: str, notification: EmailMessage) -> bytes:
    """A client's answer to ``notification``, as that client would send it."""
    body = (CLIENTS / name).read_text()
    subject = notification["Subject"]
    replaced = (
        body.replace("@@TO@@", notification["Reply-To"])
        .replace("@@SUBJECT@@", subject)
        .replace("@@IN_REPLY_TO_BARE@@", notification["Message-ID"].strip("<>"))
        .replace("@@IN_REPLY_TO@@", notification["Message-ID"])
    )
    return replaced.replace("\n", "\r\n").encode()


def files(message: EmailMessage) -> dict[str, bytes]:
    """Every attachment and inline file of a mail, by name, as bytes."""
    found = {}
    for part in message.walk():
        name = part.get_filename()
        if name and not part.is_multipart():
            found[name] = part.get_payload(decode=True)
    return found


def html(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()


def customer_ticket(daemon, bob: Inbox, number: int, subject: str) -> EmailMessage:
    daemon.send(make_mail(subject=subject, body=f"Hello,\nmy printer number {number} is on fire.\n"))
    return bob.wait(f"the notification of ticket {number}", f"printer number {number} is on fire")


def test_the_agents_notification_carries_the_customers_attachment_and_inline_image_byte_identical(
    make_config, daemon_factory
):
    config = make_config(agents=AGENTS, queues=QUEUES)
    daemon = daemon_factory(config)
    bob = Inbox(config, "bob@example.com")

    daemon.send((CLIENTS / "gmail_customer_first.eml").read_bytes().replace(b"\n", b"\r\n"))
    notification = bob.wait("the new-ticket notification", "New ticket")
    got = files(notification)
    assert got == {"screenshot.png": PNG, "invoice-2026-001.pdf": PDF}
    assert "Attached: screenshot.png, invoice-2026-001.pdf" in text(notification)
    types = {p.get_filename(): p.get_content_type() for p in notification.walk() if p.get_filename()}
    assert types == {"screenshot.png": "image/png", "invoice-2026-001.pdf": "application/pdf"}


def test_files_past_the_notification_limit_are_listed_by_name_size_and_type(make_config, daemon_factory):
    config = make_config(agents=AGENTS, queues=QUEUES, notify={"max_attachment_bytes": "100B"})
    daemon = daemon_factory(config)
    bob = Inbox(config, "bob@example.com")
    big = b"x" * 300 + b"\n"
    daemon.send(
        make_mail(
            body="Logs attached.\n",
            attachments=[("small.txt", "text/plain", b"tiny log\n"), ("big.log", "text/plain", big)],
        )
    )
    notification = bob.wait("the new-ticket notification", "New ticket")
    assert files(notification) == {"small.txt": b"tiny log\n"}
    body = text(notification)
    assert "Attached: small.txt" in body
    assert "big.log (301 B, text/plain)" in body
    assert "#files" in body


@pytest.mark.parametrize("client", ANSWERS)
def test_the_customers_copy_of_an_answer_holds_its_file_formatting_and_no_quoted_history(
    client, make_config, daemon_factory
):
    config = make_config(agents=AGENTS, queues=QUEUES)
    daemon = daemon_factory(config)
    alice, bob = Inbox(config, "alice@customer.example"), Inbox(config, "bob@example.com")
    notification = customer_ticket(daemon, bob, 1, "Printer on fire")

    daemon.send(fixture_reply(client, notification), mail_from="bob@example.com", rcpt=[notification["Reply-To"]])
    answer = alice.wait("the relayed answer", "press reset for ten seconds")
    assert files(answer).get("reset-guide.pdf") == PDF
    assert not [p for p in answer.walk() if p.get_content_type() == "message/rfc822"]
    assert not any(name.endswith((".eml", ".msg")) for name in files(answer))
    page = html(answer)
    assert "<b>Unplug</b>" in page or "<strong>Unplug</strong>" in page
    assert page.count("<li>") == 2 and "press reset for ten seconds" in page
    assert '<a href="https://help.example.com/reset">reset guide</a>' in page
    plain = text(answer)
    assert "Unplug the printer first" in plain and "press reset for ten seconds" in plain
    for leak in ("my printer is on fire", "New ticket", "wrote:", "#take", "From: Example Support"):
        assert leak not in page, leak
        assert leak not in plain, leak
    transcript = bob.wait("the transcript", "> #take")
    assert "Your answer was sent to: alice@customer.example" in text(transcript)


def test_an_inline_image_in_the_answer_travels_with_it_and_is_shown_by_cid(make_config, daemon_factory):
    config = make_config(agents=AGENTS, queues=QUEUES)
    daemon = daemon_factory(config)
    alice, bob = Inbox(config, "alice@customer.example"), Inbox(config, "bob@example.com")
    notification = customer_ticket(daemon, bob, 1, "Printer on fire")
    daemon.send(
        fixture_reply("outlook_desktop_answer.eml", notification),
        mail_from="bob@example.com",
        rcpt=[notification["Reply-To"]],
    )
    answer = alice.wait("the relayed answer", "press reset for ten seconds")
    assert files(answer)["image001.png"] == PNG
    image = next(p for p in answer.walk() if p.get_filename() == "image001.png")
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html(answer)
    related = [p for p in answer.walk() if p.get_content_type() == "multipart/related"]
    assert related and any(p.get_content_type() == "text/html" for p in related[0].iter_parts())


def test_an_executable_is_not_relayed_and_the_transcript_says_so(make_config, daemon_factory):
    config = make_config(agents=AGENTS, queues=QUEUES, relay={"block_types": [".js"]})
    daemon = daemon_factory(config)
    alice, bob = Inbox(config, "alice@customer.example"), Inbox(config, "bob@example.com")
    notification = customer_ticket(daemon, bob, 1, "Printer on fire")
    exe = b"MZ\x90\x00\x03" + b"\x00" * 55 + b"\x80\x00\x00\x00" + b"\x00" * 64 + b"PE\x00\x00L\x01" + b"\x00" * 200
    reply = make_mail(
        subject="Re: " + notification["Subject"],
        sender="Bob <bob@example.com>",
        to=notification["Reply-To"],
        in_reply_to=notification["Message-ID"],
        body="Hello Alice,\nhere is the driver and the guide.\n",
        attachments=[
            ("driver.pdf", "application/pdf", exe),
            ("reset-guide.pdf", "application/pdf", PDF),
            ("fix.js", "text/javascript", b"alert(1)\n"),
        ],
    )
    daemon.send(reply, mail_from="bob@example.com", rcpt=[notification["Reply-To"]])
    answer = alice.wait("the relayed answer", "here is the driver")
    assert files(answer) == {"reset-guide.pdf": PDF}
    transcript = bob.wait("the transcript", "Not sent to the customer")
    body = text(transcript)
    assert "driver.pdf" in body and "an executable" in body
    assert "fix.js" in body and ".js files are blocked" in body
    assert transcript["Subject"] == "[#1] Commands done: Printer on fire"


def test_every_mail_of_a_conversation_has_one_message_id_date_and_top_mime_version(make_config, daemon_factory):
    config = make_config(agents=AGENTS, queues=QUEUES)
    daemon = daemon_factory(config)
    alice, bob = Inbox(config, "alice@customer.example"), Inbox(config, "bob@example.com")
    notification = customer_ticket(daemon, bob, 1, "Imprimante en feu: ça brûle")
    daemon.send(
        fixture_reply("apple_mail_answer.eml", notification),
        mail_from="bob@example.com",
        rcpt=[notification["Reply-To"]],
    )
    alice.wait("the relayed answer", "press reset for ten seconds")
    from tests import mail_structure

    def every_mail() -> list[bytes] | None:
        # The acknowledgment and the agent's transcript are separate outbox rows that may land after the answer.
        sent = sorted((config.parent / "data" / "sent").rglob("*/*"))
        raws = [p.read_bytes() for p in sent if p.parent.name in ("new", "cur")]
        return raws if len(raws) >= 4 else None  # acknowledgment, notification, answer, transcript

    raws = wait_for(every_mail, timeout=180, message="the four mails of the conversation")
    for raw in raws:
        assert mail_structure.problems(raw) == []
        assert email.message_from_bytes(raw, policy=policy.default)["Message-ID"]


def test_an_agents_files_command_mails_every_file_of_the_ticket_in_batches_under_the_limit(make_config, daemon_factory):
    config = make_config(agents=AGENTS, queues=QUEUES, notify={"max_attachment_bytes": "100B"})
    daemon = daemon_factory(config)
    bob = Inbox(config, "bob@example.com")
    first, second, huge = b"a" * 59 + b"\n", b"b" * 59 + b"\n", b"c" * 300 + b"\n"
    daemon.send(
        make_mail(
            body="Three logs attached.\n",
            attachments=[
                ("first.log", "text/plain", first),
                ("second.log", "text/plain", second),
                ("huge.log", "text/plain", huge),
            ],
        )
    )
    notification = bob.wait("the new-ticket notification", "New ticket")
    assert files(notification) == {"first.log": first}
    assert "second.log (60 B, text/plain)" in text(notification) and "huge.log (301 B" in text(notification)

    daemon.send(
        reply_to(notification, "#files\n", "Bob <bob@example.com>", quote=False),
        mail_from="bob@example.com",
        rcpt=[notification["Reply-To"]],
    )

    def batches() -> list[EmailMessage] | None:
        found = sorted((m for m in bob.mails() if "Files (part" in m["Subject"]), key=lambda m: m["Subject"])
        return found if len(found) == 2 else None

    part1, part2 = wait_for(batches, timeout=180, message="the two mails of #files")
    assert part1["Subject"] == "[#1] Files (part 1 of 2): Printer on fire"
    assert files(part1) == {"first.log": first} and files(part2) == {"second.log": second}
    assert "huge.log (301 B, text/plain)" in text(part1)
    assert "ok: the ticket's files follow" in text(bob.wait("the transcript", "> #files"))
