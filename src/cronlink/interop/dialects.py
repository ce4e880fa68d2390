"""Cron as other schedulers read it, translated to and from cronlink's.

cronlink reads Vixie cron (weekdays 0-7, 0 and 7 Sunday) with Quartz's `L`, `W` and `#`,
in any IANA zone, and combines the two day fields by OR only when neither starts with `*`.
Cloudflare's cron triggers number weekdays 1-7 from Sunday, as Quartz does, run in UTC
only, and OR the day fields unless one is `*`; Kubernetes reads cron with robfig/cron,
where weekdays stop at 6 and `*/2` counts as a restriction; Cloud Scheduler reads Vixie
cron without `L`, `W` or `#`. A difference is translated when the meaning can be kept
exactly, and refused with `Untranslatable` (naming the expression and why) when it cannot.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronlink.cron import CronExpr, parse
from cronlink.cron.expr import DAY_NAMES
from cronlink.errors import CronlinkError, CronSyntaxError
from cronlink.jobs import time_zone

_NAMES = {number: name for name, number in DAY_NAMES.items()}
_BARE_STAR = re.compile(r"[*?](/0*1)?")
_STEP_FROM_STAR = re.compile(r"(^|,)[*?]/")
_DAY = r"([0-6]|SUN|MON|TUE|WED|THU|FRI|SAT)"
_PLAIN_WEEKDAYS = re.compile(rf"{_DAY}(-{_DAY})?", re.IGNORECASE)
"""A weekday item every dialect reads alike, once numbers are shifted for Cloudflare."""


class Untranslatable(CronlinkError, ValueError):
    """An expression that cannot keep its meaning in the other scheduler's dialect."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"{expression!r}: {reason}")


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    every_day: Callable[[str], bool]
    """Whether a day field counts as every day when the other is restricted (AND)."""
    last_weekday: int
    """The highest weekday number (6 where 7 is refused or means nothing)."""
    quartz: bool = False
    """`L`, `W` and `#` understood."""


def _only_star(text: str) -> bool:
    return text in ("*", "?")


def _robfig_star(text: str) -> bool:
    # robfig/cron sets its star bit for a bare `*` (or `?`) item; a step over 1 clears it.
    return any(_BARE_STAR.fullmatch(item) for item in text.split(","))


CLOUDFLARE = Dialect("Cloudflare", _only_star, last_weekday=7, quartz=True)
KUBERNETES = Dialect("Kubernetes", _robfig_star, last_weekday=6)
CLOUD_SCHEDULER = Dialect("Cloud Scheduler", lambda text: text.startswith("*"), last_weekday=7)


def from_cloudflare(text: str) -> str:
    """A Cloudflare cron trigger as cronlink's expression (both in UTC).

    Cloudflare numbers weekdays 1 (Sunday) to 7 (Saturday), reads a bare `L` there as
    Saturday and lets name ranges wrap (`FRI-SUN`); cronlink counts from 0 = Sunday.
    """
    fields = text.split()
    if len(fields) != 5:
        raise Untranslatable(text, f"Cloudflare cron has 5 fields, this has {len(fields)}")
    minute, hour, dom, month, dow = fields
    if dom.upper().startswith("L-"):
        raise Untranslatable(text, f"{dom!r} (days before the month's last) has no cronlink form")
    dom, dow = _days_as_cronlink(dom, dow, CLOUDFLARE, "1-7")
    items = [_cloudflare_weekday(text, item) for item in dow.split(",")]
    return _checked(text, " ".join([minute, hour, dom, month, ",".join(items)]))


def _days_as_cronlink(dom: str, dow: str, dialect: Dialect, weekdays: str) -> tuple[str, str]:
    """The day fields written so that cronlink combines them as `dialect` does: both
    restricted (OR), no field may start with `*`; otherwise the every-day one is `*`."""
    if dialect.every_day(dom) or dialect.every_day(dow):
        return ("*" if dialect.every_day(dom) else dom), ("*" if dialect.every_day(dow) else dow)
    return _STEP_FROM_STAR.sub(r"\g<1>1-31/", dom), _STEP_FROM_STAR.sub(rf"\g<1>{weekdays}/", dow)


def _cloudflare_weekday(text: str, item: str) -> str:
    upper = item.upper()
    if upper in ("*", "?"):
        return "*"
    if upper == "L":
        return "SAT"
    # `L` and `#` take a weekday number, which cronlink counts from 0 = Sunday.
    if "#" in upper:
        day, _, nth = upper.partition("#")
        return f"{_day_number(_from_quartz_day(text, day))}#{nth}"
    if upper.endswith("L"):
        return f"{_day_number(_from_quartz_day(text, upper[:-1]))}L"
    span, slash, step = upper.partition("/")
    if slash and not step.isdigit():
        raise Untranslatable(text, f"step {step!r} in {item!r} is not a number")
    first, dash, last = span.partition("-")
    if span in ("*", "?"):
        first, last = "1", "7"
    elif not dash:
        last = "7" if slash else first  # `N/s` runs to Saturday, the last weekday here
    start, end = _from_quartz_day(text, first), _from_quartz_day(text, last)
    if _day_number(start) <= _day_number(end):
        return f"{start}-{end}{slash}{step}" if start != end else start
    days = _weekday_span(_day_number(start), _day_number(end))
    return ",".join(_NAMES[d] for d in days[:: int(step) if slash else 1])


def _from_quartz_day(text: str, token: str) -> str:
    if token in DAY_NAMES:
        return token
    if token.isdigit() and 1 <= int(token) <= 7:
        return _NAMES[int(token) - 1]
    raise Untranslatable(text, f"weekday {token!r}: Cloudflare counts 1 (Sunday) to 7 (Saturday)")


def _day_number(token: str) -> int:
    return DAY_NAMES[token]


def _weekday_span(start: int, end: int) -> list[int]:
    """Weekdays from `start` to `end`, wrapping past Saturday as Cloudflare allows."""
    return [(start + i) % 7 for i in range((end - start) % 7 + 1)]


def to_cloudflare(expr: CronExpr, timezone: str, now: datetime) -> str:
    """cronlink's expression as a Cloudflare cron trigger, which runs in UTC and counts
    weekdays from 1 = Sunday. A zone whose clock is not UTC's all the year from `now` is
    refused."""
    if not utc_all_year(timezone, now):
        raise Untranslatable(
            expr.source,
            f"Cloudflare runs cron triggers in UTC and this schedule is in {timezone}; "
            'export with --pack (cronlink keeps the zone) or set timezone = "UTC"',
        )
    minute, hour, dom, month, dow = _days_as_theirs(expr, CLOUDFLARE)
    if dow != "*":
        dow = ",".join(_to_quartz_weekday(item) for item in dow.split(","))
    return f"{minute} {hour} {dom} {month} {dow}"


def _to_quartz_weekday(item: str) -> str:
    upper = item.upper()
    if "#" in upper:
        day, _, nth = upper.partition("#")
        return f"{_quartz_day(day)}#{nth}"
    if upper.endswith("L"):
        return f"{_quartz_day(upper[:-1])}L"
    return "-".join(str(int(day) + 1) if day.isdigit() else day for day in upper.split("-"))


def _quartz_day(token: str) -> str:
    number = DAY_NAMES[token] if token in DAY_NAMES else int(token) % 7
    return str(number + 1)


def to_vixie(expr: CronExpr, dialect: Dialect) -> str:
    """cronlink's expression in plain Vixie cron for `dialect` (Kubernetes, Cloud
    Scheduler), which has no `L`, `W` or `#`."""
    minute, hour, dom, month, dow = _days_as_theirs(expr, dialect)
    # No day-of-month token holds a letter but L and W; no weekday name ends in L.
    if (
        any(c in dom.upper() for c in "LW")
        or "#" in dow
        or any(item.upper().endswith("L") for item in dow.split(","))
    ):
        raise Untranslatable(
            expr.source, f"{dialect.name} has no L, W or # (in {dom} {dow}); keep it on cronlink"
        )
    return f"{minute} {hour} {dom} {month} {dow}"


def _days_as_theirs(expr: CronExpr, dialect: Dialect) -> tuple[str, str, str, str, str]:
    """The five fields with weekdays as plain numbers (0 = Sunday, `L`/`#` items kept) and
    the day fields combined as cronlink combines them, or Untranslatable."""
    minute, hour, dom, month, dow = _five(expr, dialect.name)
    rule = expr.days
    if dom.startswith("*") and len(rule.dom) == 31 and not _dom_specials(expr):
        dom = "*"
    if dow.startswith("*") and len(rule.dow) == 7 and not rule.dow_nth and not rule.dow_last:
        dow = "*"
    if dow != "*":
        dow = ",".join(_plain_weekdays(item) for item in dow.split(","))
    theirs_or = not dialect.every_day(dom) and not dialect.every_day(dow)
    if theirs_or != rule.either:
        how = "either" if theirs_or else "both"
        raise Untranslatable(
            expr.source,
            f"{dialect.name} would match days by {how} of {dom} and {dow}; keep it on cronlink",
        )
    return minute, hour, dom, month, dow


def _plain_weekdays(item: str) -> str:
    """A weekday item as numbers 0-6 (Sunday 0), so that no dialect reads 7 or a step
    past Saturday its own way; `L` and `#` items keep their form."""
    if "#" in item or item.upper().endswith("L") or _PLAIN_WEEKDAYS.fullmatch(item):
        return item
    return ",".join(str(d) for d in sorted(parse(f"0 0 * * {item}").days.dow))


def _dom_specials(expr: CronExpr) -> bool:
    rule = expr.days
    return rule.dom_last or rule.dom_last_weekday or bool(rule.dom_nearest_weekday)


def from_vixie(text: str, dialect: Dialect) -> str:
    """A Kubernetes or Cloud Scheduler expression as cronlink's: `?` reads as `*`, and the
    day fields combine as `dialect` combines them."""
    if text.startswith("@"):
        return _checked(text, text)
    fields = text.split()
    if len(fields) != 5:
        raise Untranslatable(
            text, f"{dialect.name} schedules here are 5-field cron, this has {len(fields)} fields"
        )
    minute, hour, dom, month, dow = fields
    dom, dow = _days_as_cronlink(dom, dow, dialect, f"0-{dialect.last_weekday}")
    if dialect.last_weekday == 6:  # `N/s` stops at Saturday, where cronlink goes on to 7
        dow = re.sub(r"(^|,)(\w+)/", r"\g<1>\g<2>-6/", dow)
    written = " ".join((minute, hour, dom, month, dow))
    return _checked(text, re.sub(r"(^|[ ,])\?", r"\g<1>*", written))


def _five(expr: CronExpr, scheduler: str) -> tuple[str, str, str, str, str]:
    fields = expr.fields
    if expr.has_seconds:
        if expr.seconds != (0,):
            raise Untranslatable(expr.source, f"{scheduler} cron has no seconds field")
        fields = fields[1:]
    minute, hour, dom, month, dow = fields
    return minute, hour, dom, month, dow


def utc_all_year(timezone: str, now: datetime) -> bool:
    """True when `timezone`'s clock reads UTC's at every instant of the year from `now`."""
    zone = UTC if timezone.upper() == "UTC" else time_zone(timezone)
    return all(
        (now + timedelta(days=d)).astimezone(zone).utcoffset() == timedelta(0)
        for d in range(0, 366, 15)
    )


def _checked(source: str, translated: str) -> str:
    try:
        parse(translated)
    except CronSyntaxError as error:
        raise Untranslatable(source, str(error)) from None
    return translated
