"""Business hours: counting SLA time only while a queue is open.

A queue's SLA clock either runs around the clock (:meth:`Schedule.always`) or
only in business hours: a weekly schedule of wall-clock intervals in one
timezone, minus whole-day holidays. "Answer within 4 business hours" from a
Friday 16:00 (Mon–Fri 09:00–17:00) is then due Monday 12:00.

Wall-clock rules, so that daylight saving time cannot make time appear or
vanish:

- Intervals are half-open, ``[start, end)``, in the schedule's local time.
  An end of ``00:00`` (written ``24:00`` in config) means midnight at the end
  of the day, so ``00:00-24:00`` is the whole day.
- A wall-clock time stands for the first instant the local clock shows it: in
  an autumn "fall back" hour the first pass counts; a time skipped by a spring
  "forward" jump stands for the instant of the jump. So every interval is a
  real stretch of elapsed time (a 01:00–04:00 shift on a fall-back night lasts
  four real hours), and adjacent intervals never overlap.
- A holiday closes the whole local date.

All instants going in must be timezone-aware; instants coming out are in UTC.
Nothing here does I/O or reads the clock.

Config (one table per queue)::

    timezone = "Europe/Paris"
    hours = { mon = "09:00-17:00", tue = "09:00-12:00,13:00-17:00", fri = "09:00-16:00" }
    holidays = [2026-12-25, "2027-01-01"]

Days left out of ``hours`` (or given as ``"closed"``) are closed. A week with no
open time at all is refused at load: a deadline on it would never come.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailgate.errors import ConfigError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIDNIGHT = time(0, 0)

Interval = tuple[time, time]

_CLOCK = re.compile(r"(\d\d):(\d\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Schedule:
    """When a queue is open: weekly wall-clock intervals in a timezone, minus holidays.

    ``week`` maps a weekday (0 = Monday .. 6 = Sunday) to its sorted,
    non-overlapping intervals; a missing day is closed. An interval end of
    ``time(0, 0)`` means midnight at the end of that day.
    """

    timezone: str
    week: Mapping[int, tuple[Interval, ...]]
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        zone_problem = _zone_problem(self.timezone)
        if zone_problem:
            raise ValueError(f"timezone: {zone_problem}")
        week: dict[int, tuple[Interval, ...]] = {}
        for day, intervals in self.week.items():
            if day not in range(7):
                raise ValueError(f"week: day {day!r} is not a weekday number 0..6")
            intervals = tuple(intervals)
            problem = _intervals_problem(intervals)
            if problem:
                raise ValueError(f"week[{day}] ({DAY_NAMES[day]}): {problem}")
            week[day] = intervals
        if not any(week.values()):
            raise ValueError("week: no open time on any day; the schedule would never count")
        # Normalised to all seven days so that equal schedules compare equal.
        object.__setattr__(self, "week", {day: week.get(day, ()) for day in range(7)})
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    def __hash__(self) -> int:
        return hash((self.timezone, tuple(self.week.items()), self.holidays))

    @classmethod
    def always(cls) -> Schedule:
        """Around the clock in UTC: business time equals elapsed time."""
        return cls("UTC", {day: ((MIDNIGHT, MIDNIGHT),) for day in range(7)}, frozenset())

    @classmethod
    def from_config(cls, data: Mapping[str, Any], where: str) -> Schedule:
        """Build a schedule from a config table; any bad value raises ``ConfigError``.

        ``where`` locates the table (file and section) in error messages.
        """

        def fail(key: str, message: str) -> ConfigError:
            return ConfigError(f"{where}: {key}: {message}")

        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a table with timezone, hours, holidays")
        unknown = sorted(set(data) - {"timezone", "hours", "holidays"})
        if unknown:
            raise fail(unknown[0], "unknown key; expected timezone, hours or holidays")

        if "timezone" not in data:
            raise fail("timezone", "is required (an IANA name such as 'Europe/Paris' or 'UTC')")
        timezone = data["timezone"]
        if not isinstance(timezone, str):
            raise fail("timezone", f"expected an IANA timezone name, got {timezone!r}")
        zone_problem = _zone_problem(timezone)
        if zone_problem:
            raise fail("timezone", zone_problem)

        if "hours" not in data:
            raise fail("hours", f"is required (a table of days: {', '.join(DAY_NAMES)})")
        hours = data["hours"]
        if not isinstance(hours, Mapping):
            raise fail("hours", f"expected a table of days ({', '.join(DAY_NAMES)}), got {hours!r}")
        week: dict[int, tuple[Interval, ...]] = {}
        for name, value in hours.items():
            key = f"hours.{name}"
            if name not in DAY_NAMES:
                raise fail(key, f"unknown day; expected one of {', '.join(DAY_NAMES)}")
            intervals = _parse_day(value)
            if intervals is None:
                raise fail(
                    key,
                    "expected intervals like '09:00-17:00' or '09:00-12:00,13:00-17:00' "
                    f"(HH:MM, end up to 24:00) or 'closed', got {value!r}",
                )
            problem = _intervals_problem(intervals)
            if problem:
                raise fail(key, problem)
            week[DAY_NAMES.index(name)] = intervals
        if not any(week.values()):
            raise fail("hours", "no open time on any day; an SLA on this schedule would never fall due")

        raw_holidays = data.get("holidays", [])
        if not isinstance(raw_holidays, list | tuple):
            raise fail("holidays", f"expected a list of dates (YYYY-MM-DD), got {raw_holidays!r}")
        holidays: set[date] = set()
        for index, item in enumerate(raw_holidays):
            day = _parse_date(item)
            if day is None:
                raise fail(f"holidays[{index}]", f"expected a date YYYY-MM-DD, got {item!r}")
            holidays.add(day)

        return cls(timezone, week, frozenset(holidays))


def add_business_time(start: datetime, duration: timedelta, schedule: Schedule) -> datetime:
    """The instant ``duration`` of open time after ``start`` (the SLA deadline), in UTC.

    A deadline that lands exactly on a closing time is that closing time, not
    the next opening. A zero duration returns ``start``.
    """
    start = _utc(start, "start")
    if duration < timedelta(0):
        raise ValueError(f"duration must not be negative, got {duration}")
    if not duration:
        return start
    remaining = duration
    for open_from, open_until in _open_spans(start, schedule):
        available = open_until - open_from
        if remaining <= available:
            return open_from + remaining
        remaining -= available
    raise AssertionError("unreachable: _open_spans is endless")  # pragma: no cover


def business_time_between(start: datetime, end: datetime, schedule: Schedule) -> timedelta:
    """Open time elapsed from ``start`` to ``end``; negative when ``end`` is earlier."""
    start = _utc(start, "start")
    end = _utc(end, "end")
    if end < start:
        return -business_time_between(end, start, schedule)
    total = timedelta(0)
    for open_from, open_until in _open_spans(start, schedule):
        if open_from >= end:
            break
        total += min(open_until, end) - open_from
    return total


def _open_spans(start: datetime, schedule: Schedule) -> Iterator[tuple[datetime, datetime]]:
    """Open stretches of real time at or after ``start``, in order, clipped to ``start``.

    Endless, but never spins without yielding: the schedule has open time
    every week, and only holidays (a finite set) or a DST jump can close an
    otherwise open day, so a longer closed run means a bug and raises.
    """
    zone = ZoneInfo(schedule.timezone)
    # The day before too: with a fall-back at midnight, the previous local
    # date's last interval can end after ``start``.
    day = start.astimezone(zone).date() - _ONE_DAY
    max_closed_run = len(schedule.holidays) + 15
    closed_run = 0
    while True:
        found = False
        for open_from, open_until in _day_spans(day, schedule, zone):
            open_from = max(open_from, start)
            if open_from < open_until:
                found = True
                yield open_from, open_until
        closed_run = 0 if found else closed_run + 1
        if closed_run > max_closed_run:  # pragma: no cover - defensive
            raise RuntimeError(f"no open time for {closed_run} days in a row: {schedule}")
        day += _ONE_DAY


def _day_spans(day: date, schedule: Schedule, zone: ZoneInfo) -> Iterator[tuple[datetime, datetime]]:
    """The open stretches of one local date as UTC instants (none on a holiday)."""
    if day in schedule.holidays:
        return
    for begin, end in schedule.week[day.weekday()]:
        open_from = _first_instant(datetime.combine(day, begin), zone)
        end_day = day + _ONE_DAY if end == MIDNIGHT else day
        open_until = _first_instant(datetime.combine(end_day, end), zone)
        if open_from < open_until:
            yield open_from, open_until


def _first_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the local clock shows ``wall`` or later.

    Unambiguous times map directly; a repeated time maps to its first pass
    (``fold=0``); a skipped time maps to the instant of the jump, found by
    bisection between its two possible readings.
    """
    early = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _local(early, zone) == wall:
        return early
    late = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = min(early, late), max(early, late)
    # Invariant: the clock shows less than ``wall`` at ``low`` and at least ``wall`` at ``high``.
    step = timedelta(microseconds=1)
    while high - low > step:
        middle = low + (high - low) // 2
        if _local(middle, zone) >= wall:
            high = middle
        else:
            low = middle
    return high


def _local(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _utc(instant: datetime, name: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {instant!r}")
    return instant.astimezone(UTC)


def _zone_problem(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown timezone {name!r}; expected an IANA name such as 'Europe/Paris' or 'UTC'"
    return None


def _intervals_problem(intervals: tuple[Interval, ...]) -> str | None:
    """Why a day's intervals are unusable, or None when they are fine."""
    previous_end: time | None = None
    for interval in intervals:
        if not (
            isinstance(interval, tuple)
            and len(interval) == 2
            and all(isinstance(t, time) and t.tzinfo is None for t in interval)
        ):
            return f"expected (start, end) pairs of naive times, got {interval!r}"
        begin, end = interval
        if end != MIDNIGHT and end <= begin:
            return f"interval {_show(interval)} ends before it starts"
        if previous_end is not None and (previous_end == MIDNIGHT or begin < previous_end):
            return f"interval {_show(interval)} overlaps or precedes the one before it"
        previous_end = end
    return None


def _parse_day(value: Any) -> tuple[Interval, ...] | None:
    """``"09:00-12:00,13:00-17:00"``, a list of such strings, or ``"closed"``; None if malformed."""
    if isinstance(value, list | tuple):
        parts = list(value)
    elif isinstance(value, str):
        if value.strip().lower() in ("closed", ""):
            return ()
        parts = value.split(",")
    else:
        return None
    intervals: list[Interval] = []
    for part in parts:
        if not isinstance(part, str) or part.count("-") != 1:
            return None
        begin_text, end_text = (piece.strip() for piece in part.split("-"))
        begin = _parse_clock(begin_text, allow_24=False)
        end = _parse_clock(end_text, allow_24=True)
        if begin is None or end is None:
            return None
        intervals.append((begin, end))
    return tuple(intervals)


def _parse_clock(text: str, *, allow_24: bool) -> time | None:
    match = _CLOCK.fullmatch(text)
    if not match:
        return None
    hour, minute = int(match[1]), int(match[2])
    if allow_24 and (hour, minute) == (24, 0):
        return MIDNIGHT
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value) if _DATE.fullmatch(value) else None
        except ValueError:
            return None
    return None


def _show(interval: Interval) -> str:
    begin, end = interval
    return f"{begin:%H:%M}-{'24:00' if end == MIDNIGHT else f'{end:%H:%M}'}"
