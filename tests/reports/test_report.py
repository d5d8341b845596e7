"""`mailgate report`: every figure checked against one computed by hand on a fixture of tickets.

Queue ``support`` counts business hours (Mon–Fri 09:00–17:00 UTC; first
response 4h, resolution 16h); ``sales`` has no SLA and counts elapsed time.
The window is 2026-01-03 12:00 .. 2026-02-02 12:00 (30 days).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from mailgate.domain.sla import parse_sla
from mailgate.reports import report
from mailgate.storage.models import Customer, Ticket
from tests.helpers import mailgate

WEEKDAYS = {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}
SLA = {
    "queues": {
        "support": {
            "first_response": "4h",
            "resolution": "16h",
            "business_hours": {"timezone": "UTC", "hours": WEEKDAYS},
        }
    }
}
SINCE, UNTIL = datetime(2026, 1, 3, 12, tzinfo=UTC), datetime(2026, 2, 2, 12, tzinfo=UTC)


def at(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# (queue, customer, created, first response, resolved, csat, time spent in seconds, spam)
FIXTURE = [
    # 1h to answer, 8 business hours to resolve (Mon 09:00 → Mon 17:00)
    ("support", "a@x.example", at(1, 12, 9), at(1, 12, 10), at(1, 12, 17), "good", 1800, False),
    # Mon 16:00 → Tue 11:00 is 1h + 2h = 3h; → Wed 12:00 is 1h + 8h + 3h = 12h
    ("support", "a@x.example", at(1, 12, 16), at(1, 13, 11), at(1, 14, 12), "2", 3600, False),
    # Fri 16:00 → Mon 14:00 is 1h + 5h = 6h (due Mon 12:00: breached); → Tue 09:00 is 1h + 8h = 9h
    ("support", "b@y.example", at(1, 16, 16), at(1, 19, 14), at(1, 20, 9), "5", 0, False),
    # never answered: due Wed 14:00, breached by the end of the window
    ("support", "c@z.example", at(1, 21, 10), None, None, None, 0, False),
    # opened before the window, resolved in it: Sat 12-20 → Mon 01-05 10:00 is 40h + 40h + 1h = 81h
    ("support", "d@w.example", at(12, 20, 10, year=2025), at(12, 22, 9, 30, year=2025), at(1, 5, 10), None, 0, False),
    # around the clock: 2.5h to answer, 24h to resolve
    ("sales", "a@x.example", at(1, 24, 10), at(1, 24, 12, 30), at(1, 25, 10), None, 0, False),
    # spam counts nowhere
    ("sales", "spam@bad.example", at(1, 24, 11), None, None, None, 0, True),
]


@pytest.fixture
def fixture_config(make_config):
    return make_config(sla=SLA)


@pytest.fixture
def tickets(harness_factory, fixture_config):
    harness = harness_factory(fixture_config)
    sla = parse_sla(harness.runtime.config)
    with harness.session() as session, session.begin():
        customers: dict[str, Customer] = {}
        for number, (queue, who, created, first, resolved, csat, spent, spam) in enumerate(FIXTURE, start=1):
            if who not in customers:
                customers[who] = Customer(address=who, created_at=created)
                session.add(customers[who])
                session.flush()
            due = sla.deadlines(queue, "normal", created)
            session.add(
                Ticket(
                    number=number,
                    subject=f"ticket {number}",
                    queue=queue,
                    customer_id=customers[who].id,
                    status="resolved" if resolved else "open",
                    created_at=created,
                    updated_at=resolved or created,
                    first_response_at=first,
                    resolved_at=resolved,
                    first_response_due_at=due.first_response,
                    resolution_due_at=due.resolution,
                    csat=csat,
                    time_spent=spent,
                    spam=spam,
                )
            )
    return harness


EXPECTED_SUPPORT = {
    "queue": "support",
    "opened": 4,
    "resolved": 4,
    "first_response_median_h": 3.0,
    "first_response_p90_h": 6.0,  # of [1, 3, 6]
    "resolution_median_h": 10.5,
    "resolution_p90_h": 81.0,  # of [8, 9, 12, 81]
    "sla_tickets": 4,
    "sla_breached": 2,
    "sla_breach_rate": 50.0,
    "csat_rated": 3,
    "csat_positive": 2,
    "csat": 66.7,  # good, 2, 5
    "time_spent_h": 1.5,
    "top_customers": [
        {"customer": "a@x.example", "tickets": 2},
        {"customer": "b@y.example", "tickets": 1},
        {"customer": "c@z.example", "tickets": 1},
    ],
}
EXPECTED_SALES = {
    "queue": "sales",
    "opened": 1,
    "resolved": 1,
    "first_response_median_h": 2.5,
    "first_response_p90_h": 2.5,
    "resolution_median_h": 24.0,
    "resolution_p90_h": 24.0,
    "sla_tickets": 0,
    "sla_breached": 0,
    "sla_breach_rate": None,
    "csat_rated": 0,
    "csat_positive": 0,
    "csat": None,
    "time_spent_h": 0.0,
    "top_customers": [{"customer": "a@x.example", "tickets": 1}],
}


def test_figures_match_the_hand_computed_ones(tickets):
    sla = parse_sla(tickets.runtime.config)
    with tickets.session() as session:
        rows = report.build(session, sla, SINCE, UNTIL)
    assert rows == [EXPECTED_SALES, EXPECTED_SUPPORT]


def test_one_queue_only(tickets):
    with tickets.session() as session:
        assert report.build(session, parse_sla(tickets.runtime.config), SINCE, UNTIL, "sales") == [EXPECTED_SALES]


def test_median_and_nearest_rank_percentile():
    assert report.median([4, 1, 3, 2]) == 2.5 and report.median([]) is None
    assert report.p90(list(range(1, 11))) == 9 and report.p90([7]) == 7 and report.p90([]) is None


def test_the_command_prints_json_csv_and_a_table(tickets, fixture_config):
    window = ["--since", SINCE.isoformat(), "--until", UNTIL.isoformat()]
    result = mailgate(fixture_config, "report", *window, "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert data["queues"] == [EXPECTED_SALES, EXPECTED_SUPPORT]
    assert data["since"] == SINCE.isoformat() and data["until"] == UNTIL.isoformat()

    rows = list(
        csv.DictReader(io.StringIO(mailgate(fixture_config, "report", *window, "--format", "csv").stdout.decode()))
    )
    assert [r["queue"] for r in rows] == ["sales", "support"]
    assert rows[1]["resolution_median_h"] == "10.5" and rows[1]["sla_breach_rate"] == "50.0"
    assert rows[1]["top_customers"] == "a@x.example (2); b@y.example (1); c@z.example (1)"

    table = mailgate(fixture_config, "report", *window, "--queue", "support")
    assert table.returncode == 0 and b"SLA_BREACH_RATE" in table.stdout and b"sales" not in table.stdout


def test_the_chart_draws_daily_volume_and_response_times(tickets, fixture_config, tmp_path):
    chart = tmp_path / "volume.svg"
    result = mailgate(
        fixture_config,
        "report",
        "--since",
        SINCE.isoformat(),
        "--until",
        UNTIL.isoformat(),
        "--chart",
        str(chart),
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr.decode()
    svg = chart.read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count('class="volume"') == 31  # one bar per day of the window
    assert "2026-01-12: 2 opened" in svg and 'class="first-response"' in svg
    bad = mailgate(fixture_config, "report", "--chart", str(tmp_path / "volume.gif"))
    assert bad.returncode == 2 and b".svg or .png" in bad.stderr
