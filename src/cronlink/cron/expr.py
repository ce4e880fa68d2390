"""Parsing cron expressions into `CronExpr`, with errors that name field, token and reason."""

from __future__ import annotations

import calendar
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from cronlink.errors import CronSyntaxError

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
DAY_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]
    every: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "every", tuple(range(self.low, self.high + 1)))


SECOND = _Field("second", 0, 59, {})
MINUTE = _Field("minute", 0, 59, {})
HOUR = _Field("hour", 0, 23, {})
DOM = _Field("day-of-month", 1, 31, {})
MONTH = _Field("month", 1, 12, MONTH_NAMES)
DOW = _Field("day-of-week", 0, 7, DAY_NAMES)


class DayRule(NamedTuple):
    """Which days of a month match: plain values plus the `L`, `W` and `#` extensions.

    A named tuple rather than a dataclass: it is built on every parse, and is a value."""

    dom: frozenset[int]
    dom_last: bool = False
    dom_last_weekday: bool = False
    dom_nearest_weekday: frozenset[int] = frozenset()
    dow: frozenset[int] = frozenset()
    dow_nth: frozenset[tuple[int, int]] = frozenset()
    dow_last: frozenset[int] = frozenset()
    either: bool = False
    """Vixie rule: both day fields restricted, so a day matches when either matches."""


@dataclass(frozen=True, slots=True, weakref_slot=True)
class CronExpr:
    """A parsed cron expression: the allowed values of each field, sorted."""

    source: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    days: DayRule
    fixed_time: bool
    """Minute and hour fields both do not start with `*`: the DST rules of cronie apply."""
    has_seconds: bool
    fields: tuple[str, ...]
    _month_days: dict[tuple[int, int], tuple[int, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _kind_days: dict[tuple[int, int, int], tuple[int, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The days of `month` in `year` that match, ascending (cached)."""
        found = self._month_days.get((year, month))
        if found is None:
            if len(self._month_days) > 512:
                self._month_days.clear()
            found = self._month_days[(year, month)] = self._days_of_kind(year, month)
        return found

    def _days_of_kind(self, year: int, month: int) -> tuple[int, ...]:
        """A month's matches depend only on its length and the weekday of its 1st: at most
        91 kinds of month, however many years a search crosses."""
        length = _month_length(year, month)
        if self.days is _EVERY_DAY:
            return _DAYS_UP_TO[length]
        kind = (month, length, date(year, month, 1).weekday())
        found = self._kind_days.get(kind)
        if found is None:
            found = self._kind_days[kind] = _match_days(self.days, length, (kind[2] + 1) % 7)
        return found


_PARSED: weakref.WeakValueDictionary[str, CronExpr] = weakref.WeakValueDictionary()
"""Every expression in use, parsed once: schedules that read the same share one `CronExpr`
and its caches (thousands of schedules often use a few hundred expressions)."""


def parse(text: str) -> CronExpr:
    """Parse a 5-field (or 6-field, seconds first) cron expression or a nickname."""
    source = text.strip()
    parsed = _PARSED.get(source)
    if parsed is None:
        parsed = _PARSED[source] = _parse(source)
    return parsed


def _parse(source: str) -> CronExpr:
    expanded = source
    if source.startswith("@"):
        expanded = NICKNAMES.get(source.lower(), "")
        if not expanded:
            raise CronSyntaxError(
                "", source, f"unknown nickname {source!r}; use one of {', '.join(NICKNAMES)}"
            )
    parts = expanded.split()
    if len(parts) not in (5, 6):
        raise CronSyntaxError(
            "", source, f"expected 5 fields (or 6 with seconds first), got {len(parts)}"
        )
    has_seconds = len(parts) == 6
    seconds_field = parts[:1] if has_seconds else []
    seconds = _values(SECOND, parts.pop(0)) if has_seconds else (0,)
    minute, hour, dom, month, dow = parts
    months = _values(MONTH, month)
    days = _day_rule(dom, dow)
    _check_reachable(days, months, dom, dow)
    return CronExpr(
        source=source,
        seconds=seconds,
        minutes=_values(MINUTE, minute),
        hours=_values(HOUR, hour),
        months=months,
        days=days,
        fixed_time=not minute.startswith("*") and not hour.startswith("*"),
        has_seconds=has_seconds,
        fields=(*seconds_field, minute, hour, dom, month, dow),
    )


def _values(spec: _Field, text: str) -> tuple[int, ...]:
    if text == "*":
        return spec.every
    if text.isdigit() and spec is not DOW:
        return (_number(spec, text, text),)
    found: set[int] = set()
    for item in _items(spec, text):
        found.update(_item_values(spec, item))
    if spec is DOW and 7 in found:
        found.discard(7)
        found.add(0)
    return tuple(sorted(found))


def _items(spec: _Field, text: str) -> list[str]:
    items = text.split(",")
    if any(not item for item in items):
        raise CronSyntaxError(spec.name, text, f"empty item in {text!r}")
    return items


def _item_values(spec: _Field, item: str) -> range:
    body, _, step_text = item.partition("/")
    step = 1
    if step_text or item.endswith("/"):
        step = _number(spec, step_text, item, what="step")
        if step == 0:
            raise CronSyntaxError(spec.name, item, f"step 0 in {item!r} must be at least 1")
    if body == "*":
        low, high = spec.low, spec.high
    elif "-" in body:
        first, _, last = body.partition("-")
        low, high = _number(spec, first, item), _number(spec, last, item)
        if low > high:
            raise CronSyntaxError(spec.name, item, f"range {body!r} runs backwards")
    else:
        low = _number(spec, body, item)
        high = spec.high if step_text else low
    return range(low, high + 1, step)


def _number(spec: _Field, text: str, item: str, what: str = "value") -> int:
    if not text.isdigit():
        if what == "value" and text.upper() in spec.names:
            return spec.names[text.upper()]
        shown = repr(text) if text else "a missing number"
        raise CronSyntaxError(spec.name, item, f"{shown} in {item!r} is not a {what}")
    value = int(text) if len(text) < 6 else 10**6
    if what == "value" and not spec.low <= value <= spec.high:
        raise CronSyntaxError(spec.name, item, f"{value} is out of range {spec.low}-{spec.high}")
    return value


def _day_rule(dom: str, dow: str) -> DayRule:
    if dom == dow == "*":
        return _EVERY_DAY
    dom_values: set[int] = set()
    nearest: set[int] = set()
    last = last_weekday = False
    if dom.isdigit():
        dom_values.add(_number(DOM, dom, dom))
    for item in () if dom == "*" or dom.isdigit() else _items(DOM, dom):
        upper = item.upper()
        if upper == "L":
            last = True
        elif upper == "LW":
            last_weekday = True
        elif upper.endswith("W"):
            nearest.add(_number(DOM, item[:-1], item))
        else:
            dom_values.update(_item_values(DOM, item))
    dow_values: set[int] = set()
    nth: set[tuple[int, int]] = set()
    dow_last: set[int] = set()
    for item in () if dow == "*" else _items(DOW, dow):
        upper = item.upper()
        if "#" in upper:
            day_text, _, n_text = upper.partition("#")
            n = _number(_Field(DOW.name, 1, 5, {}), n_text, item)
            nth.add((_number(DOW, day_text, item) % 7, n))
        elif upper.endswith("L"):
            if upper == "L":
                raise CronSyntaxError(DOW.name, item, "'L' needs a weekday before it, as in 5L")
            dow_last.add(_number(DOW, upper[:-1], item) % 7)
        else:
            dow_values.update(v % 7 for v in _item_values(DOW, item))
    return DayRule(
        dom=_EVERY_DAY.dom if dom == "*" else frozenset(dom_values),
        dom_last=last,
        dom_last_weekday=last_weekday,
        dom_nearest_weekday=frozenset(nearest),
        dow=_EVERY_DAY.dow if dow == "*" else frozenset(dow_values),
        dow_nth=frozenset(nth),
        dow_last=frozenset(dow_last),
        either=not dom.startswith("*") and not dow.startswith("*"),
    )


_EVERY_DAY = DayRule(dom=frozenset(range(1, 32)), dow=frozenset(range(7)))
_DAYS_UP_TO = {n: tuple(range(1, n + 1)) for n in (28, 29, 30, 31)}


def _month_length(year: int, month: int) -> int:
    if month == 2:
        return 29 if calendar.isleap(year) else 28
    return _LONGEST_MONTH[month]


def _check_reachable(days: DayRule, months: tuple[int, ...], dom: str, dow: str) -> None:
    """Refuse a day rule that no day of the chosen months can satisfy (`0 0 30 2 *`).

    A month's matches depend only on its length and the weekday of its 1st, and the
    Gregorian calendar has every such month, so checking those 91 kinds of month decides
    whether the rule ever matches."""
    if days.either or days is _EVERY_DAY:
        return  # the day-of-week field alone matches some day of every month
    every_dom = _dom_days(days, 31, 0) is None
    every_dow = _dow_days(days, 31, 0) is None
    names = ", ".join(calendar.month_name[m] for m in months) if len(months) < 12 else "any month"
    if not (every_dom or days.dom_last or days.dom_last_weekday):
        first = min(days.dom | days.dom_nearest_weekday)
        if first > max(_LONGEST_MONTH[m] for m in months):
            shown = str(first) if first in days.dom else f"{first}W"
            raise CronSyntaxError(DOM.name, shown, f"day {shown} never occurs in {names}")
    if every_dom or every_dow:
        return  # one field matches every day: the other alone decides, and it matches
    for month in months:
        lengths = (28, 29) if month == 2 else (_LONGEST_MONTH[month],)
        if any(_match_days(days, n, first) for n in lengths for first in range(7)):
            return
    raise CronSyntaxError(
        "", f"{dom} {dow}",
        f"never fires: no day of {names} matches both day-of-month {dom!r} and "
        f"day-of-week {dow!r}",
    )  # fmt: skip


def _match_days(rule: DayRule, length: int, sunday_based: int) -> tuple[int, ...]:
    """The days of a month of `length` days whose 1st is weekday `sunday_based` (0 =
    Sunday) that match `rule`."""
    by_dom = _dom_days(rule, length, sunday_based)
    by_dow = _dow_days(rule, length, sunday_based)
    # None: the field matches every day. Vixie: with both restricted, either one suffices.
    if by_dom is None:
        return _DAYS_UP_TO[length] if by_dow is None or rule.either else tuple(sorted(by_dow))
    if by_dow is None:
        return _DAYS_UP_TO[length] if rule.either else tuple(sorted(by_dom))
    return tuple(sorted(by_dom | by_dow if rule.either else by_dom & by_dow))


def _dom_days(rule: DayRule, length: int, sunday_based: int) -> set[int] | None:
    """Days matched by the day-of-month field, or None when it matches every day."""
    specials = rule.dom_last or rule.dom_last_weekday or rule.dom_nearest_weekday
    if len(rule.dom) == 31 and not specials:
        return None
    days = {d for d in rule.dom if d <= length}
    if specials:

        def weekday(day: int) -> int:
            return (sunday_based + day - 1) % 7

        if rule.dom_last:
            days.add(length)
        if rule.dom_last_weekday:
            days.add(_nearest_weekday(length, length, weekday))
        days.update(
            _nearest_weekday(d, length, weekday) for d in rule.dom_nearest_weekday if d <= length
        )
    return days


def _dow_days(rule: DayRule, length: int, sunday_based: int) -> set[int] | None:
    """Days matched by the day-of-week field, or None when it matches every day."""
    if len(rule.dow) == 7 and not rule.dow_nth and not rule.dow_last:
        return None
    days: set[int] = set()
    for wd in rule.dow:
        days.update(range(1 + (wd - sunday_based) % 7, length + 1, 7))
    for wd, n in rule.dow_nth:
        if (day := 1 + (wd - sunday_based) % 7 + 7 * (n - 1)) <= length:
            days.add(day)
    for wd in rule.dow_last:
        days.add(length - ((sunday_based + length - 1) % 7 - wd) % 7)
    return days


def _nearest_weekday(day: int, length: int, weekday: Callable[[int], int]) -> int:
    """The Mon-Fri day nearest `day`, never leaving the month (Quartz `W`)."""
    wd = weekday(day)
    if wd == 6:  # Saturday: Friday before, or Monday after when the 1st
        return day + 2 if day == 1 else day - 1
    if wd == 0:  # Sunday: Monday after, or Friday before when the last day
        return day - 2 if day == length else day + 1
    return day
