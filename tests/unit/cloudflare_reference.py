"""Cloudflare's cron semantics, read straight from the expression, for checking what
cronlink makes of imported triggers. Independent of `cronlink.cron` and of the dialect
translation: weekdays 1 (Sunday) to 7, `L`, `LW`, `nW`, `nL`, `n#k`, ranges that wrap,
UTC only, and either day field matching when both are restricted (as Cloudflare's parser).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MONTHS = {name.upper(): n for n, name in enumerate(calendar.month_abbr) if name}


def _number(token: str, names: dict[str, int]) -> int:
    return names[token.upper()] if token.upper() in names else int(token)


def _set(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-")
            first, last = _number(a, names), _number(b, names)
        else:
            first = _number(span, names)
            last = high if step else first
        if first <= last:
            run = list(range(first, last + 1))
        else:  # wraps, as Cloudflare's weekday ranges may
            run = list(range(first, high + 1)) + list(range(low, last + 1))
        values.update(run[:: int(step) if step else 1])
    return values


def _weekday(day: date) -> int:
    """Cloudflare's number of `day`'s weekday: 1 = Sunday."""
    return (day.weekday() + 1) % 7 + 1


def _business(day: date) -> bool:
    return _weekday(day) not in (1, 7)


def _dom_matches(text: str, day: date) -> bool:
    length = calendar.monthrange(day.year, day.month)[1]
    days = [date(day.year, day.month, d) for d in range(1, length + 1)]
    for item in text.upper().split(","):
        if item == "L":
            hit = day.day == length
        elif item == "LW":
            hit = day == max(d for d in days if _business(d))
        elif item.endswith("W"):
            target = int(item[:-1])
            hit = day == min((d for d in days if _business(d)),
                             key=lambda d: (abs(d.day - target), d.day))  # fmt: skip
        else:
            hit = day.day in _set(item, 1, 31, {})
        if hit:
            return True
    return False


def _dow_matches(text: str, day: date) -> bool:
    length = calendar.monthrange(day.year, day.month)[1]
    for item in text.upper().split(","):
        if item == "L":
            hit = _weekday(day) == 7
        elif "#" in item:
            wd, _, nth = item.partition("#")
            hit = _weekday(day) == _number(wd, _DAYS) and (day.day - 1) // 7 + 1 == int(nth)
        elif item.endswith("L"):
            hit = _weekday(day) == _number(item[:-1], _DAYS) and day.day + 7 > length
        else:
            hit = _weekday(day) in _set(item, 1, 7, _DAYS)
        if hit:
            return True
    return False


def fires(expression: str, after: datetime) -> Iterator[datetime]:
    """The instants `expression` fires strictly after `after`, in UTC, in order."""
    minute, hour, dom, month, dow = expression.split()
    minutes, hours = sorted(_set(minute, 0, 59, {})), sorted(_set(hour, 0, 23, {}))
    months = _set(month, 1, 12, _MONTHS)
    day = after.astimezone(UTC).date()
    while True:
        if day.month in months:
            by_dom, by_dow = _dom_matches(dom, day), _dow_matches(dow, day)
            both_restricted = dom != "*" and dow != "*"
            if (by_dom or by_dow) if both_restricted else (by_dom and by_dow):
                for h in hours:
                    for m in minutes:
                        at = datetime(day.year, day.month, day.day, h, m, tzinfo=UTC)
                        if at > after:
                            yield at
        day += timedelta(days=1)
