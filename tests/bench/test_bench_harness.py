"""The benchmark's own parts do what the figures assume: the load client delivers every mail
byte for byte, the reference sink stores each one, the lookup database threads every reference."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import corpus
import lookups
import servers
from load import Outgoing, prepare, run_load, stuff


def test_dot_stuffing_doubles_a_leading_dot_and_ends_with_the_dot_line():
    assert stuff(b"a\r\n.b\r\n..c\r\n.\r\n") == b"a\r\n..b\r\n...c\r\n..\r\n.\r\n"
    assert stuff(b".first\nno crlf") == b"..first\r\nno crlf\r\n.\r\n"


def test_the_load_client_delivers_every_mail_to_the_reference_sink(tmp_path):
    messages = prepare(30, seed=5, small=True)
    messages.append(
        Outgoing.from_raw("x@customer.example", ["support@example.com"], b"Subject: dots\r\n\r\n.one\r\n..two\r\n")
    )
    sink = servers.reference(tmp_path).start()
    try:
        result = asyncio.run(run_load("127.0.0.1", sink.port, messages, clients=4, per_connection=5, max_seconds=60))
    finally:
        sink.stop()
    assert (result.accepted, dict(result.errors), result.timed_out) == (31, {}, False)
    assert len(result.latencies) == 31 and result.percentile(50) <= result.percentile(99)
    stored = sorted(p.read_bytes() for p in (tmp_path / "sink" / "new").iterdir())
    sent = sorted(
        [m.raw for m in corpus.generate(30, seed=5, small=True)] + [b"Subject: dots\r\n\r\n.one\r\n..two\r\n"]
    )
    assert stored == sent


def test_the_load_client_stops_at_its_time_bound(tmp_path):
    sink = servers.reference(tmp_path).start()
    try:
        result = asyncio.run(
            run_load("127.0.0.1", sink.port, prepare(50, small=True), clients=2, per_connection=10, max_seconds=0)
        )
    finally:
        sink.stop()
    assert result.sent == 0 and result.timed_out


def test_the_lookup_database_threads_every_token_and_reference(tmp_path):
    url = f"sqlite:///{tmp_path / 'lookup.sqlite3'}"
    lookups.build(url, 300)
    timings = lookups.time_lookups(url, 300, 60)  # raises unless every lookup finds its ticket
    assert set(timings) == {"token_us", "references_us"}
    assert "USING" in lookups.query_plans(url)["token"]
