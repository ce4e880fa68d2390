"""Cron syntax, day rules, DST cases named in the issue, errors and explanations."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from cronlink.cron import explain, iter_fires, next_fire, parse
from cronlink.errors import CronSyntaxError

NY = ZoneInfo("America/New_York")


def fires(text: str, start: str, n: int, tz: str = "UTC") -> list[str]:
    zone = ZoneInfo(tz)
    it = iter_fires(parse(text), datetime.fromisoformat(start).astimezone(zone), zone)
    return [next(it).isoformat() for _ in range(n)]


@pytest.mark.parametrize(
    ("text", "minutes", "hours"),
    [
        ("*/5 * * * *", tuple(range(0, 60, 5)), tuple(range(24))),
        ("1-30/7 0,12 * * *", (1, 8, 15, 22, 29), (0, 12)),
        ("10/20 3/8 * * *", (10, 30, 50), (3, 11, 19)),
        ("0 9-17 * * *", (0,), tuple(range(9, 18))),
    ],
)
def test_lists_ranges_steps(text: str, minutes: tuple[int, ...], hours: tuple[int, ...]) -> None:
    expr = parse(text)
    assert expr.minutes == minutes
    assert expr.hours == hours


def test_names_any_case_and_sunday_as_0_or_7() -> None:
    assert parse("0 0 * jan-Mar,DEC *").months == (1, 2, 3, 12)
    assert parse("0 0 * * 7").days.dow == parse("0 0 * * sun").days.dow == frozenset({0})
    assert parse("0 0 * * fri-7").days.dow == frozenset({5, 6, 0})


@pytest.mark.parametrize(
    ("nickname", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@MIDNIGHT", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_nicknames(nickname: str, same_as: str) -> None:
    start = "2024-02-27T13:17:00+00:00"
    assert fires(nickname, start, 3) == fires(same_as, start, 3)


def test_vixie_day_rule_or_when_both_restricted() -> None:
    # The 13th, or any Friday.
    assert fires("0 0 13 * 5", "2024-09-01T00:00:00+00:00", 3) == [
        "2024-09-06T00:00:00+00:00",
        "2024-09-13T00:00:00+00:00",
        "2024-09-20T00:00:00+00:00",
    ]
    # `*/2` starts with `*`: both must match (odd days that are Fridays).
    assert fires("0 0 */2 * 5", "2024-09-01T00:00:00+00:00", 2) == [
        "2024-09-13T00:00:00+00:00",
        "2024-09-27T00:00:00+00:00",
    ]


def test_last_day_and_last_weekday() -> None:
    assert fires("0 0 L * *", "2024-01-15T00:00:00+00:00", 3) == [
        "2024-01-31T00:00:00+00:00",
        "2024-02-29T00:00:00+00:00",
        "2024-03-31T00:00:00+00:00",
    ]
    # Last weekday: 2024-03-31 is a Sunday -> Friday 29th; 2024-08-31 Saturday -> 30th.
    assert fires("0 0 LW 3,8 *", "2024-01-01T00:00:00+00:00", 2) == [
        "2024-03-29T00:00:00+00:00",
        "2024-08-30T00:00:00+00:00",
    ]


def test_nearest_weekday_never_crosses_the_month() -> None:
    # 2022-10-01 is a Saturday: 1W is Monday the 3rd, not Friday September 30th.
    assert fires("0 0 1W 10 *", "2022-09-01T00:00:00+00:00", 1) == ["2022-10-03T00:00:00+00:00"]
    # 2022-04-30 is a Saturday: 30W is Friday the 29th; 2023-04-30 a Sunday: Friday 28th.
    assert fires("0 0 30W 4 *", "2022-01-01T00:00:00+00:00", 2) == [
        "2022-04-29T00:00:00+00:00",
        "2023-04-28T00:00:00+00:00",
    ]
    # 15W on a weekday is the 15th itself.
    assert fires("0 0 15W 5 *", "2024-01-01T00:00:00+00:00", 1) == ["2024-05-15T00:00:00+00:00"]


def test_nth_and_last_weekday_of_month() -> None:
    assert fires("0 0 * * 1#2", "2024-01-01T00:00:00+00:00", 2) == [
        "2024-01-08T00:00:00+00:00",
        "2024-02-12T00:00:00+00:00",
    ]
    # A month without a fifth Monday has no fire.
    assert fires("0 0 * * 1#5", "2024-01-01T00:00:00+00:00", 2) == [
        "2024-01-29T00:00:00+00:00",
        "2024-04-29T00:00:00+00:00",
    ]
    assert fires("0 0 * * 5L", "2024-01-01T00:00:00+00:00", 2) == [
        "2024-01-26T00:00:00+00:00",
        "2024-02-23T00:00:00+00:00",
    ]


def test_seconds_field() -> None:
    assert fires("*/20 * * * * *", "2024-01-01T00:00:05+00:00", 3) == [
        "2024-01-01T00:00:20+00:00",
        "2024-01-01T00:00:40+00:00",
        "2024-01-01T00:01:00+00:00",
    ]


def test_spring_forward_fixed_time_fires_once_after_the_jump() -> None:
    assert fires("30 2 * * *", "2025-03-08T12:00:00-05:00", 2, "America/New_York") == [
        "2025-03-09T03:00:00-04:00",
        "2025-03-10T02:30:00-04:00",
    ]
    # Several skipped times collapse into one run, also the 03:00 run.
    assert fires("0,30 2,3 * * *", "2025-03-09T01:00:00-05:00", 3, "America/New_York") == [
        "2025-03-09T03:00:00-04:00",
        "2025-03-09T03:30:00-04:00",
        "2025-03-10T02:00:00-04:00",
    ]


def test_spring_forward_other_jobs_skip_missing_times() -> None:
    assert fires("*/30 * * * *", "2025-03-09T01:00:00-05:00", 3, "America/New_York") == [
        "2025-03-09T01:30:00-05:00",
        "2025-03-09T03:00:00-04:00",
        "2025-03-09T03:30:00-04:00",
    ]


def test_fall_back_fixed_time_runs_at_first_occurrence_only() -> None:
    assert fires("30 1 * * *", "2025-11-01T12:00:00-04:00", 2, "America/New_York") == [
        "2025-11-02T01:30:00-04:00",
        "2025-11-03T01:30:00-05:00",
    ]
    # A start inside the second occurrence does not repeat the first occurrence's run.
    assert fires("30 1 * * *", "2025-11-02T01:10:00-05:00", 1, "America/New_York") == [
        "2025-11-03T01:30:00-05:00"
    ]


def test_fall_back_other_jobs_fire_in_both_occurrences() -> None:
    assert fires("*/30 1 * * *", "2025-11-02T00:45:00-04:00", 4, "America/New_York") == [
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:30:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T01:30:00-05:00",
    ]
    # From inside the first occurrence, the second pass is still ahead.
    assert fires("*/30 1 * * *", "2025-11-02T01:45:00-04:00", 2, "America/New_York") == [
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T01:30:00-05:00",
    ]


def test_lord_howe_half_hour_shifts() -> None:
    tz = "Australia/Lord_Howe"
    assert fires("15 2 * * *", "2025-10-04T12:00:00+10:30", 2, tz) == [
        "2025-10-05T02:30:00+11:00",
        "2025-10-06T02:15:00+11:00",
    ]
    assert fires("*/15 1 * * *", "2025-04-06T01:20:00+11:00", 4, tz) == [
        "2025-04-06T01:30:00+11:00",
        "2025-04-06T01:45:00+11:00",
        "2025-04-06T01:30:00+10:30",
        "2025-04-06T01:45:00+10:30",
    ]


def test_result_is_strictly_after_start() -> None:
    start = datetime(2024, 1, 1, 0, 5, tzinfo=UTC)
    assert next_fire(parse("*/5 * * * *"), start) == datetime(2024, 1, 1, 0, 10, tzinfo=UTC)


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(parse("* * * * *"), datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("61 * * * *", "minute field: 61 is out of range 0-59"),
        ("0 24 * * *", "hour field: 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("*/0 * * * *", "minute field: step 0 in '*/0' must be at least 1"),
        ("5-1 * * * *", "minute field: range '5-1' runs backwards"),
        ("x * * * *", "minute field: 'x' in 'x' is not a value"),
        ("1,,2 * * * *", "minute field: empty item in '1,,2'"),
        ("0 0 * * 1#6", "day-of-week field: 6 is out of range 1-5"),
        ("0 0 * * L", "day-of-week field: 'L' needs a weekday before it"),
        ("0 0 30 2 *", "day-of-month field: day 30 never occurs in February"),
        ("* * * *", "expected 5 fields (or 6 with seconds first), got 4"),
        ("@reboot", "unknown nickname '@reboot'"),
        ("99999999999999999999 * * * *", "out of range 0-59"),
        ("60 * * * * *", "second field: 60 is out of range 0-59"),
    ],
)
def test_errors_name_field_token_and_reason(text: str, message: str) -> None:
    with pytest.raises(CronSyntaxError) as caught:
        parse(text)
    assert message in str(caught.value)


def test_impossible_date_has_no_next_fire() -> None:
    # Both day fields restricted: the 31st of April OR a Monday in April -> fires on Mondays.
    assert next_fire(parse("0 0 31 4 1"), datetime(2024, 1, 1, tzinfo=UTC)) is not None
    # Dow `*/7` starts with `*`, so both rules apply: February 29th that is a Sunday.
    found = next_fire(parse("0 0 29 2 */7"), datetime(2021, 1, 1, tzinfo=UTC))
    assert found == datetime(2032, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("30 2 * * 1-5", "At 02:30, Monday through Friday"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("* * * * *", "Every minute"),
        ("0 * * * *", "At minute 0 past every hour"),
        ("@daily", "At 00:00"),
        ("0 0 L * *", "At 00:00, on the last day of the month"),
        ("0 9 * * 1#2", "At 09:00, on the second Monday of the month"),
        ("0 0 1,15 * 1", "At 00:00, on days 1 and 15 of the month or on Monday"),
        ("0 12 * 6-8 *", "At 12:00, in June through August"),
        ("*/15 * * * * *", "Every 15 seconds"),
    ],
)
def test_explain(text: str, sentence: str) -> None:
    assert explain(text) == sentence
