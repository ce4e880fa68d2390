"""Cron as other schedulers read it, translated to and from cronlink's.

cronlink reads Vixie cron (weekdays 0-7, 0 and 7 Sunday) with Quartz's `L`, `W` and `#`,
in any IANA zone. Cloudflare's cron triggers number weekdays 1-7 from Sunday, as Quartz
does, and run in UTC only; Kubernetes and Cloud Scheduler read plain Vixie cron without
`L`, `W` or `#`. A difference is translated when the meaning can be kept exactly, and
refused with `Untranslatable` (naming the expression and the reason) when it cannot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronlink.cron import CronExpr, parse
from cronlink.cron.expr import DAY_NAMES
from cronlink.errors import CronSyntaxError

_NAMES = {number: name for name, number in DAY_NAMES.items()}


class Untranslatable(ValueError):
    """An expression that cannot keep its meaning in the other scheduler's dialect."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"{expression!r}: {reason}")


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
    items = [_cloudflare_weekday(text, item) for item in dow.split(",")]
    return _checked(text, " ".join([minute, hour, dom, month, ",".join(items)]))


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
    if "-" in span:
        first, _, last = span.partition("-")
        start, end = _from_quartz_day(text, first), _from_quartz_day(text, last)
        if _day_number(start) <= _day_number(end):
            return f"{start}-{end}{slash}{step}"
        days = _weekday_span(_day_number(start), _day_number(end))
        return ",".join(_NAMES[d] for d in days[:: int(step) if step.isdigit() else 1])
    return _from_quartz_day(text, span) + (slash + step if slash else "")


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


def to_cloudflare(expr: CronExpr, timezone: str) -> str:
    """cronlink's expression as a Cloudflare cron trigger, which runs in UTC and counts
    weekdays from 1 = Sunday. A zone whose clock is not UTC's all year is refused."""
    if not utc_all_year(timezone):
        raise Untranslatable(
            expr.source,
            f"Cloudflare runs cron triggers in UTC and this schedule is in {timezone}; "
            'export with --pack (cronlink keeps the zone) or set timezone = "UTC"',
        )
    minute, hour, dom, month, dow = _five(expr, "Cloudflare")
    if dow != "*":
        dow = ",".join(_to_quartz_weekday(expr, item) for item in dow.split(","))
    return f"{minute} {hour} {dom} {month} {dow}"


def _to_quartz_weekday(expr: CronExpr, item: str) -> str:
    upper = item.upper()
    if "#" in upper:
        day, _, nth = upper.partition("#")
        return f"{_quartz_day(day)}#{nth}"
    if upper.endswith("L"):
        return f"{_quartz_day(upper[:-1])}L"
    days = sorted(parse(f"0 0 * * {item}").days.dow)
    return ",".join(str(d + 1) for d in days)


def _quartz_day(token: str) -> str:
    number = DAY_NAMES[token] if token in DAY_NAMES else int(token) % 7
    return str(number + 1)


def to_vixie(expr: CronExpr, scheduler: str) -> str:
    """cronlink's expression in plain Vixie cron, weekdays 0-6, for `scheduler`
    (Kubernetes, Cloud Scheduler), which has no `L`, `W` or `#`."""
    minute, hour, dom, month, dow = _five(expr, scheduler)
    # No day-of-month token holds a letter but L and W; no weekday name ends in L.
    if (
        any(c in dom.upper() for c in "LW")
        or "#" in dow
        or any(item.upper().endswith("L") for item in dow.split(","))
    ):
        raise Untranslatable(
            expr.source, f"{scheduler} has no L, W or # (in {dom} {dow}); keep it on cronlink"
        )
    if "7" in dow.replace("/7", ""):  # Sunday as 7, which Kubernetes refuses
        dow = ",".join(str(d) for d in sorted(expr.days.dow))
    return f"{minute} {hour} {dom} {month} {dow}"


def from_vixie(text: str, scheduler: str) -> str:
    """A Kubernetes or Cloud Scheduler expression as cronlink's: `?` reads as `*`."""
    fields = text.split()
    if text.startswith("@"):
        return _checked(text, text)
    if len(fields) != 5:
        raise Untranslatable(
            text, f"{scheduler} schedules here are 5-field cron, this has {len(fields)} fields"
        )
    return _checked(text, " ".join("*" if f == "?" else f for f in fields))


def _five(expr: CronExpr, scheduler: str) -> tuple[str, str, str, str, str]:
    fields = expr.fields
    if expr.has_seconds:
        if expr.seconds != (0,):
            raise Untranslatable(expr.source, f"{scheduler} cron has no seconds field")
        fields = fields[1:]
    minute, hour, dom, month, dow = fields
    return minute, hour, dom, month, dow


def utc_all_year(timezone: str) -> bool:
    """True when `timezone`'s clock reads UTC's at every instant of the coming year."""
    zone = UTC if timezone.upper() == "UTC" else ZoneInfo(timezone)
    start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return all(
        (start + timedelta(days=d)).astimezone(zone).utcoffset() == timedelta(0)
        for d in range(0, 366, 15)
    )


def _checked(source: str, translated: str) -> str:
    try:
        parse(translated)
    except CronSyntaxError as error:
        raise Untranslatable(source, str(error)) from None
    return translated
