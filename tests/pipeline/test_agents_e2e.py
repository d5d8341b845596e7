"""A whole conversation through a real `mailgate serve` over SMTP, read from the sent maildir.

Alice writes; Bob is notified and takes the ticket with an answer typed above
the quoted notification; Alice gets a clean answer from the support address
and replies; Bob closes it; Alice gets the resolved notice and rates it. No one
opens anything but a mail client.
"""

from __future__ import annotations

import email
import json
import mailbox
from email import policy
from email.message import EmailMessage

from tests.helpers import address_of, mailgate, make_mail, wait_for

AGENTS = [{"address": "bob@example.com", "name": "Bob"}, {"address": "carol@example.com", "name": "Carol"}]
QUEUES = [{"name": "support", "agents": ["bob@example.com", "carol@example.com"]}]


class Inbox:
    """What one person received: the mails in the sent maildir addressed to them."""

    def __init__(self, config, address):
        self.directory = config.parent / "data" / "sent"
        self.address = address

    def mails(self) -> list[EmailMessage]:
        if not all((self.directory / sub).is_dir() for sub in ("tmp", "new", "cur")):
            return []  # the sender makes its three folders on first delivery
        found = []
        for _key, item in mailbox.Maildir(str(self.directory), create=False).iteritems():
            message = email.message_from_bytes(item.as_bytes(), policy=policy.default)
            if self.address in message.get_all("Delivered-To", []):
                found.append(message)
        return found

    def wait(self, what: str, *words: str) -> EmailMessage:
        """The one mail whose text holds every word (waiting until it arrives)."""

        def match() -> EmailMessage | None:
            found = [m for m in self.mails() if all(w in text(m) for w in words)]
            assert len(found) <= 1, f"several mails for {what}"
            return found[0] if found else None

        return wait_for(match, timeout=60, message=f"{what} in the mailbox of {self.address}")


def text(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def reply_to(message: EmailMessage, body: str, sender: str, quote: bool = True) -> bytes:
    """Press Reply: to the Reply-To, the subject with Re:, the thread headers, the quote below."""
    quoted = "\n".join("> " + line for line in text(message).splitlines()) if quote else ""
    intro = f"On Mon, Jan 5, 2026 at 9:00 AM {message['From']} wrote:\n" if quote else ""
    return make_mail(
        subject="Re: " + message["Subject"],
        sender=sender,
        to=message["Reply-To"],
        in_reply_to=message["Message-ID"],
        references=message["Message-ID"],
        body=f"{body}\n\n{intro}{quoted}\n",
    )


def show(config) -> dict:
    result = mailgate(config, "tickets", "show", "1", "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def test_a_ticket_from_new_to_resolved_with_nothing_but_mail_clients(make_config, daemon_factory):
    config = make_config(agents=AGENTS, queues=QUEUES)
    daemon = daemon_factory(config)
    alice, bob = Inbox(config, "alice@customer.example"), Inbox(config, "bob@example.com")

    daemon.send(make_mail(subject="Printer on fire", body="Hello,\nmy printer is on fire.\n"))
    ack = alice.wait("the acknowledgment", "Your request is now ticket")
    assert ack["Subject"] == "[#1] Printer on fire"
    notification = bob.wait("the new-ticket notification", "New ticket")
    assert "my printer is on fire." in text(notification)
    signed = address_of(notification["Reply-To"])
    assert signed.startswith("support+1.")

    daemon.send(
        reply_to(
            notification,
            "#take\nHello Alice,\n\nplease unplug the printer and wait an hour.\n\nBob",
            "Bob <bob@example.com>",
        ),
        mail_from="bob@example.com",
        rcpt=[signed],
    )
    answer = alice.wait("the agent's answer", "please unplug")
    sender = answer["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Bob via Example Support", "support@example.com")
    raw = answer.as_string()
    for leak in ("bob@example.com", signed, "#take", "New ticket", "wrote:"):
        assert leak not in raw
    assert "please unplug the printer and wait an hour." in text(answer)
    transcript = bob.wait("the transcript of #take", "> #take")
    assert "ok: assigned to Bob <bob@example.com>" in text(transcript)

    daemon.send(
        reply_to(answer, "Done. It is cold now, but it does not print.", "Alice <alice@customer.example>"),
        rcpt=[answer["Reply-To"]],
    )
    customer_reply = bob.wait("the notification of Alice's reply", "it does not print.")
    assert "it does not print." in text(customer_reply)
    assert "please unplug" not in text(customer_reply).split("it does not print.")[0]

    daemon.send(
        reply_to(customer_reply, "#close\nThe paper tray was empty; all good now.", "Bob <bob@example.com>"),
        mail_from="bob@example.com",
        rcpt=[customer_reply["Reply-To"]],
    )
    closing_answer = alice.wait("the closing answer", "The paper tray was empty")
    assert "#close" not in text(closing_answer)
    assert bob.wait("the transcript of #close", "> #close")
    notice = alice.wait("the resolved notice", "is now resolved")
    assert "good or bad" in text(notice)

    daemon.send(reply_to(notice, "good", "Alice <alice@customer.example>"), rcpt=[notice["Reply-To"]])
    data = wait_for(lambda: (d := show(config))["csat"] == "good" and d, timeout=60, message="the rating")
    assert data["status"] == "resolved" and data["assignee"] == "bob@example.com"
    assert data["first_response_at"] and data["resolved_at"]
    assert data["first_response_at"] <= data["resolved_at"]
    assert [m["direction"] for m in data["messages"]] == ["in", "out", "in", "out", "in"]
    assert data["messages"][1]["text"] == "Hello Alice,\n\nplease unplug the printer and wait an hour.\n\nBob"
