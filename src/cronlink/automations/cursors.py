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

if TYPE_CHECKING:
    from cronlink.automations.model import Cursor
    from cronlink.automations.triggers import TriggerModel

ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def request_value(trigger: TriggerModel, cursor: Cursor) -> Any:
    """The `{cursor}` of the first request of a poll (None: the parameter is left out)."""
    if trigger.cursor == "token":
        return cursor.token
    if cursor.watermark is None:
        return None
    if trigger.cursor == "id":
        return cursor.watermark
    return (parse_instant(cursor.watermark, "watermark") - trigger.lookback_delta).strftime(ISO)


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
    return dataclasses.replace(cursor, watermark=latest.strftime(ISO))


def event_key(trigger: TriggerModel, item: Any) -> str:
    parts = [dig(item, name, f"item field {name!r} (part of the key)") for name in trigger.key]
    return ":".join(str(p) for p in parts)[:400]


def parse_instant(value: Any, where: str) -> datetime:
    """An ISO 8601 text or epoch seconds, as an aware instant (naive texts are UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise PollError(f"{where}: {value!r} is not a timestamp (ISO 8601 or epoch seconds)")


def _integer(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PollError(f"an id cursor needs integer ids, got {value!r}") from None
