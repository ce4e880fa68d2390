"""Cursor arithmetic: instants in every form providers send, the UTC watermark, slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronlink.automations import slots
from cronlink.automations.cursors import (
    begin_pass,
    end_pass,
    event_key,
    iso,
    parse_instant,
    reread_from,
)
from cronlink.connections.triggers import TriggerModel
from cronlink.errors import PollError
from cronlink.records.automations import Cursor
from cronlink.storable import escaped, flaw


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-05-01T12:00:00+02:00", datetime(2030, 5, 1, 10, tzinfo=UTC)),
        ("2030-05-01T10:00:00Z", datetime(2030, 5, 1, 10, tzinfo=UTC)),
        ("2030-05-01T10:00:00", datetime(2030, 5, 1, 10, tzinfo=UTC)),
        (1_903_860_000, datetime(2030, 5, 1, 10, tzinfo=UTC)),
        (1_903_860_000_000, datetime(2030, 5, 1, 10, tzinfo=UTC)),
        (1_903_860_000.5, datetime(2030, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)),
    ],
)
def test_instants_in_every_form(value: object, expected: datetime) -> None:
    assert parse_instant(value, "created_at") == expected


@pytest.mark.parametrize("value", [10**20, -(10**20), "soon", None, True, [1]])
def test_what_is_not_an_instant_is_a_poll_error_naming_the_field(value: object) -> None:
    with pytest.raises(PollError, match=r"created_at: .* is not a timestamp"):
        parse_instant(value, "created_at")


def test_the_watermark_is_utc() -> None:
    berlin = datetime(2030, 5, 1, 12, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    )
    assert iso(berlin) == "2030-05-01T12:00:00.000000Z"


def test_slots_spread_names_over_the_interval_and_come_strictly_after() -> None:
    every = timedelta(minutes=1)
    offsets = {slots.offset_for(f"auto-{n}", every).seconds for n in range(2000)}
    assert len(offsets) == 60  # every second of the minute is used
    at = datetime(2030, 1, 1, 0, 0, 17, tzinfo=UTC)
    offset = timedelta(seconds=17)
    assert slots.next_slot(at, every, offset) == at + every
    assert slots.next_slot(at - timedelta(microseconds=1), every, offset) == at


TRIGGER = TriggerModel.model_validate(
    {"path": "/feed", "cursor": "timestamp", "cursor_field": "at", "lookback": "2m"}
)
NOON = datetime(2030, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lookback_from", "expected"),
    [
        (None, NOON - timedelta(minutes=2)),  # no complete read yet: a whole lookback
        (NOON + timedelta(seconds=30), NOON - timedelta(seconds=90)),  # caught up: the same
        (NOON + timedelta(hours=1), NOON),  # far behind: what was late was read then
        (NOON - timedelta(hours=1), NOON - timedelta(minutes=2)),  # the provider's clock lags
    ],
)
def test_a_read_looks_back_from_when_the_last_complete_read_began(
    lookback_from: datetime | None, expected: datetime
) -> None:
    cursor = Cursor(
        watermark=iso(NOON), lookback_from=None if lookback_from is None else iso(lookback_from)
    )
    assert reread_from(TRIGGER, cursor) == expected


def test_a_pass_keeps_its_first_start_until_it_reaches_the_end() -> None:
    cursor = begin_pass(TRIGGER, Cursor(watermark=iso(NOON)), NOON)
    again = begin_pass(TRIGGER, cursor, NOON + timedelta(minutes=1))  # a resumed poll
    assert again.pass_started == iso(NOON)
    done = end_pass(again)
    assert (done.pass_started, done.lookback_from) == (None, iso(NOON))
    assert begin_pass(TRIGGER, done, None) == done  # no Date from the provider: no change


@pytest.mark.parametrize("odd", ["a\x00b", "a\ud800b", "\x00"])
def test_an_event_key_is_storable_whatever_the_provider_sent(odd: str) -> None:
    # A key the database refuses would fail the commit of the whole batch of polls, on
    # every retry: the feed, and every automation polled with it, would stop for good.
    key = event_key(TRIGGER, {"id": odd})
    assert flaw(key) is None
    assert key == escaped(odd)
    assert event_key(TRIGGER, {"id": odd}) == key  # the same item, the same event


def test_a_plain_event_key_is_unchanged() -> None:
    assert event_key(TRIGGER, {"id": "msg-1\\u0041 é"}) == "msg-1\\u0041 é"
