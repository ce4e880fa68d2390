"""The engine against the brute-force reference, around real DST transitions in many zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import assume, example, given, reject, settings
from hypothesis import strategies as st

from cronlink.cron import iter_fires, parse
from cronlink.errors import CronSyntaxError
from tests.unit.cron_reference import reference_fires, transitions

ZONES = [
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Dublin",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "America/Santiago",
    "Pacific/Chatham",
    "America/St_Johns",
    "America/Havana",
    "America/Sao_Paulo",
    "Africa/Casablanca",
    "Asia/Tehran",
    "Asia/Gaza",
    "Antarctica/Troll",
    "Pacific/Apia",
    "Asia/Kathmandu",
    "UTC",
]


def field(values: st.SearchStrategy[int], low: int, high: int) -> st.SearchStrategy[str]:
    single = values.map(str)
    return st.one_of(
        st.just("*"),
        st.integers(2, 30).map(lambda s: f"*/{s}"),
        single,
        st.lists(values, min_size=2, max_size=4).map(lambda v: ",".join(map(str, v))),
        st.tuples(values, values, st.integers(1, 7)).map(
            lambda t: f"{min(t[0], t[1])}-{max(t[0], t[1])}/{t[2]}"
        ),
    )


minutes = field(st.integers(0, 59), 0, 59)
hours = st.one_of(field(st.integers(0, 23), 0, 23), field(st.integers(0, 4), 0, 4))
doms = st.one_of(
    st.just("*"),
    st.sampled_from(["L", "LW", "1W", "15W", "30W", "31", "1,15", "*/2", "29"]),
    field(st.integers(1, 31), 1, 31),
)
months = st.one_of(st.just("*"), st.just("*"), field(st.integers(1, 12), 1, 12))
dows = st.one_of(
    st.just("*"),
    st.just("*"),
    st.sampled_from(["0", "7", "1-5", "SAT,SUN", "5L", "0L", "1#1", "0#2", "6#5", "*/2"]),
)
expressions = st.builds(lambda *f: " ".join(f), minutes, hours, doms, months, dows)


@st.composite
def near_transition(draw: st.DrawFn) -> tuple[str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    year = draw(st.integers(1975, 2037))
    found = transitions(zone, year) or (datetime(year, 6, 1, tzinfo=UTC),)
    base = draw(st.sampled_from(found))
    offset = draw(st.one_of(st.integers(-3 * 3600, 3 * 3600), st.integers(-2 * 86400, 86400)))
    start = base + timedelta(seconds=offset, microseconds=draw(st.sampled_from([0, 1, 500000])))
    return zone, start


def compare(text: str, zone: str, start: datetime, horizon: timedelta) -> None:
    try:
        expr = parse(text)
    except CronSyntaxError:
        reject()  # day 31 of a month without one: refused at parse time, tested elsewhere
    tz = ZoneInfo(zone)
    assume((start.astimezone(tz).utcoffset() or timedelta(0)).seconds % 60 == 0)
    until = start + horizon
    expected = list(reference_fires(expr, start, until, tz))
    actual = []
    for fire in iter_fires(expr, start, tz):
        if fire > until:
            break
        actual.append(fire)
    assert [f.isoformat() for f in actual] == [f.isoformat() for f in expected], (text, zone)
    assert all(f > start for f in actual)


@settings(max_examples=250, deadline=None)
@given(expressions, near_transition())
@example("30 2 * * *", ("America/New_York", datetime(2025, 3, 8, 12, tzinfo=UTC)))
@example("30 1 * * *", ("America/New_York", datetime(2025, 11, 2, 5, 40, tzinfo=UTC)))
@example("30 1 * * *", ("America/New_York", datetime(2025, 11, 2, 6, 10, tzinfo=UTC)))
@example("*/15 * * * *", ("Australia/Lord_Howe", datetime(2025, 4, 5, 14, 10, tzinfo=UTC)))
@example("0 10 * * *", ("Pacific/Apia", datetime(2011, 12, 29, 0, 0, tzinfo=UTC)))
def test_five_fields_match_reference(text: str, where: tuple[str, datetime]) -> None:
    zone, start = where
    compare(text, zone, start, timedelta(days=3))


seconds = st.sampled_from(["0", "*/15", "0,30", "*/7", "59"])


@settings(max_examples=60, deadline=None)
@given(seconds, minutes, hours, near_transition())
def test_six_fields_match_reference(
    second: str, minute: str, hour: str, where: tuple[str, datetime]
) -> None:
    zone, start = where
    compare(f"{second} {minute} {hour} * * *", zone, start, timedelta(hours=4))
