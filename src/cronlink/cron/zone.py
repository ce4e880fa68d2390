"""What a zone does to wall times: where a wall time lies on the time line, and from which
year the zone's offsets follow nothing but its yearly rule.

The second fact is what lets a search prove that an expression never fires again. A zone
file (TZif) lists its transitions up to some instant and then names a yearly rule (its
POSIX TZ footer, such as `EST5EDT,M3.2.0,M11.1.0`). Under such a rule the offsets of the
wall times of a year depend only on which weekday the year starts and whether it is a leap
year, and so does which days a cron expression matches that year. Every such kind of
year, and every run of three, occurs in any 28 years that hold no skipped leap day (2100,
2200, 2300, 2500, ...). So once a search has crossed 28 such years after the zone settled
without a fire, no later year can hold one.
"""

from __future__ import annotations

import importlib.resources
import struct
import zoneinfo
from datetime import MAXYEAR, MINYEAR, UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from pathlib import Path

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_ONE_SECOND = timedelta(seconds=1)
_CYCLE = 28
"""Years in which the calendar repeats, when they hold no skipped leap day."""
_UNKNOWN_RULES_YEARS = 400
"""For a tzinfo that is not a zone file: years searched past the start (a Gregorian cycle)."""


def settled_year(tz: tzinfo, year: int) -> int:
    """The first year from which `tz`'s offsets follow only its yearly rule.

    UTC and fixed offsets never change. For a tzinfo that is not read from a zone file
    the answer is `year` plus a Gregorian cycle: a search then ends after 400 years."""
    if tz is UTC or isinstance(tz, timezone):
        return MINYEAR
    key = getattr(tz, "key", None)
    if isinstance(tz, zoneinfo.ZoneInfo) and isinstance(key, str):
        last = _last_transition(key)
        if last is not None:
            return last
    return year + _UNKNOWN_RULES_YEARS


def horizon(settled: int, year: int) -> int:
    """The first year a search from `year` need not enter: by then it has crossed 28 years
    after `settled` (and the year around each) that hold no skipped leap day."""
    first = max(settled, year) + 1
    century = -(-(first - 1) // 100) * 100  # the only one these 30 years can hold
    if century <= first + _CYCLE and century % 400:
        first = century + 2
    return min(first + _CYCLE, MAXYEAR + 1)


def offsets(at: datetime) -> tuple[timedelta, timedelta]:
    """The UTC offsets of wall time `at` (aware, in its zone) at its first and second
    occurrence.

    Equal: the wall time exists once. First larger: it is repeated (clocks fall back).
    First smaller: it is skipped (clocks spring forward); PEP 495 gives the offsets
    before and after the jump."""
    here = at.utcoffset()
    there = at.replace(fold=1 - at.fold).utcoffset()
    assert here is not None
    assert there is not None
    return (there, here) if at.fold else (here, there)


def transition(wall: datetime, tz: tzinfo, before: timedelta, after: timedelta) -> datetime:
    """The instant `tz` changed its offset from `before` to `after` around the skipped or
    repeated wall time `wall` (to the second: zone files hold whole seconds)."""
    at = (wall - _NAIVE_EPOCH) // _ONE_SECOND
    low = at - int(max(before, after).total_seconds())  # still on `before`
    high = at - int(min(before, after).total_seconds())  # already on `after`
    while high - low > 1:
        middle = (low + high) // 2
        if (_EPOCH + timedelta(seconds=middle)).astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return _EPOCH + timedelta(seconds=high)


def wall_of(instant: datetime, tz: tzinfo) -> datetime:
    """The naive wall time of `instant` in `tz`."""
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


@cache
def _last_transition(key: str) -> int | None:
    """The first year whose wall times all lie after the last transition listed in zone
    `key`'s file (None when the file cannot be read as TZif)."""
    data = _zone_file(key)
    if data is None or data[:4] != b"TZif" or len(data) < 44:
        return None
    counts = struct.unpack(">6l", data[20:44])
    start, size = 44, 4
    if data[4:5] != b"\0":  # version 2 and later: the 64-bit block follows the 32-bit one
        isut, isstd, leap, times, types, chars = counts
        start += times * 5 + types * 6 + chars + leap * 8 + isstd + isut + 44
        counts = struct.unpack(">6l", data[start - 24 : start])
        size = 8
    times = counts[3]
    if times == 0:
        return MINYEAR
    offset = start + (times - 1) * size
    (last,) = struct.unpack(">q" if size == 8 else ">l", data[offset : offset + size])
    return min((_EPOCH + timedelta(seconds=last)).year + 2, MAXYEAR)


def _zone_file(key: str) -> bytes | None:
    """The bytes `zoneinfo` reads for `key`: the first file on its search path, else the
    `tzdata` package's."""
    for root in zoneinfo.TZPATH:
        path = Path(root, key)
        if path.is_file():
            return path.read_bytes()
    *package, name = key.split("/")
    try:
        return (
            importlib.resources.files(".".join(["tzdata.zoneinfo", *package]))
            .joinpath(name)
            .read_bytes()
        )
    except (ModuleNotFoundError, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
