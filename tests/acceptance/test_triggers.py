"""Triggers against the sandbox's feeds, one per cursor kind: every item becomes exactly
one event with exactly one run, across bursts, page boundaries, late items, expired
cursors and 429s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronlink.cron import parse as parse_cron
from cronlink.errors import ConfigError
from cronlink.records.automations import EventState
from tests.acceptance.automation_kit import PAGE, PAGES, STEPS, AutoKit, auto
from tests.acceptance.sandbox_kit import kit

__all__ = ["auto", "kit"]
KINDS = ["new_email", "new_item", "change", "new_email_by_page"]
"""A cursor of each kind (timestamp, id, token), and each pagination (token, link, token,
page number)."""


async def _automation(
    auto: AutoKit, trigger: str, *, start: str = "beginning", user: str = "alice"
) -> int:
    cid = await auto.kit.connect(user)
    added = await auto.automations.add(
        name=f"{trigger}-{user}", connection_id=cid, trigger=trigger, steps=STEPS, start=start
    )
    return added.id


def _keys(items: list[dict[str, object]]) -> list[str]:
    return [str(i["id"]) for i in items]


@pytest.mark.parametrize("trigger", KINDS)
async def test_a_burst_of_five_pages_is_read_across_polls(auto: AutoKit, trigger: str) -> None:
    aid = await _automation(auto, trigger)
    items = await auto.feed(count=5 * PAGE)
    first = await auto.poll()
    assert first.events == PAGES * PAGE  # bounded per poll ...
    assert (await auto.automations.get(aid)).cursor.resume is not None
    await auto.poll()  # ... and continued on the next
    assert await auto.ledger(aid) == _keys(items)
    assert await auto.run_count() == await auto.runs_of_events()  # a run per poll, not per item
    await auto.poll()
    assert await auto.ledger(aid) == _keys(items)


@pytest.mark.parametrize("trigger", KINDS)
async def test_equal_timestamps_across_a_page_boundary(auto: AutoKit, trigger: str) -> None:
    aid = await _automation(auto, trigger)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    items = await auto.feed(count=PAGE + 5, created_at=stamp)
    await auto.poll()
    items += await auto.feed(count=3, created_at=stamp)  # more at the boundary instant
    await auto.poll()
    await auto.poll()
    assert await auto.ledger(aid) == _keys(items)


@pytest.mark.parametrize("trigger", KINDS)
async def test_items_arriving_late_with_older_timestamps(auto: AutoKit, trigger: str) -> None:
    aid = await _automation(auto, trigger)
    items = await auto.feed(count=4)
    await auto.poll()
    items += await auto.feed(count=3, late_by=30)  # indexed late: stamped before the watermark
    await auto.poll()
    assert sorted(await auto.ledger(aid), key=int) == _keys(items)
    automation = await auto.automations.get(aid)
    if trigger == "new_email":  # the watermark is the newest item seen, not the poll's time
        assert automation.cursor.watermark == max(i["created_at"] for i in items)


@pytest.mark.parametrize("trigger", KINDS)
async def test_an_expired_cursor_resyncs_and_absorbs_the_repeats(
    auto: AutoKit, trigger: str
) -> None:
    aid = await _automation(auto, trigger)
    items = await auto.feed(count=5 * PAGE)
    await auto.poll()  # stops mid-burst: a resume URL, and for `change` a page token
    if trigger == "new_item":
        await auto.feed(expired_below=10_000)  # every stored `after` is gone now
    else:
        await auto.expire()
    items += await auto.feed(count=2)
    for _ in range(4):
        await auto.poll()
    if trigger == "new_item":
        await auto.feed(expired_below=0)
        await auto.poll()
    assert sorted(await auto.ledger(aid), key=int) == _keys(items)
    assert await auto.run_count() == await auto.runs_of_events()  # a run per poll, not per item


async def test_etags_save_unchanged_polls(auto: AutoKit) -> None:
    aid = await _automation(auto, "new_email")
    await auto.feed(count=2)
    await auto.poll()
    tally = await auto.poll()
    assert tally.not_modified == 1
    assert auto.kit.sandbox.feed.not_modified == 1
    await auto.feed(count=1)
    assert (await auto.poll()).events == 1
    assert len(await auto.ledger(aid)) == 3


@pytest.mark.parametrize("trigger", KINDS)
async def test_a_429_storm_pauses_that_account_not_the_others(auto: AutoKit, trigger: str) -> None:
    alice = await _automation(auto, trigger, user="alice")
    bob = await _automation(auto, trigger, user="bob")
    await auto.feed(count=3)
    auto.kit.sandbox.configure(throttled_users=("alice",), retry_after=600)
    tally = await auto.poll()
    assert (tally.failed, tally.paused, tally.events) == (0, 1, 3)
    paused = await auto.automations.get(alice)
    assert paused.poll_failures == 0  # a 429 paces the poll: it is no failure to back off from
    assert "429" in (paused.last_error or "")
    for _ in range(4):  # Alice's account is not called again before its Retry-After
        await auto.poll()
    assert auto.kit.sandbox.grants.stats.throttled == 1
    assert await auto.ledger(alice) == []
    auto.kit.sandbox.configure(throttled_users=())
    await auto.poll(timedelta(minutes=10))
    assert len(await auto.ledger(alice)) == 3
    assert len(await auto.ledger(bob)) == 3


async def test_starting_from_now_never_fires_what_was_there(auto: AutoKit) -> None:
    old = await auto.feed(count=2 * PAGE)
    aid = await _automation(auto, "new_item", start="now")
    await auto.poll()
    new = await auto.feed(count=2)
    await auto.poll()
    events = await auto.automations.events(aid)
    fired = [str(e.data["id"]) for e in events if e.state is EventState.PENDING]
    assert fired == _keys(new)
    assert {str(e.data["id"]) for e in events if e.state is EventState.BASELINE} == set(_keys(old))
    assert await auto.run_count() == await auto.runs_of_events() == 1  # both in one


async def test_bad_definitions_are_refused_with_where(auto: AutoKit) -> None:
    cid = await auto.kit.connect()
    with pytest.raises(ConfigError, match="no trigger 'nope'; its triggers: change, google_sync,"):
        await auto.automations.add(name="a", connection_id=cid, trigger="nope", steps=STEPS)
    with pytest.raises(ConfigError, match=r"steps\[0\] \(x\): give exactly one of"):
        await auto.automations.add(
            name="a", connection_id=cid, trigger="new_item", steps=[{"name": "x"}]
        )
    await auto.automations.add(name="a", connection_id=cid, trigger="new_item", steps=STEPS)
    with pytest.raises(ConfigError, match="an automation named 'a' exists already"):
        await auto.automations.add(name="a", connection_id=cid, trigger="new_item", steps=STEPS)


async def test_an_item_this_code_cannot_read_fails_its_own_automation_only(
    auto: AutoKit,
) -> None:
    by_time = await _automation(auto, "new_email")
    by_id = await _automation(auto, "new_item", user="bob")
    await auto.feed(items=[{"subject": "fine"}])
    await auto.feed(items=[{"subject": "odd"}], created_at="sometime soon")
    tally = await auto.poll()
    assert (tally.polls, tally.failed) == (1, 1)
    broken = await auto.automations.get(by_time)
    assert broken.poll_failures == 1
    assert "is not a timestamp" in (broken.last_error or "")
    assert len(await auto.ledger(by_id)) == 2


async def test_offsets_are_turned_into_utc_in_the_watermark(auto: AutoKit) -> None:
    aid = await _automation(auto, "new_email")
    await auto.feed(items=[{"subject": "from Berlin"}], created_at="2030-05-01T12:00:00+02:00")
    await auto.poll()
    assert (await auto.automations.get(aid)).cursor.watermark == "2030-05-01T10:00:00.000000Z"


async def test_a_start_instant_fires_only_what_came_after_it(auto: AutoKit) -> None:
    cid = await auto.kit.connect()
    before = await auto.feed(count=2, late_by=60)
    start = datetime.now(UTC) - timedelta(seconds=30)
    after = await auto.feed(count=2)
    added = await auto.automations.add(
        name="since", connection_id=cid, trigger="new_email", steps=STEPS,
        start=start.isoformat(),
    )  # fmt: skip
    await auto.poll()
    events = await auto.automations.events(added.id)
    states = {str(e.data["id"]): e.state for e in events}
    assert states == {
        **{k: EventState.BASELINE for k in _keys(before)},
        **{k: EventState.PENDING for k in _keys(after)},
    }


async def test_each_poll_run_polls_until_the_next_one_starts(auto: AutoKit) -> None:
    """Runs tile the time: none leaves the end of its minute unpolled."""
    service = auto.automations
    longest = timedelta(seconds=60)
    at = datetime(2026, 12, 6, 5, 0, 0, 200_000, tzinfo=UTC)  # a run started late
    assert service.poll_window(at, longest) == timedelta(seconds=59, microseconds=800_000)
    service.poll_schedule = parse_cron("*/5 * * * * *")
    assert service.poll_window(at, longest) == timedelta(seconds=4, microseconds=800_000)
    service.poll_schedule = parse_cron("0 * * * *")
    assert service.poll_window(at, longest) == longest
