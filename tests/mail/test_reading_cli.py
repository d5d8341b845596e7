"""``mailgate mail parse`` prints the reading as JSON; the stored ticket agrees with it; no stored text
field of any test mail holds a surrogate escape (stored through the real ``mailgate ingest --mbox`` import)."""

from __future__ import annotations

import json
import mailbox
import re
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from mailgate.storage import models
from tests.helpers import mailgate
from tests.reading import READING

SURROGATE = re.compile("[\ud800-\udfff]")
FIXTURES = sorted(p.name for p in READING.glob("*.eml"))
FIELDS = {
    "from",
    "from_name",
    "to",
    "cc",
    "reply_to",
    "subject",
    "date",
    "message_id",
    "in_reply_to",
    "references",
    "new_text",
    "text",
    "html",
    "attachments",
    "classification",
    "encrypted",
    "charsets",
    "defects",
}


def parsed(config: Path, path: Path) -> dict:
    result = mailgate(config, "mail", "parse", str(path), "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def import_all(config: Path, tmp_path: Path, names: list[str]) -> None:
    box = mailbox.mbox(tmp_path / "reading.mbox")
    for name in names:
        box.add((READING / name).read_bytes())
    box.flush()
    box.close()
    result = mailgate(config, "ingest", "--mbox", str(tmp_path / "reading.mbox"))
    assert result.returncode == 0, result.stderr


def test_mail_parse_json_has_the_documented_shape(config_file):
    data = parsed(config_file, READING / "attached_message.eml")
    assert set(data) == FIELDS
    assert data["from"] == "fwd@example.com" and data["html"] is None
    assert data["classification"] == {"kind": "human", "automatic": False, "reason": ""}
    assert [(a["name"], a["type"], a["part_of"]) for a in data["attachments"]] == [
        ("The original.eml", "message/rfc822", None),
        ("data.csv", "text/csv", "The original.eml"),
    ]
    assert all(len(a["sha256"]) == 64 and a["size"] > 0 for a in data["attachments"])
    assert data["charsets"][0] == {"part": "2", "type": "text/plain", "declared": "", "used": "ascii", "how": "utf-8"}


@pytest.mark.parametrize(
    "name", ["attachment_names.eml", "attached_message.eml", "header_8bit_gbk.eml", "iso2022jp.eml", "html_only.eml"]
)
def test_tickets_show_agrees_with_mail_parse_for_the_same_mail(config_file, tmp_path, name):
    reading = parsed(config_file, READING / name)
    import_all(config_file, tmp_path, [name])
    result = mailgate(config_file, "tickets", "show", "1", "--format", "json")
    assert result.returncode == 0, result.stderr
    [message] = json.loads(result.stdout)["messages"]
    for key in ("from", "to", "cc", "subject", "date", "message_id"):
        assert message[key] == reading[key], key
    assert message["text"] == reading["new_text"]
    stored = [(a["filename"], a["content_type"], a["size"], a["sha256"], a["part_of"]) for a in message["attachments"]]
    assert stored == [(a["name"], a["type"], a["size"], a["sha256"], a["part_of"]) for a in reading["attachments"]]


def test_no_stored_text_field_of_any_test_mail_holds_a_surrogate_escape(config_file, tmp_path, harness_factory):
    import_all(config_file, tmp_path, FIXTURES)
    harness = harness_factory(config_file)
    found, rows = [], 0
    with harness.session() as session:
        for model in (models.Customer, models.Ticket, models.Message, models.Attachment, models.Event):
            columns = [c.key for c in inspect(model).columns]
            for row in session.scalars(select(model)):
                rows += 1
                for column in columns:
                    text = json.dumps(getattr(row, column), ensure_ascii=False, default=str)
                    if SURROGATE.search(text):
                        found.append((model.__name__, column, text[:80]))
        stored = session.scalars(select(models.Message)).all()
    assert found == []
    held = harness_events(harness)  # three auto-replies and the feedback report open no ticket
    assert (len(stored), len(held)) == (len(FIXTURES) - 4, 4)
    assert rows > len(FIXTURES)


def harness_events(harness) -> list:
    with harness.session() as session:
        return session.scalars(
            select(models.Event).where(models.Event.kind.in_(("mail.automatic_held", "bounce.unmatched")))
        ).all()
