"""Every next-fire search is bounded: random expressions in every zone take a bounded
number of steps, agree with the brute-force reference, and "never fires" is proved."""

from __future__ import annotations

import calendar
import zoneinfo
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given, reject, settings
from hypothesis import strategies as st

from cronlink.app import App
from cronlink.cron import CronExpr, check_fires, parse, search
from cronlink.cron.expr import MONTH, _day_rule, _values
from cronlink.cron.zone import horizon, offsets, settled_year
from cronlink.errors import CronSyntaxError
from tests.unit.cron_reference import day_matches, reference_fires, transitions

ZONES = sorted(zoneinfo.available_timezones())
STEPS_PER_YEAR = 24
"""A year costs at most a step a month, and each of the (at most two) jumps forward a zone
makes in a year six more: a placement and a fresh start mid-day."""
STEPS_AT_START = 20
"""Placing the start, and a start inside a repeated hour (two more searches)."""


def items(values: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    """A field: `*`, a value, a list, a range, a stepped range or `*/n`."""
    return st.one_of(
        st.just("*"),
        values.map(str),
        st.lists(values, min_size=2, max_size=3).map(lambda v: ",".join(map(str, v))),
        st.tuples(values, values).map(lambda t: f"{min(t)}-{max(t)}"),
        st.tuples(values, values, st.integers(1, 9)).map(
            lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}"
        ),
        st.integers(2, 40).map(lambda s: f"*/{s}"),
    )


seconds = st.one_of(st.just(""), st.sampled_from(["0", "*", "*/20", "59"]))
minutes = st.one_of(items(st.integers(0, 59)), st.sampled_from(["*", "*/15", "0,30"]))
# Zones jump between midnight and 03:00 local, mostly: favour those hours.
hours = st.one_of(
    items(st.integers(0, 23)), st.sampled_from(["0", "1", "2", "3", "1-3", "0-4", "2,3", "*"])
)
doms = st.one_of(
    items(st.integers(1, 31)),
    st.sampled_from(["L", "LW", "1W", "15W", "29W", "30W", "31W", "29", "30", "31", "?"]),
    st.sampled_from(["L,15", "1,LW", "*/29", "*/30"]),
)
months = st.one_of(
    st.just("*"), items(st.integers(1, 12)), st.sampled_from(["2", "FEB", "3", "9-11", "2,4"])
)
dows = st.one_of(
    st.just("*"),
    items(st.integers(0, 7)),
    st.tuples(st.integers(0, 7), st.integers(1, 5)).map(lambda t: f"{t[0]}#{t[1]}"),
    st.integers(0, 7).map(lambda d: f"{d}L"),
    st.sampled_from(["*/7", "SAT,SUN", "MON-FRI", "?", "0#2,6L", "*/3"]),
)
expressions = st.builds(
    lambda *f: " ".join(p for p in f if p), seconds, minutes, hours, doms, months, dows
)


@st.composite
def on_the_day(draw: st.DrawFn, where: tuple[str, datetime]) -> str:
    """An expression whose day fields match the local day of the start (the day of a
    jump, often) or, half the time, any expression."""
    if draw(st.booleans()):
        return draw(expressions)
    zone, start = where
    local = start.astimezone(ZoneInfo(zone))
    dom = draw(st.sampled_from([str(local.day), "*", f"{local.day},L"]))
    month = draw(st.sampled_from([str(local.month), "*"]))
    day = draw(st.sampled_from(["*", str((local.weekday() + 1) % 7)]))
    times = [draw(seconds), draw(minutes), draw(hours)]
    return " ".join(p for p in (*times, dom, month, day) if p)


@st.composite
def starts(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and a start: anywhere from 1970 to 2100, or hours from one of its jumps."""
    zone = draw(st.sampled_from(ZONES))
    year = draw(st.integers(1970, 2100))
    anywhere = datetime(year, 1, 1, tzinfo=UTC) + timedelta(
        seconds=draw(st.integers(0, 365 * 86400))
    )
    if draw(st.booleans()):
        return zone, anywhere
    jumps = transitions(zone, min(year, 2045)) or (anywhere,)
    near = draw(st.sampled_from(jumps)) + timedelta(seconds=draw(st.integers(-7200, 7200)))
    return zone, near


def work_bound(expr: CronExpr, start: datetime, tz: tzinfo) -> int:
    year = start.astimezone(tz).year
    years = horizon(settled_year(tz, year), year) - year + 1
    assert years <= 2130 - 1969 + 1  # no zone file settles after 2089; 1970 UTC is 1969 in some
    return STEPS_PER_YEAR * years + STEPS_AT_START


@settings(max_examples=500, deadline=None)
@given(st.data(), starts())
@example("* * 2 * 3 0#2", ("America/New_York", datetime(2026, 12, 5, tzinfo=UTC)))
@example("* 2 * 3 0L", ("Europe/Berlin", datetime(2025, 3, 30, 0, 59, 59, tzinfo=UTC)))
@example("* * * * * *", ("America/New_York", datetime(2025, 11, 2, 5, 30, tzinfo=UTC)))
@example("* * * * * *", ("America/New_York", datetime(2025, 11, 2, 6, 30, tzinfo=UTC)))
@example("* 0-59 1 * * *", ("America/New_York", datetime(2025, 11, 2, 6, 30, tzinfo=UTC)))
@example("0 0 29 2 */7", ("UTC", datetime(2089, 1, 1, tzinfo=UTC)))
@example("* 0 * * *", ("Pacific/Apia", datetime(2011, 12, 29, 10, tzinfo=UTC)))
def test_every_search_is_bounded_and_agrees_with_the_reference(
    data: st.DataObject | str, where: tuple[str, datetime]
) -> None:
    text = data if isinstance(data, str) else data.draw(on_the_day(where))
    try:
        expr = parse(text)
    except CronSyntaxError:
        reject()  # refused at parse time, including every day rule no day can satisfy
    zone, start = where
    tz = ZoneInfo(zone)
    found = search(expr, start, tz)
    assert found.steps <= work_bound(expr, start, tz), (text, zone, start)
    assert found.at is None or found.at > start
    # The reference steps a second or a minute at a time: compare over a short window.
    assume((start.astimezone(tz).utcoffset() or timedelta(0)).seconds % 60 == 0)
    window = start + (timedelta(hours=3) if expr.has_seconds else timedelta(days=2))
    expected = next(reference_fires(expr, start, window, tz), None)
    if expected is None:
        assert found.at is None or found.at > window, (text, zone, start)
    else:
        assert found.at is not None, (text, zone, start)
        assert found.at.isoformat() == expected.isoformat(), (text, zone, start)


def first_fire_by_days(expr: CronExpr, tz: tzinfo, start: datetime, last_year: int) -> bool:
    """Whether `expr` fires after `start` by `last_year`, found from the calendar and the
    zone alone: a matching wall time fires when it exists (or the job is fixed-time)."""
    for year in range(start.astimezone(tz).year, last_year + 1):
        for month in expr.months:
            for day in range(1, calendar.monthrange(year, month)[1] + 1):
                if not day_matches(expr, year, month, day):
                    continue
                for hour in expr.hours:
                    for minute in expr.minutes:
                        wall = datetime(year, month, day, hour, minute, tzinfo=tz)
                        first, second = offsets(wall)
                        exists = first >= second or expr.fixed_time
                        if (
                            exists
                            and (wall.replace(tzinfo=None) - first).replace(tzinfo=UTC) > start
                        ):
                            return True
    return False


NEVER = [
    ("* 2 * 3 0#2", "America/New_York"),
    ("* 2 * 3 0#2", "America/Toronto"),
    ("* 2 * 3 0L", "Europe/Berlin"),
    ("* 1 * 3 0L", "Europe/Dublin"),
    ("*/10 1-2 * 3 0L", "Antarctica/Troll"),
    ("* 0 * 3 0#2", "America/Havana"),
    ("* 2 1-7 10 */7", "Australia/Sydney"),
]


@pytest.mark.parametrize(("text", "zone"), NEVER)
def test_never_fires_is_proved_and_true_for_a_gregorian_cycle(text: str, zone: str) -> None:
    expr, tz = parse(text), ZoneInfo(zone)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert search(expr, start, tz).at is None
    assert not first_fire_by_days(expr, tz, start, settled_year(tz, 2026) + 400)
    with pytest.raises(CronSyntaxError, match=f"never fires in {zone}: every time it matches"):
        check_fires(expr, tz, start)


def test_a_long_silence_is_searched_through() -> None:
    # From 1987 to 2006 the first Sunday of April at 02:xx was New York's skipped hour.
    found = search(
        parse("* 2 1-7 4 */7"), datetime(1990, 1, 1, tzinfo=UTC), ZoneInfo("America/New_York")
    )
    assert found.at is not None
    assert found.at.isoformat() == "2007-04-01T02:00:00-04:00"
    # February 29th on a Sunday: 2088, then 2128 (2100 is no leap year).
    found = search(parse("0 0 29 2 */7"), datetime(2089, 1, 1, tzinfo=UTC))
    assert found.at == datetime(2128, 2, 29, tzinfo=UTC)


def test_a_job_defined_in_python_that_never_fires_is_refused() -> None:
    app = App()
    with pytest.raises(CronSyntaxError, match="never fires in America/New_York"):
        app.job("* * 2 * 3 0#2", timezone="America/New_York")(lambda ctx: None)
    assert app.jobs == {}


def test_the_issue_input_is_decided_in_a_bounded_number_of_steps() -> None:
    start, tz = datetime(2026, 12, 5, tzinfo=UTC), ZoneInfo("America/New_York")
    found = search(parse("* * 2 * 3 0#2"), start, tz)
    assert found.at is None
    assert found.steps <= 300  # about five per year until 2068; minute by minute was 1.4 million
    assert first_fire_by_days(parse("* 2 * 3 0#2"), tz, datetime(2006, 1, 1, tzinfo=UTC), 2006)


def some_day_matches(expr: CronExpr) -> bool:
    """Whether any day of 2001-2028 matches: 28 years that hold every kind of month."""
    return any(
        day_matches(expr, year, month, day)
        for year in range(2001, 2029)
        for month in expr.months
        for day in range(1, calendar.monthrange(year, month)[1] + 1)
    )


@settings(max_examples=40, deadline=None)
@given(doms, months, dows)
def test_a_day_rule_is_refused_exactly_when_no_day_matches(dom: str, month: str, dow: str) -> None:
    text = f"0 0 {dom} {month} {dow}"
    try:
        expr = parse(text)
    except CronSyntaxError as error:
        if "never" not in str(error):
            assert "?" in dom + dow  # cronie has no `?`
            return
        unchecked = parse("0 0 * * *")
        expr = replace(unchecked, days=_day_rule(dom, dow), months=_values(MONTH, month))
        assert not some_day_matches(expr), text
        return
    assert some_day_matches(expr), text


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Pacific/Kiritimati"])
def test_no_fire_beyond_the_year_9999_is_never(zone: str) -> None:
    last = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    assert search(parse("0 0 1 1 *"), last, ZoneInfo(zone)).at is None
    beyond = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59)))
    assert search(parse("* * * * *"), beyond, ZoneInfo(zone)).at is None


def kind(year: int) -> tuple[int, bool]:
    """What decides a year's matching days and, under a yearly rule, its offsets."""
    return calendar.weekday(year, 1, 1), calendar.isleap(year)


@given(st.integers(1, 9000), st.integers(1, 9000))
def test_the_28_years_before_the_horizon_hold_every_later_kind_of_year(
    settled: int, year: int
) -> None:
    end = horizon(settled, year)
    assume(end + 401 <= 9999)
    block = range(end - 28, end)
    assert block.start > max(settled, year)
    seen = {(kind(y - 1), kind(y), kind(y + 1)) for y in block}
    assert all((kind(y - 1), kind(y), kind(y + 1)) in seen for y in range(end, end + 400))
