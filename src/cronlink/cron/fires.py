"""Next fire times: the wall-clock matches of an expression, placed on the time line.

Wall times are matched as plain integers (fast, no datetime arithmetic); only a match is
turned into an instant, where the zone's gaps and folds are resolved by cronie's rules:

- a wall time that exists once fires at that instant;
- a repeated wall time (clocks fall back) fires at its first occurrence, and also at the
  second unless the job is *fixed-time*;
- a skipped wall time (clocks spring forward) fires a fixed-time job once at the first
  instant after the jump, and does not fire any other job.

The search is bounded. Matching days are found by month arithmetic (a month's matches
depend only on its length and first weekday), never minute by minute. Past the start, the
first match that exists fires; the only matches that do not are those a jump skips, and
the search steps over a whole jump at once. It ends, with None, once it has crossed the
years after which nothing new can happen (`zone.horizon`): at most some 110 years from
now in any zone, a few thousand steps.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, timedelta, tzinfo
from functools import lru_cache

from cronlink.cron.explain import explain
from cronlink.cron.expr import CronExpr
from cronlink.cron.zone import horizon, offsets, settled_year, transition, wall_of
from cronlink.errors import CronSyntaxError

Wall = tuple[int, int, int, int, int, int]
_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Search:
    """The answer of one next-fire search, and the work it took."""

    at: datetime | None
    steps: int
    """Months, days, hours and minutes stepped through, plus wall times placed in the zone."""


def next_fire(expr: CronExpr, after: datetime, tz: tzinfo = UTC) -> datetime | None:
    """The first instant strictly after `after` at which `expr` fires in zone `tz`.

    `after` must be timezone-aware; the result is in `tz` (with the right `fold`), or None
    when the expression can never fire again (or not before the year 10000).
    """
    return _Walk(expr).run(after, tz)


def search(expr: CronExpr, after: datetime, tz: tzinfo = UTC) -> Search:
    """`next_fire`, with the number of steps the search took."""
    walk = _Walk(expr)
    at = walk.run(after, tz)
    return Search(at=at, steps=walk.steps)


def check_fires(expr: CronExpr, tz: tzinfo, now: datetime) -> None:
    """Refuse `expr` when it never fires in `tz` after `now`: a `CronSyntaxError` saying
    so and why, for wherever a schedule is defined."""
    if next_fire(expr, now, tz) is not None:
        return
    zone = str(tz)
    if next_fire(expr, now, UTC) is None:
        raise CronSyntaxError("", expr.source, f"never fires in {zone} after {now.year}")
    matches = explain(expr.source)
    raise CronSyntaxError(
        "", expr.source,
        f"never fires in {zone}: every time it matches ({matches[0].lower()}{matches[1:]}) "
        f"is a time {zone} skips when its clocks go forward",
    )  # fmt: skip


def iter_fires(expr: CronExpr, after: datetime, tz: tzinfo = UTC) -> Iterator[datetime]:
    """Every fire time after `after`, in order."""
    current = next_fire(expr, after, tz)
    while current is not None:
        yield current
        current = next_fire(expr, current, tz)


class _Walk:
    """One search: the expression, the zone, and a count of the steps taken."""

    __slots__ = ("expr", "limit", "steps")

    def __init__(self, expr: CronExpr) -> None:
        self.expr = expr
        self.steps = 0
        self.limit = MAXYEAR + 1

    def run(self, after: datetime, tz: tzinfo) -> datetime | None:
        if after.tzinfo is None:
            raise ValueError("after must be timezone-aware")
        try:
            return self._next_fire(after.astimezone(UTC), tz)
        except OverflowError:  # the answer, or the start, lies beyond what datetime holds
            return None

    def _next_fire(self, start: datetime, tz: tzinfo) -> datetime | None:
        local = start.astimezone(tz)
        self.limit = _limit(tz, local.year)
        after = local + _ONE_SECOND  # its wall time, less any fraction, is the first candidate
        if tz is UTC:
            found = self.next_wall(_as_wall(after))
            return None if found is None else datetime(*found, tzinfo=UTC)
        first, second = offsets(local)
        if first != second:  # the start lies in a repeated hour
            wall = local.replace(tzinfo=None, microsecond=0, fold=0)
            return self._from_repeated_hour(wall, local.fold, first, second, tz)
        return self._first_existing(_as_wall(after), tz)

    def _from_repeated_hour(
        self, wall: datetime, fold: int, first: timedelta, second: timedelta, tz: tzinfo
    ) -> datetime | None:
        """The next fire from a start at repeated wall time `wall`, in its first pass (fold
        0) or its second: the only start from which instants do not grow with wall times."""
        jump = transition(wall, tz, first, second)
        ends = wall_of(jump, tz) + first - second  # the first wall time not repeated
        after = wall + _ONE_SECOND
        if self.expr.fixed_time:
            # A repeated time runs in the first pass only: in the second, it has run.
            return self._first_existing(_as_wall(max(after, ends) if fold else after), tz)
        found = self.next_wall(_as_wall(after))
        if found is not None and datetime(*found) < ends:
            return datetime(*found, tzinfo=tz, fold=fold)  # in the pass the start is in
        if not fold:
            # The second pass is still ahead: its matches up to the start's wall time
            # come before any after the repeated hour.
            found = self.next_wall(_as_wall(wall_of(jump, tz)))
            if found is not None and datetime(*found) <= wall:
                return datetime(*found, tzinfo=tz, fold=1)
        return self._first_existing(_as_wall(max(after, ends)), tz)

    def _first_existing(self, cursor: Wall, tz: tzinfo) -> datetime | None:
        """The instant of the first match at or after wall time `cursor` that fires.

        From here on instants grow with wall times, so the first match that exists (or,
        for a fixed-time job, the first match at all) is the answer."""
        while (found := self.next_wall(cursor)) is not None:
            self.steps += 1
            at = datetime(*found, tzinfo=tz)
            first, second = offsets(at)
            if first >= second:  # exists once, or repeated: its first occurrence
                return at
            jump = transition(datetime(*found), tz, first, second)
            if self.expr.fixed_time:
                return jump.astimezone(tz)
            cursor = _as_wall(jump.astimezone(tz))  # every wall time before it is skipped too
        return None

    def next_wall(self, at: Wall) -> Wall | None:
        """The smallest matching wall time at or after `at`, or None before the limit."""
        expr = self.expr
        year, month, day, hour, minute, second = at
        months, hours, minutes, seconds = expr.months, expr.hours, expr.minutes, expr.seconds
        while year < self.limit:
            self.steps += 1
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


@lru_cache(maxsize=1024)
def _limit(tz: tzinfo, year: int) -> int:
    """The year a search from `year` in `tz` stops at (it runs on every search)."""
    return horizon(settled_year(tz, year), year)


def _as_wall(value: datetime) -> Wall:
    return (value.year, value.month, value.day, value.hour, value.minute, value.second)
