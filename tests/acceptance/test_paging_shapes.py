"""Triggers in the pagination shapes providers use, against the sandbox's feeds: Stripe's
`has_more`, Microsoft Graph's next and delta links, Google's page and sync tokens. Every
item becomes exactly one event with one run, across pages, polls and stale tokens."""

from __future__ import annotations

import pytest

from tests.acceptance.automation_kit import PAGE, PAGES, STEPS, AutoKit, auto
from tests.acceptance.sandbox_kit import kit

__all__ = ["auto", "kit"]
SHAPES = ["stripe_like", "graph_delta", "google_sync"]
DELTAS = ["graph_delta", "google_sync"]
"""The shapes whose cursor is a provider's delta token (a link, for Graph)."""


async def _automation(auto: AutoKit, trigger: str, user: str = "alice") -> int:
    cid = await auto.kit.connect(user)
    added = await auto.automations.add(
        name=f"{trigger}-{user}", connection_id=cid, trigger=trigger, steps=STEPS,
        start="beginning",
    )  # fmt: skip
    return added.id


def _keys(items: list[dict[str, object]]) -> list[str]:
    return [str(i["id"]) for i in items]


@pytest.mark.parametrize("trigger", SHAPES)
async def test_a_burst_is_read_across_pages_and_polls(auto: AutoKit, trigger: str) -> None:
    aid = await _automation(auto, trigger)
    items = await auto.feed(count=5 * PAGE)
    assert (await auto.poll()).events == PAGES * PAGE  # cut at max_pages ...
    assert (await auto.automations.get(aid)).cursor.resume is not None
    await auto.poll()  # ... and read on by the next poll
    assert await auto.ledger(aid) == _keys(items)
    items += await auto.feed(count=2)
    await auto.poll()
    await auto.poll()
    assert await auto.ledger(aid) == _keys(items)
    assert await auto.run_count() == await auto.runs_of_events()  # a run per poll, not per item


@pytest.mark.parametrize("trigger", DELTAS)
async def test_the_delta_token_of_the_last_page_starts_the_next_poll(
    auto: AutoKit, trigger: str
) -> None:
    aid = await _automation(auto, trigger)
    items = await auto.feed(count=PAGE + 3)
    await auto.poll()
    cursor = (await auto.automations.get(aid)).cursor
    assert cursor.resume is None
    assert cursor.token is not None
    if trigger == "graph_delta":  # the delta link itself, requested as it is
        assert cursor.token.startswith(f"{auto.kit.sandbox.url}/api/feed/graph?")
        assert "$deltatoken=0.13" in cursor.token
    else:
        assert cursor.token == "0.13"
    items += await auto.feed(count=2)
    asked = auto.kit.sandbox.feed.requests
    assert (await auto.poll()).events == 2
    assert auto.kit.sandbox.feed.requests == asked + 1  # only the changes: one short page
    assert (await auto.automations.get(aid)).cursor.token != cursor.token
    assert await auto.ledger(aid) == _keys(items)


@pytest.mark.parametrize("mid_burst", [False, True], ids=["after-a-round", "mid-burst"])
@pytest.mark.parametrize("trigger", DELTAS)
async def test_a_stale_delta_token_or_page_resyncs(
    auto: AutoKit, trigger: str, mid_burst: bool
) -> None:
    aid = await _automation(auto, trigger)
    items = await auto.feed(count=5 * PAGE if mid_burst else 3)
    await auto.poll()
    cursor = (await auto.automations.get(aid)).cursor
    assert (cursor.resume is not None) is mid_burst
    await auto.expire()  # every token and page link from before answers 410
    items += await auto.feed(count=2)
    for _ in range(3):
        assert (await auto.poll()).failed == 0
    assert sorted(await auto.ledger(aid), key=int) == _keys(items)
    assert await auto.run_count() == await auto.runs_of_events()  # a run per poll, not per item
    token = (await auto.automations.get(aid)).cursor.token or ""
    assert "$deltatoken=1." in token if trigger == "graph_delta" else token.startswith("1.")


async def test_keep_query_false_is_what_a_feed_refusing_the_first_query_needs(
    auto: AutoKit,
) -> None:
    strict = await _automation(auto, "google_sync")
    keeping = await _automation(auto, "google_sync_keeping_query", user="bob")
    items = await auto.feed(count=2)
    await auto.poll()  # full listings: there is no syncToken to repeat yet
    items += await auto.feed(count=PAGE + 1)  # two pages of changes after the sync token
    assert (await auto.poll()).failed == 0  # the refused second page ends the poll, not the first
    assert (await auto.poll()).failed == 1  # resuming at the refused page fails the next poll
    refused = await auto.automations.get(keeping)
    assert "HTTP 400" in (refused.last_error or "")
    assert await auto.ledger(keeping) == _keys(items[: 2 + PAGE])  # the page before is kept
    assert await auto.ledger(strict) == _keys(items)
