"""What a trigger's cursor means for the next request, and how items move it.

The watermark is the newest item seen, never the time of a poll; a timestamp cursor reads
from `watermark - lookback` with `>=`, so items sharing the boundary timestamp, or
indexed a little late, come back and the event ledger absorbs the repeats.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cronlink.automations.template import dig
from cronlink.errors import PollError
from cronlink.storable import escaped

if TYPE_CHECKING:
    from cronlink.connections.triggers import TriggerModel
    from cronlink.records.automations import Cursor

ISO = "%Y-%m-%dT%H:%M:%S.%fZ"
EPOCH_MS_ABOVE = 10**11
"""Epoch numbers at least this large are milliseconds (in seconds it is the year 5138)."""


def request_value(trigger: TriggerModel, cursor: Cursor) -> Any:
    """The `{cursor}` of the first request of a poll (None: the parameter is left out)."""
    if trigger.cursor == "token":
        return cursor.token
    if cursor.watermark is None:
        return None
    if trigger.cursor == "id":
        return cursor.watermark
    since = reread_from(trigger, cursor)
    if trigger.cursor_format == "epoch":
        return int(since.timestamp())
    if trigger.cursor_format == "epoch_ms":
        return int(since.timestamp() * 1000)
    return iso(since)


def reread_from(trigger: TriggerModel, cursor: Cursor) -> datetime:
    """Where a timestamp trigger's next read starts: a lookback behind the watermark, or
    less when the last complete read began long after the watermark (an item late by up
    to a lookback was visible then, and was read)."""
    assert cursor.watermark is not None
    watermark = parse_instant(cursor.watermark, "watermark")
    lookback = trigger.lookback_delta
    if cursor.lookback_from is None:
        return watermark - lookback
    seen = parse_instant(cursor.lookback_from, "lookback_from") - lookback
    return max(watermark - lookback, min(watermark, seen))


def begin_pass(trigger: TriggerModel, cursor: Cursor, at: datetime | None) -> Cursor:
    """A read from the watermark began at `at`, in the provider's clock (an unfinished
    one keeps its start; None: the provider did not say, and nothing changes)."""
    if trigger.cursor != "timestamp" or cursor.pass_started is not None or at is None:
        return cursor
    return dataclasses.replace(cursor, pass_started=iso(at))


def end_pass(cursor: Cursor) -> Cursor:
    """The read reached the end of the feed: later reads look back from its start."""
    if cursor.pass_started is None:
        return cursor
    return dataclasses.replace(cursor, lookback_from=cursor.pass_started, pass_started=None)


def advance(trigger: TriggerModel, cursor: Cursor, items: list[Any]) -> Cursor:
    """The cursor after `items` (oldest first): the watermark moves to the newest of them."""
    if trigger.cursor == "token" or not items:
        return cursor
    field = trigger.cursor_field or ""
    where = f"item field {field!r}"
    if trigger.cursor == "id":
        newest: int | None = max(_integer(dig(i, field, where)) for i in items)
        current = cursor.watermark
        if current is not None and newest is not None:
            newest = max(newest, _integer(current))
        return dataclasses.replace(cursor, watermark=newest)
    latest = max(parse_instant(dig(i, field, where), where) for i in items)
    if cursor.watermark is not None:
        latest = max(latest, parse_instant(cursor.watermark, "watermark"))
    return dataclasses.replace(cursor, watermark=iso(latest))


def after_watermark(trigger: TriggerModel, cursor: Cursor, items: list[Any]) -> list[Any]:
    """An id trigger's resync reads from the start: what its watermark already passed was
    seen (ids grow), even if its key has left the ledger since."""
    if trigger.cursor != "id" or cursor.watermark is None:
        return items
    seen = _integer(cursor.watermark)
    field = trigger.cursor_field or ""
    return [i for i in items if _integer(dig(i, field, f"item field {field!r}")) > seen]


def before_start(
    trigger: TriggerModel, cursor: Cursor, items: list[tuple[str, Any]]
) -> tuple[frozenset[str], Cursor]:
    """The keys of items older than the automation's start instant (they never fire), and
    the cursor without its start once no such item can be read again."""
    if cursor.start is None or trigger.cursor != "timestamp":
        return frozenset(), cursor
    start = parse_instant(cursor.start, "start")
    field = trigger.cursor_field or ""
    early = frozenset(
        key for key, item in items if parse_instant(dig(item, field, field), field) < start
    )
    if reread_from(trigger, cursor) >= start:
        cursor = dataclasses.replace(cursor, start=None)
    return early, cursor


def event_key(trigger: TriggerModel, item: Any) -> str:
    """The item's key in the event ledger. Characters no database holds (a NUL, a lone
    surrogate) are written as their escapes: one such item must not fail the commit of
    its whole batch of polls, again on every retry."""
    parts = [dig(item, name, f"item field {name!r} (part of the key)") for name in trigger.key]
    return escaped(":".join(str(p) for p in parts))[:400]


def iso(moment: datetime) -> str:
    """The form the watermark is stored and sent in: UTC, microseconds, `Z`."""
    return moment.astimezone(UTC).strftime(ISO)


def parse_instant(value: Any, where: str) -> datetime:
    """An ISO 8601 text, or epoch seconds (milliseconds above 10^11, as some providers
    send), as an aware instant; a text without an offset is UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= EPOCH_MS_ABOVE else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (ValueError, OverflowError, OSError):
            pass
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise PollError(f"{where}: {str(value)[:80]!r} is not a timestamp (ISO 8601 or epoch)")


def _integer(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PollError(f"an id cursor needs integer ids, got {value!r}") from None
