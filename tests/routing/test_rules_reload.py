"""Editing rule files on a live system: a bad edit keeps the old rules, a good one applies without a restart."""

from __future__ import annotations

import logging
import os
import signal

from sqlalchemy import select

from mailgate.routing import plugin as rules_plugin
from mailgate.storage import db
from mailgate.storage.models import Ticket
from tests.helpers import make_mail, wait_for
from tests.rulekit import last_ticket, rules_config, write_rules

INVOICES_TO_BILLING = """\
[[rule]]
name = "invoices"
queue = "billing"
match = { subject = { contains = "invoice" } }
"""
INVOICES_TO_SALES = INVOICES_TO_BILLING.replace('"billing"', '"sales"')
BAD_EDITS = {
    "syntax error": ('[[rule]]\nname = "invoices\nqueue = "sales"\nmatch = {}\n', ":2: syntax error"),
    "bad regex": (
        '[[rule]]\nname = "invoices"\nqueue = "sales"\nmatch = { subject = { regex = \'([\' } }\n',
        ":4: rule 'invoices': match.subject.regex: bad regex '(['",
    ),
    "unknown queue": (
        '[[rule]]\nname = "invoices"\nqueue = "salse"\nmatch = {}\n',
        ":3: rule 'invoices': queue: unknown queue 'salse'",
    ),
}


def rewrite(path, text):
    """What an editor does; the mtime is moved on so that even a same-size rewrite is seen."""
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_good_edit_applies_to_the_next_message_without_a_restart(tmp_path, make_config, harness_factory):
    directory = write_rules(tmp_path / "rules", route=INVOICES_TO_BILLING)
    h = harness_factory(rules_config(make_config, directory))
    holder = h.runtime.services.rules
    h.deliver(make_mail(subject="invoice 1"))
    assert last_ticket(h)["queue"] == "billing"
    assert holder.poll(settle=0) is False, "nothing changed, nothing reloaded"
    rewrite(directory / "route.toml", INVOICES_TO_SALES)
    assert holder.poll(settle=0) is True
    h.deliver(make_mail(subject="invoice 2"))
    assert last_ticket(h)["queue"] == "sales"


def test_a_bad_edit_is_logged_with_file_and_line_and_the_old_rules_stay(tmp_path, make_config, harness_factory, caplog):
    directory = write_rules(tmp_path / "rules", route=INVOICES_TO_BILLING)
    h = harness_factory(rules_config(make_config, directory))
    holder = h.runtime.services.rules
    before = holder.current
    for text, wanted in BAD_EDITS.values():
        rewrite(directory / "route.toml", text)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="mailgate.rules"):
            assert holder.poll(settle=0) is True
        assert len(caplog.records) == 1
        assert caplog.records[0].problem.startswith(f"{directory / 'route.toml'}{wanted}")
        assert holder.current is before
        assert holder.poll(settle=0) is False, "the same bad files are not reloaded (nor logged) every second"
        h.deliver(make_mail(subject="invoice"))
        assert last_ticket(h)["queue"] == "billing"


def test_a_new_file_and_a_removed_file_are_changes_too(tmp_path, make_config, harness_factory):
    directory = write_rules(tmp_path / "rules", route=INVOICES_TO_BILLING)
    h = harness_factory(rules_config(make_config, directory))
    holder = h.runtime.services.rules
    write_rules(directory, **{"05-first": INVOICES_TO_SALES.replace("invoices", "early")})
    assert holder.poll(settle=0) is True
    assert [r.name for r in holder.current.rules] == ["early", "invoices"]
    (directory / "route.toml").unlink()
    assert holder.poll(settle=0) is True
    assert [r.name for r in holder.current.rules] == ["early"]


def test_sighup_reloads_at_once(tmp_path, make_config, harness_factory):
    directory = write_rules(tmp_path / "rules", route=INVOICES_TO_BILLING)
    h = harness_factory(rules_config(make_config, directory))
    (directory / "route.toml").write_text(INVOICES_TO_SALES)
    rules_plugin.reload(h.runtime)
    h.deliver(make_mail(subject="invoice"))
    assert last_ticket(h)["queue"] == "sales"


def queue_of(db_url, number):
    engine = db.make_engine(db_url)
    try:
        with db.make_sessionmaker(engine)() as s:
            ticket = s.scalars(select(Ticket).where(Ticket.number == number)).first()
            return ticket.queue if ticket is not None else None
    finally:
        engine.dispose()


def test_a_running_daemon_survives_bad_edits_and_takes_the_fix(tmp_path, make_config, daemon_factory, db_url):
    directory = write_rules(tmp_path / "rules", route=INVOICES_TO_BILLING)
    path = directory / "route.toml"
    daemon = daemon_factory(rules_config(make_config, directory))
    daemon.send(make_mail(subject="invoice 1"))
    wait_for(lambda: queue_of(db_url, 1) == "billing", timeout=30, message="ticket 1 in billing")

    for text, wanted in BAD_EDITS.values():
        rewrite(path, text)
        wait_for(lambda w=wanted: f"{path}{w}" in daemon.log(), timeout=30, message=f"log line {wanted!r}")
    assert "rule file error; the previous rules stay in force" in daemon.log()
    daemon.send(make_mail(subject="invoice 2"))
    wait_for(lambda: queue_of(db_url, 2) == "billing", timeout=30, message="ticket 2 routed by the old rules")

    loaded = daemon.log().count('msg="rules loaded"')
    rewrite(path, INVOICES_TO_SALES)
    wait_for(lambda: daemon.log().count('msg="rules loaded"') > loaded, timeout=30, message="the fix loaded")
    daemon.send(make_mail(subject="invoice 3"))
    wait_for(lambda: queue_of(db_url, 3) == "sales", timeout=30, message="ticket 3 routed by the new rules")

    rewrite(path, INVOICES_TO_BILLING)
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.log().count('msg="rules loaded"') > loaded + 1, timeout=30, message="SIGHUP reload")
    assert daemon.alive
