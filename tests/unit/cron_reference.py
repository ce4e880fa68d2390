"""A brute-force reference for cron firing: walk the time line one grid step at a time.

Deliberately independent of `cronlink.cron.fires`: it never computes a wall time's
instant, it asks of every instant whether it fires, and it matches days from the
calendar directly. Only field value sets come from the parser (tested on their own).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo

from cronlink.cron import CronExpr


def day_matches(expr: CronExpr, year: int, month: int, day: int) -> bool:
    rule = expr.days
    length = calendar.monthrange(year, month)[1]

    def weekday(d: int) -> int:  # Sunday = 0
        return (calendar.weekday(year, month, d) + 1) % 7

    def nearest_weekday(target: int) -> int:
        candidates = [d for d in range(1, length + 1) if weekday(d) not in (0, 6)]
        return min(candidates, key=lambda d: (abs(d - target), d))

    by_dom = (
        day in rule.dom
        or (rule.dom_last and day == length)
        or (
            rule.dom_last_weekday
            and day == max(d for d in range(1, length + 1) if weekday(d) not in (0, 6))
        )
        or any(n <= length and day == nearest_weekday(n) for n in rule.dom_nearest_weekday)
    )
    wd = weekday(day)
    by_dow = (
        wd in rule.dow
        or any(wd == d and (day - 1) // 7 + 1 == n for d, n in rule.dow_nth)
        or any(wd == d and day + 7 > length for d in rule.dow_last)
    )
    return (by_dom or by_dow) if rule.either else (by_dom and by_dow)


def wall_matches(expr: CronExpr, wall: datetime) -> bool:
    return (
        wall.second in expr.seconds
        and wall.minute in expr.minutes
        and wall.hour in expr.hours
        and wall.month in expr.months
        and day_matches(expr, wall.year, wall.month, wall.day)
    )


def reference_fires(
    expr: CronExpr, after: datetime, until: datetime, tz: tzinfo
) -> Iterator[datetime]:
    """Every instant in (after, until] at which `expr` fires, by cronie's DST rules."""
    step = timedelta(seconds=1 if expr.has_seconds else 60)
    grid = int(step.total_seconds())
    t = after.astimezone(UTC).replace(microsecond=0)
    t -= timedelta(seconds=int(t.timestamp()) % grid)
    while (t := t + step) <= until:
        if t > after and fires_at(expr, t, tz, step):
            yield t.astimezone(tz)


def fires_at(expr: CronExpr, t: datetime, tz: tzinfo, step: timedelta) -> bool:
    local = t.astimezone(tz)
    wall = local.replace(tzinfo=None)
    if wall_matches(expr, wall) and (local.fold == 0 or not expr.fixed_time):
        return True
    if not expr.fixed_time:
        return False
    previous = (t - timedelta(seconds=1)).astimezone(tz)
    jump = (local.utcoffset() or timedelta(0)) - (previous.utcoffset() or timedelta(0))
    if jump <= timedelta(0):
        return False
    skipped = previous.replace(tzinfo=None) + timedelta(seconds=1)
    if not expr.has_seconds and skipped.second:
        skipped = skipped.replace(second=0) + step
    while skipped < wall:
        if wall_matches(expr, skipped):
            return True
        skipped += step
    return False


@cache
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """Instants in `year` at which `zone` changes its UTC offset (to the minute)."""
    tz = ZoneInfo(zone)
    found = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    step = timedelta(hours=6)
    while t < end:
        if t.astimezone(tz).utcoffset() != (t + step).astimezone(tz).utcoffset():
            low, high = t, t + step
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        t += step
    return tuple(found)
