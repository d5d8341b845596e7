"""Business hours: SLA time counts only while the queue is open."""

from __future__ import annotations

import random
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailgate.domain.business_hours import Schedule, add_business_time, business_time_between
from mailgate.errors import ConfigError

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS_9_TO_5 = {day: "09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}


def office(timezone: str = "Europe/Paris", holidays: list[str] | None = None, **hours: str) -> Schedule:
    return Schedule.from_config(
        {"timezone": timezone, "hours": hours or WEEKDAYS_9_TO_5, "holidays": holidays or []},
        "config.toml [queues.support.business_hours]",
    )


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# 2026-01-09 is a Friday; 2026-01-12 the Monday after.


class TestDeadlines:
    def test_four_business_hours_from_friday_16_is_due_monday_12(self) -> None:
        due = add_business_time(paris(2026, 1, 9, 16), hours(4), office())
        assert due == paris(2026, 1, 12, 12)

    def test_deadline_is_returned_in_utc(self) -> None:
        due = add_business_time(paris(2026, 1, 9, 16), hours(4), office())
        assert due.tzinfo is UTC
        assert due == datetime(2026, 1, 12, 11, tzinfo=UTC)

    def test_start_on_a_weekend_counts_from_monday_opening(self) -> None:
        assert add_business_time(paris(2026, 1, 10, 10), hours(1), office()) == paris(2026, 1, 12, 10)

    def test_start_before_opening_counts_from_opening(self) -> None:
        assert add_business_time(paris(2026, 1, 13, 7), hours(0.5), office()) == paris(2026, 1, 13, 9, 30)

    def test_start_after_closing_counts_from_next_opening(self) -> None:
        assert add_business_time(paris(2026, 1, 13, 18), hours(1), office()) == paris(2026, 1, 14, 10)

    def test_deadline_landing_on_closing_time_is_that_closing_time(self) -> None:
        assert add_business_time(paris(2026, 1, 13, 16), hours(1), office()) == paris(2026, 1, 13, 17)

    def test_a_deadline_longer_than_a_day_spans_several_days(self) -> None:
        # 20 open hours from Monday 09:00: Monday 8 + Tuesday 8 + 4 on Wednesday.
        assert add_business_time(paris(2026, 1, 12, 9), hours(20), office()) == paris(2026, 1, 14, 13)

    def test_start_may_be_in_any_timezone(self) -> None:
        start = paris(2026, 1, 9, 16).astimezone(ZoneInfo("Asia/Tokyo"))
        assert add_business_time(start, hours(4), office()) == paris(2026, 1, 12, 12)

    def test_zero_duration_is_the_start_itself(self) -> None:
        saturday = paris(2026, 1, 10, 10)
        assert add_business_time(saturday, timedelta(0), office()) == saturday

    def test_negative_duration_is_refused(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            add_business_time(paris(2026, 1, 12, 9), hours(-1), office())

    def test_naive_datetimes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            add_business_time(datetime(2026, 1, 12, 9), hours(1), office())
        with pytest.raises(ValueError, match="aware"):
            business_time_between(paris(2026, 1, 12, 9), datetime(2026, 1, 12, 10), office())


class TestElapsed:
    def test_only_open_time_counts(self) -> None:
        elapsed = business_time_between(paris(2026, 1, 9, 16), paris(2026, 1, 12, 12), office())
        assert elapsed == hours(4)

    def test_nothing_elapses_while_closed(self) -> None:
        assert business_time_between(paris(2026, 1, 9, 17), paris(2026, 1, 12, 9), office()) == timedelta(0)

    def test_an_earlier_end_gives_negative_time(self) -> None:
        elapsed = business_time_between(paris(2026, 1, 12, 12), paris(2026, 1, 9, 16), office())
        assert elapsed == -hours(4)

    def test_microseconds_are_kept(self) -> None:
        start = paris(2026, 1, 12, 9, 0, 0, 1)
        assert business_time_between(start, paris(2026, 1, 12, 10), office()) == timedelta(
            minutes=59, seconds=59, microseconds=999_999
        )


class TestSplitDays:
    def schedule(self) -> Schedule:
        return office(tue="09:00-12:00,13:00-17:00")

    def test_lunch_break_does_not_count(self) -> None:
        tuesday = self.schedule()
        assert add_business_time(paris(2026, 1, 13, 11), hours(2), tuesday) == paris(2026, 1, 13, 14)
        assert business_time_between(paris(2026, 1, 13, 11), paris(2026, 1, 13, 14), tuesday) == hours(2)

    def test_morning_ending_exactly_at_noon_stays_at_noon(self) -> None:
        assert add_business_time(paris(2026, 1, 13, 11), hours(1), self.schedule()) == paris(2026, 1, 13, 12)

    def test_start_during_lunch_counts_from_afternoon_opening(self) -> None:
        assert add_business_time(paris(2026, 1, 13, 12, 30), hours(1), self.schedule()) == paris(2026, 1, 13, 14)

    def test_inside_the_break_nothing_elapses(self) -> None:
        elapsed = business_time_between(paris(2026, 1, 13, 12, 15), paris(2026, 1, 13, 12, 45), self.schedule())
        assert elapsed == timedelta(0)

    def test_days_not_listed_are_closed(self) -> None:
        # Only Tuesday is open: from Tuesday 16:00, one more hour then the next Tuesday.
        assert add_business_time(paris(2026, 1, 13, 16), hours(2), self.schedule()) == paris(2026, 1, 20, 10)


class TestHolidays:
    def test_a_holiday_is_skipped_whole(self) -> None:
        # Friday 2026-12-25 is off: Thursday 16:00 + 2h is Monday 10:00.
        schedule = office(holidays=["2026-12-25"])
        assert add_business_time(paris(2026, 12, 24, 16), hours(2), schedule) == paris(2026, 12, 28, 10)
        assert business_time_between(paris(2026, 12, 24, 9), paris(2026, 12, 28, 17), schedule) == hours(16)

    def test_consecutive_holidays_are_skipped(self) -> None:
        schedule = office(holidays=["2026-12-24", "2026-12-25", "2026-12-28"])
        assert add_business_time(paris(2026, 12, 23, 16), hours(2), schedule) == paris(2026, 12, 29, 10)

    def test_holiday_is_a_local_date(self) -> None:
        # 23:30 UTC on the 24th is already the 25th in Paris: a 24x7 Paris queue is closed.
        schedule = office(holidays=["2026-12-25"], **{day: "00:00-24:00" for day in WEEKDAYS_9_TO_5})
        start = datetime(2026, 12, 24, 23, 30, tzinfo=UTC)
        assert add_business_time(start, hours(1), schedule) == paris(2026, 12, 28, 1)


class TestDaylightSavingTime:
    def test_spring_forward_weekend_keeps_the_wall_clock(self) -> None:
        # Paris moves from +01:00 to +02:00 on Sunday 2026-03-29.
        due = add_business_time(paris(2026, 3, 27, 16), hours(4), office())
        assert due == paris(2026, 3, 30, 12)
        assert due == datetime(2026, 3, 30, 10, tzinfo=UTC)

    def test_fall_back_weekend_keeps_the_wall_clock(self) -> None:
        # Paris moves from +02:00 to +01:00 on Sunday 2026-10-25.
        due = add_business_time(paris(2026, 10, 23, 16), hours(4), office())
        assert due == datetime(2026, 10, 26, 11, tzinfo=UTC)

    def test_new_york_changes_on_its_own_date(self) -> None:
        # New York moves to -04:00 on Sunday 2026-03-08, three weeks before Paris.
        schedule = office("America/New_York")
        due = add_business_time(datetime(2026, 3, 6, 16, tzinfo=NEW_YORK), hours(4), schedule)
        assert due == datetime(2026, 3, 9, 16, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("day", "length"),
        [(date(2026, 3, 28), 24), (date(2026, 3, 29), 23), (date(2026, 10, 25), 25)],
    )
    def test_a_whole_local_day_lasts_its_real_length(self, day: date, length: int) -> None:
        around_the_clock = office(**{name: "00:00-24:00" for name in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
        start = datetime.combine(day, time(0), PARIS)
        end = datetime.combine(day + timedelta(days=1), time(0), PARIS)
        assert business_time_between(start, end, around_the_clock) == hours(length)
        assert add_business_time(start, hours(length), around_the_clock) == end

    def test_night_shift_over_fall_back_lasts_four_real_hours(self) -> None:
        night = office(sun="01:00-04:00")
        start, end = paris(2026, 10, 25, 0), paris(2026, 10, 25, 5)
        assert business_time_between(start, end, night) == hours(4)

    def test_night_shift_over_spring_forward_lasts_two_real_hours(self) -> None:
        night = office(sun="01:00-04:00")
        start, end = paris(2026, 3, 29, 0), paris(2026, 3, 29, 5)
        assert business_time_between(start, end, night) == hours(2)

    def test_opening_inside_the_skipped_hour_opens_at_the_jump(self) -> None:
        # 02:30 does not exist on 2026-03-29 in Paris: the clock jumps from 02:00 to 03:00.
        night = office(sun="02:30-04:00")
        due = add_business_time(paris(2026, 3, 29, 0), timedelta(minutes=1), night)
        assert due == datetime(2026, 3, 29, 1, 1, tzinfo=UTC)

    def test_adjacent_intervals_in_the_repeated_hour_do_not_overlap(self) -> None:
        split = office(sun="00:00-02:30,02:30-24:00")
        start = paris(2026, 10, 25, 0)
        end = datetime.combine(date(2026, 10, 26), time(0), PARIS)
        assert business_time_between(start, end, split) == hours(25)


class TestAlways:
    def test_always_is_utc_around_the_clock(self) -> None:
        always = Schedule.always()
        assert always.timezone == "UTC"
        assert all(always.week[day] == ((time(0), time(0)),) for day in range(7))
        assert always.holidays == frozenset()

    def test_always_equals_plain_arithmetic(self) -> None:
        always = Schedule.always()
        rng = random.Random(20260101)
        for _ in range(300):
            start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 3 * 365 * 86400))
            duration = timedelta(seconds=rng.uniform(0, 40 * 86400))
            assert add_business_time(start, duration, always) == start + duration
            assert business_time_between(start, start + duration, always) == duration

    def test_always_equals_a_config_open_all_week_in_utc(self) -> None:
        week = {name: "00:00-24:00" for name in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
        assert office("UTC", **week) == Schedule.always()
        assert hash(office("UTC", **week)) == hash(Schedule.always())


ZONES = (
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Pacific/Chatham",
)
# DST transitions of the zones above fall inside these starts.
TRANSITIONS = (
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 4, 4, 16, tzinfo=UTC),
    datetime(2026, 10, 3, 16, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
)


def random_schedule(rng: random.Random) -> Schedule:
    week: dict[int, tuple[tuple[time, time], ...]] = {}
    for day in range(7):
        if rng.random() < 0.3:
            continue
        cuts = sorted(rng.sample(range(0, 24 * 4 + 1), 2 * rng.randint(1, 3)))
        pairs = list(zip(cuts[::2], cuts[1::2], strict=True))
        week[day] = tuple((_quarter(a), _quarter(b)) for a, b in pairs)
    if not any(week.values()):
        week[rng.randrange(7)] = ((time(9), time(17)),)
    holidays = frozenset(date(2026, 1, 1) + timedelta(days=rng.randrange(366)) for _ in range(rng.randint(0, 30)))
    return Schedule(rng.choice(ZONES), week, holidays)


def _quarter(n: int) -> time:
    return time(0) if n == 96 else time(n // 4, n % 4 * 15)


def random_start(rng: random.Random) -> datetime:
    if rng.random() < 0.5:
        base = rng.choice(TRANSITIONS) - timedelta(days=2)
        return base + timedelta(seconds=rng.uniform(0, 4 * 86400))
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 365 * 86400))


class TestProperties:
    def test_round_trip_over_random_schedules(self) -> None:
        rng = random.Random(4242)
        for _ in range(400):
            schedule, start = random_schedule(rng), random_start(rng)
            duration = timedelta(seconds=rng.choice([rng.uniform(0, 3600), rng.uniform(0, 20 * 86400)]))
            due = add_business_time(start, duration, schedule)
            assert business_time_between(start, due, schedule) == duration, (
                schedule,
                start,
                duration,
            )

    def test_elapsed_time_adds_up_over_consecutive_stretches(self) -> None:
        rng = random.Random(777)
        for _ in range(200):
            schedule = random_schedule(rng)
            a, b, c = sorted(random_start(rng) for _ in range(3))
            whole = business_time_between(a, c, schedule)
            assert whole == business_time_between(a, b, schedule) + business_time_between(b, c, schedule)
            assert timedelta(0) <= whole <= c - a

    def test_a_longer_duration_never_gives_an_earlier_deadline(self) -> None:
        rng = random.Random(99)
        for _ in range(200):
            schedule, start = random_schedule(rng), random_start(rng)
            short, long = sorted(timedelta(seconds=rng.uniform(0, 10 * 86400)) for _ in range(2))
            assert start <= add_business_time(start, short, schedule) <= add_business_time(start, long, schedule)


class TestConfig:
    def test_reads_a_toml_table(self) -> None:
        data = tomllib.loads(
            """
            timezone = "Europe/Paris"
            holidays = [2026-12-25, "2027-01-01"]
            [hours]
            mon = "09:00-17:00"
            tue = "09:00-12:00, 13:00-17:00"
            wed = ["08:00-12:00", "14:00-24:00"]
            sat = "closed"
            """
        )
        schedule = Schedule.from_config(data, "config.toml [queues.billing]")
        assert schedule == Schedule(
            "Europe/Paris",
            {
                0: ((time(9), time(17)),),
                1: ((time(9), time(12)), (time(13), time(17))),
                2: ((time(8), time(12)), (time(14), time(0))),
            },
            frozenset({date(2026, 12, 25), date(2027, 1, 1)}),
        )

    def test_holidays_are_optional(self) -> None:
        schedule = Schedule.from_config({"timezone": "UTC", "hours": {"mon": "09:00-17:00"}}, "x")
        assert schedule.holidays == frozenset()

    def test_touching_intervals_are_allowed(self) -> None:
        schedule = office(mon="09:00-12:00,12:00-17:00")
        assert business_time_between(paris(2026, 1, 12, 0), paris(2026, 1, 13, 0), schedule) == hours(8)

    @pytest.mark.parametrize(
        ("data", "key", "expected"),
        [
            ({"hours": WEEKDAYS_9_TO_5}, "timezone", "required"),
            ({"timezone": "Mars/Olympus", "hours": WEEKDAYS_9_TO_5}, "timezone", "IANA"),
            ({"timezone": "../../etc/passwd", "hours": WEEKDAYS_9_TO_5}, "timezone", "IANA"),
            ({"timezone": 1, "hours": WEEKDAYS_9_TO_5}, "timezone", "IANA"),
            ({"timezone": "UTC"}, "hours", "required"),
            ({"timezone": "UTC", "hours": "09:00-17:00"}, "hours", "table of days"),
            ({"timezone": "UTC", "hours": {"monday": "09:00-17:00"}}, "hours.monday", "mon, tue"),
            ({"timezone": "UTC", "hours": {"mon": "9-5"}}, "hours.mon", "'09:00-17:00'"),
            ({"timezone": "UTC", "hours": {"mon": "09:00-25:00"}}, "hours.mon", "HH:MM"),
            ({"timezone": "UTC", "hours": {"mon": "24:00-24:00"}}, "hours.mon", "HH:MM"),
            ({"timezone": "UTC", "hours": {"mon": "09:60-17:00"}}, "hours.mon", "HH:MM"),
            ({"timezone": "UTC", "hours": {"mon": 9}}, "hours.mon", "09:00-17:00"),
            (
                {"timezone": "UTC", "hours": {"tue": "17:00-09:00"}},
                "hours.tue",
                "ends before it starts",
            ),
            (
                {"timezone": "UTC", "hours": {"tue": "09:00-09:00"}},
                "hours.tue",
                "ends before it starts",
            ),
            (
                {"timezone": "UTC", "hours": {"wed": "09:00-13:00,12:00-17:00"}},
                "hours.wed",
                "overlaps",
            ),
            (
                {"timezone": "UTC", "hours": {"wed": "13:00-17:00,09:00-12:00"}},
                "hours.wed",
                "overlaps",
            ),
            ({"timezone": "UTC", "hours": {}}, "hours", "no open time"),
            ({"timezone": "UTC", "hours": {"mon": "closed", "sun": ""}}, "hours", "no open time"),
            (
                {"timezone": "UTC", "hours": WEEKDAYS_9_TO_5, "holidays": "2026-12-25"},
                "holidays",
                "list",
            ),
            (
                {"timezone": "UTC", "hours": WEEKDAYS_9_TO_5, "holidays": ["2026-13-01"]},
                "holidays[0]",
                "YYYY",
            ),
            (
                {
                    "timezone": "UTC",
                    "hours": WEEKDAYS_9_TO_5,
                    "holidays": ["2026-12-24", "25/12/2026"],
                },
                "holidays[1]",
                "YYYY-MM-DD",
            ),
            (
                {"timezone": "UTC", "hours": WEEKDAYS_9_TO_5, "holidays": ["2026-W52-5"]},
                "holidays[0]",
                "YYYY",
            ),
            (
                {
                    "timezone": "UTC",
                    "hours": WEEKDAYS_9_TO_5,
                    "holidays": [datetime(2026, 12, 25, 9)],
                },
                "holidays[0]",
                "YYYY",
            ),
            (
                {"timezone": "UTC", "hours": WEEKDAYS_9_TO_5, "holiday": []},
                "holiday",
                "unknown key",
            ),
        ],
    )
    def test_bad_values_name_the_key_and_what_was_expected(self, data: dict, key: str, expected: str) -> None:
        with pytest.raises(ConfigError) as caught:
            Schedule.from_config(data, "config.toml [queues.billing.business_hours]")
        message = str(caught.value)
        assert message.startswith(f"config.toml [queues.billing.business_hours]: {key}: ")
        assert expected in message

    def test_a_non_table_is_refused(self) -> None:
        with pytest.raises(ConfigError, match=r"^where: expected a table"):
            Schedule.from_config(["09:00-17:00"], "where")  # type: ignore[arg-type]


class TestScheduleInvariants:
    """Schedules built in code are checked like config, so no deadline search can spin forever."""

    def test_a_week_without_open_time_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no open time"):
            Schedule("UTC", {0: (), 3: ()}, frozenset())

    def test_unknown_timezone_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone"):
            Schedule("Nowhere/Land", {0: ((time(9), time(17)),)}, frozenset())

    def test_weekday_out_of_range_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"0\.\.6"):
            Schedule("UTC", {7: ((time(9), time(17)),)}, frozenset())

    def test_overlapping_intervals_are_refused(self) -> None:
        with pytest.raises(ValueError, match=r"week\[0\] \(mon\)"):
            Schedule("UTC", {0: ((time(9), time(0)), (time(10), time(11)))}, frozenset())

    def test_aware_times_are_refused(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            Schedule("UTC", {0: ((time(9, tzinfo=UTC), time(17)),)}, frozenset())

    def test_days_left_out_are_closed_and_compare_equal(self) -> None:
        sparse = Schedule("UTC", {0: ((time(9), time(17)),)}, frozenset())
        full = Schedule(
            "UTC",
            {day: ((time(9), time(17)),) if day == 0 else () for day in range(7)},
            frozenset(),
        )
        assert sparse == full
        assert sparse.week[6] == ()
