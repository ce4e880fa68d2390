"""Next fire times: the wall-clock matches of an expression, placed on the time line.

Wall times are matched as plain integers (fast, no datetime arithmetic); only a match is
turned into an instant, where the zone's gaps and folds are resolved by cronie's rules:

- a wall time that exists once fires at that instant;
- a repeated wall time (clocks fall back) fires at its first occurrence, and also at the
  second unless the job is *fixed-time*;
- a skipped wall time (clocks spring forward) fires a fixed-time job once at the first
  instant after the jump, and does not fire any other job.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo

from cronlink.cron.expr import CronExpr

Wall = tuple[int, int, int, int, int, int]
SEARCH_YEARS = 400
"""A Gregorian cycle: an expression that has not matched within it never will."""
_ONE_SECOND = timedelta(seconds=1)


def next_fire(expr: CronExpr, after: datetime, tz: tzinfo = UTC) -> datetime | None:
    """The first instant strictly after `after` at which `expr` fires in zone `tz`.

    `after` must be timezone-aware; the result is in `tz` (with the right `fold`), or None
    when the expression can never fire again.
    """
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    start = after.astimezone(UTC)
    if tz is UTC:
        first = _as_wall(start.replace(microsecond=0) + _ONE_SECOND)
        found = _next_wall(expr, first, start.year + SEARCH_YEARS)
        return None if found is None else datetime(*found, tzinfo=UTC)
    return _next_zoned(expr, start, tz)


def _next_zoned(expr: CronExpr, start: datetime, tz: tzinfo) -> datetime | None:
    local = start.astimezone(tz)
    lookback = _fold_lookback(local) if not expr.fixed_time else timedelta(0)
    wall = local.replace(tzinfo=None, microsecond=0) - lookback
    if not lookback:
        wall += _ONE_SECOND
    best: datetime | None = None
    limit = local.year + SEARCH_YEARS
    found = _next_wall(expr, _as_wall(wall), limit)
    while found is not None:
        bound, fires = _place(found, tz, expr.fixed_time)
        for instant in fires:
            if instant > start and (best is None or instant < best):
                best = instant
        if best is not None and best <= bound:
            break
        found = _next_wall(expr, _as_wall(datetime(*found) + _ONE_SECOND), limit)
    return None if best is None else best.astimezone(tz)


def iter_fires(expr: CronExpr, after: datetime, tz: tzinfo = UTC) -> Iterator[datetime]:
    """Every fire time after `after`, in order."""
    current = next_fire(expr, after, tz)
    while current is not None:
        yield current
        current = next_fire(expr, current, tz)


def _fold_lookback(local: datetime) -> timedelta:
    """How far back in wall time a second occurrence may still lie ahead of `local`."""
    if local.fold:
        return timedelta(0)
    gap = local.utcoffset() or timedelta(0)
    later = local.replace(fold=1).utcoffset() or timedelta(0)
    return max(gap - later, timedelta(0))


def _as_wall(value: datetime) -> Wall:
    return (value.year, value.month, value.day, value.hour, value.minute, value.second)


def _next_wall(expr: CronExpr, at: Wall, limit: int) -> Wall | None:
    """The smallest matching wall time at or after `at`, or None before year `limit`."""
    year, month, day, hour, minute, second = at
    months, hours, minutes, seconds = expr.months, expr.hours, expr.minutes, expr.seconds
    while year < limit:
        i = bisect_left(months, month)
        if i == len(months):
            year, month, day, hour, minute, second = year + 1, months[0], 1, 0, 0, 0
            continue
        if months[i] != month:
            month, day, hour, minute, second = months[i], 1, 0, 0, 0
        days = expr.days_in(year, month)
        i = bisect_left(days, day)
        if i == len(days):
            month, day, hour, minute, second = month + 1, 1, 0, 0, 0
            if month > 12:
                year, month = year + 1, 1
            continue
        if days[i] != day:
            day, hour, minute, second = days[i], 0, 0, 0
        i = bisect_left(hours, hour)
        if i == len(hours):
            day, hour, minute, second = day + 1, 0, 0, 0
            continue
        if hours[i] != hour:
            hour, minute, second = hours[i], 0, 0
        i = bisect_left(minutes, minute)
        if i == len(minutes):
            hour, minute, second = hour + 1, 0, 0
            continue
        if minutes[i] != minute:
            minute, second = minutes[i], 0
        i = bisect_left(seconds, second)
        if i == len(seconds):
            minute, second = minute + 1, 0
            continue
        return (year, month, day, hour, minute, seconds[i])
    return None


def _place(wall: Wall, tz: tzinfo, fixed_time: bool) -> tuple[datetime, list[datetime]]:
    """Where wall time `wall` lies on the time line, and the UTC instants at which it fires.

    The first element is a bound: no later wall time fires before it (its first occurrence,
    or for a skipped wall time the end of the jump).
    """
    local = datetime(*wall, tzinfo=tz)
    if tz is UTC:
        return local, [local]
    before = local.utcoffset()
    after = local.replace(fold=1).utcoffset()
    if before == after:
        instant = local.astimezone(UTC)
        return instant, [instant]
    assert before is not None
    assert after is not None
    if before > after:  # repeated wall time
        first = local.astimezone(UTC)
        if fixed_time:
            return first, [first]
        return first, [first, local.replace(fold=1).astimezone(UTC)]
    jump_end = _jump_end(local.replace(tzinfo=None), before, after, tz)
    return jump_end, [jump_end] if fixed_time else []


def _jump_end(wall: datetime, before: timedelta, after: timedelta, tz: tzinfo) -> datetime:
    """The instant clocks jumped forward over the skipped wall time `wall`."""
    low = (wall - after).replace(tzinfo=UTC)  # still on the old offset
    high = (wall - before).replace(tzinfo=UTC)  # already on the new one
    while high - low > _ONE_SECOND:
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high
