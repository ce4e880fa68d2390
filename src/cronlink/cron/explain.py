"""Cron expressions in plain English: "30 2 * * 1-5" is "At 02:30, Monday through Friday"."""

from __future__ import annotations

import calendar
from collections.abc import Callable

from cronlink.cron.expr import DAY_NAMES, MONTH_NAMES, parse

_WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


def explain(text: str) -> str:
    """One sentence saying when `text` fires; raises `CronSyntaxError` like `parse`."""
    expr = parse(text)
    fields = list(expr.fields)
    second = fields.pop(0) if expr.has_seconds else "0"
    minute, hour, dom, month, dow = fields
    parts = [_time(second, minute, hour)]
    days = [p for p in (_dom(dom), _dow(dow)) if p]
    if days:
        parts.append(" or ".join(days) if expr.days.either else ", ".join(days))
    if month != "*":
        parts.append("in " + _phrase(month, "", _month_name).strip())
    return ", ".join(parts)


def _time(second: str, minute: str, hour: str) -> str:
    if second == "0" and _plain(minute) and _plain(hour):
        times = [f"{h:02d}:{m:02d}" for h in _ints(hour) for m in _ints(minute)]
        if len(times) <= 6:
            return "At " + _join(times)
    phrase = _head(minute, "minute")
    if not (hour == "*" and minute.startswith("*")):
        phrase += " past " + ("every hour" if hour == "*" else _phrase(hour, "hour", str))
    if second != "0":
        rest = "" if minute == hour == "*" else ", " + phrase
        phrase = _head(second, "second") + rest
    return phrase[0].upper() + phrase[1:]


def _head(text: str, unit: str) -> str:
    phrase = _phrase(text, unit, str)
    return phrase if phrase.startswith("every") else "at " + phrase


def _phrase(text: str, unit: str, name_of: Callable[[str], str]) -> str:
    """`1,15` -> "days 1 and 15", `*/5` -> "every 5 minutes", `9-17` -> "hour 9 through 17"."""
    values: list[str] = []
    phrases: list[str] = []
    for item in text.split(","):
        body, _, step = item.partition("/")
        if body == "*":
            phrases.append(f"every {step} {unit}s" if step else f"every {unit}")
        elif "-" in body or step:
            low, _, high = body.partition("-")
            span = f"{name_of(low)} through {name_of(high)}" if high else f"{name_of(low)} on"
            phrases.append(
                f"every {step} {unit}s from {span}" if step else f"{unit} {span}".strip()
            )
        else:
            values.append(name_of(body))
    if values:
        plural = "s" if len(values) > 1 else ""
        phrases.insert(0, f"{unit}{plural} {_join(values)}" if unit else _join(values))
    return _join(phrases)


def _dom(text: str) -> str:
    if text == "*":
        return ""
    phrases: list[str] = []
    plain: list[str] = []
    for item in text.upper().split(","):
        if item == "L":
            phrases.append("on the last day of the month")
        elif item == "LW":
            phrases.append("on the last weekday of the month")
        elif item.endswith("W"):
            phrases.append(f"on the weekday nearest day {item[:-1]} of the month")
        else:
            plain.append(item)
    if plain:
        phrases.insert(0, "on " + _phrase(",".join(plain), "day", str) + " of the month")
    return _join(phrases)


def _dow(text: str) -> str:
    if text == "*":
        return ""
    phrases: list[str] = []
    plain: set[int] = set()
    for item in text.upper().split(","):
        if "#" in item:
            day, _, n = item.partition("#")
            phrases.append(f"on the {_ORDINALS[int(n)]} {_weekday(day)} of the month")
        elif item.endswith("L"):
            phrases.append(f"on the last {_weekday(item[:-1])} of the month")
        elif "-" in item and "/" not in item:
            phrases.append(_phrase(item, "", _weekday))
        else:
            plain.update(v % 7 for v in parse(f"0 0 * * {item}").days.dow)
    if plain:
        phrases.insert(0, "on " + _join([_WEEKDAYS[d] for d in sorted(plain)]))
    return _join(phrases)


def _weekday(token: str) -> str:
    value = DAY_NAMES.get(token.upper())
    return _WEEKDAYS[(int(token) if value is None else value) % 7]


def _month_name(token: str) -> str:
    number = int(token) if token.isdigit() else MONTH_NAMES[token.upper()]
    return calendar.month_name[number]


def _plain(text: str) -> bool:
    return all(item.isdigit() for item in text.split(","))


def _ints(text: str) -> list[int]:
    return sorted(int(item) for item in text.split(","))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
