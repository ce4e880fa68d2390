"""The sandbox throttles by account, pauses a throttled account until its Retry-After, and
counts the requests that did not wait."""

from __future__ import annotations

import pytest

from tests.acceptance.hostile_kit import Hostile, hostile

__all__ = ["hostile"]
FEED = "/api/feed/id?after=0"


@pytest.mark.parametrize("path", ["/oauth/token", "/api/me", FEED])
async def test_a_throttle_pauses_that_account_everywhere_and_no_other(
    hostile: Hostile, path: str
) -> None:
    alice, bob = hostile.mint("alice"), hostile.mint("bob")
    rotated = await hostile.refresh(alice["refresh_token"])
    assert rotated.status == 200
    hostile.sandbox.configure(throttle_rate=1, retry_after=30)
    if path == "/oauth/token":
        first = await hostile.refresh(rotated.json()["refresh_token"])
    else:
        first = await hostile.call(path, alice["access_token"])
    assert (first.status, first.retry_after) == (429, "30")
    hostile.sandbox.configure(throttle_rate=0)
    hostile.clock.now += 10.2
    for paused in (
        await hostile.call("/api/me", alice["access_token"]),
        await hostile.call(FEED, alice["access_token"]),
        await hostile.refresh(alice["refresh_token"]),  # rotated away, still Alice's
    ):
        assert (paused.status, paused.retry_after) == (429, "20")
    assert (await hostile.call("/api/me", bob["access_token"])).status == 200
    assert (await hostile.call(FEED, bob["access_token"])).status == 200
    stats = await hostile.stats()
    assert (stats["throttled"], stats["pauses"]) == (4, 1)


async def test_a_request_without_a_known_token_is_never_throttled(hostile: Hostile) -> None:
    hostile.sandbox.configure(throttle_rate=1)
    assert (await hostile.call("/api/me", "at_unknown")).status == 401
    assert (await hostile.refresh("rt_unknown")).status == 400
    assert (await hostile.call("/sandbox/stats")).status == 200  # the controls never are
    assert (await hostile.stats())["throttled"] == 0


async def test_requests_after_the_tolerance_are_violations_until_the_pause_ends(
    hostile: Hostile,
) -> None:
    token = hostile.mint("alice")["access_token"]
    hostile.sandbox.configure(throttle_rate=1, retry_after=30, pause_tolerance=0.5)
    assert (await hostile.call("/api/me", token)).status == 429
    hostile.sandbox.configure(throttle_rate=0)
    hostile.clock.now += 0.4  # already on its way when the 429 was sent
    assert (await hostile.call("/api/me", token)).status == 429
    assert (await hostile.stats())["paused_violations"] == 0
    hostile.clock.now += 0.2
    assert (await hostile.call(FEED, token)).status == 429
    stats = await hostile.stats()
    assert stats["paused_violations"] == 1
    assert stats["violations"] == [{"user": "alice", "path": "/api/feed/id", "early_by": 29.4}]
    hostile.clock.now += 30
    assert (await hostile.call("/api/me", token)).status == 200
    assert (await hostile.stats())["paused_violations"] == 1


async def test_only_the_last_hundred_violations_are_kept(hostile: Hostile) -> None:
    token = hostile.mint("alice")["access_token"]
    hostile.sandbox.configure(throttle_rate=1, retry_after=600, pause_tolerance=0)
    for _ in range(106):
        hostile.clock.now += 1
        assert (await hostile.call("/api/me", token)).status == 429
    stats = await hostile.stats()
    assert stats["paused_violations"] == 105
    assert len(stats["violations"]) == 100
    assert stats["violations"][-1]["early_by"] == 600 - 105


async def test_named_users_are_throttled_while_named_without_a_pause(hostile: Hostile) -> None:
    token = hostile.mint("alice")["access_token"]
    hostile.sandbox.configure(throttled_users=("alice",), retry_after=600)
    answer = await hostile.call("/api/me", token)
    assert (answer.status, answer.retry_after) == (429, "600")
    hostile.sandbox.configure(throttled_users=())
    assert (await hostile.call("/api/me", token)).status == 200
    stats = await hostile.stats()
    assert (stats["throttled"], stats["pauses"], stats["paused_violations"]) == (1, 0, 0)
