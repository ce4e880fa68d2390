"""The sandbox's drawn faults: lost refresh answers, hangs, malformed answers, a seed that
replays them, and all of them at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import aiohttp
import pytest

from cronlink.sandbox import Sandbox
from tests.acceptance.hostile_kit import Answer, Hostile, hostile

__all__ = ["hostile"]
FEED = "/api/feed/id?after=0"


@pytest.mark.parametrize(("grace", "retried"), [(10, 200), (0, 400)])
async def test_a_lost_refresh_answer_rotated_the_grant_and_grace_decides_the_retry(
    hostile: Hostile, grace: float, retried: int
) -> None:
    tokens = hostile.mint("alice")
    old = tokens["refresh_token"]
    hostile.sandbox.configure(lose_token_rate=1, grace_seconds=grace)
    assert (await hostile.call("/api/me", tokens["access_token"])).status == 200  # refreshes only
    with pytest.raises(aiohttp.ClientError):
        await hostile.refresh(old)
    grant = hostile.sandbox.grants.family(old)
    assert grant is not None
    assert grant.refresh_token != old
    lost = grant.refresh_token  # issued, never received
    hostile.sandbox.configure(lose_token_rate=0)
    answer = await hostile.refresh(old)
    assert answer.status == retried
    stats = await hostile.stats()
    assert (stats["refreshes"], stats["lost_answers"]) == (1 + (retried == 200), 1)
    if retried == 200:
        assert answer.json()["refresh_token"] not in (old, lost)
        assert stats["grace_reuses"] == 1
    else:
        assert answer.json()["error"] == "invalid_grant"
        assert grant.revoked
        assert (stats["reuse_revocations"], stats["revoked_grants"]) == (1, 1)


async def test_a_hang_holds_the_answer_without_holding_the_server(hostile: Hostile) -> None:
    token = hostile.mint("alice")["access_token"]
    hostile.sandbox.configure(hang_rate=1, hang_seconds=0.5)
    started = time.monotonic()
    held = asyncio.create_task(hostile.call("/api/me", token))
    while hostile.sandbox.grants.stats.hangs < 1:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert (await hostile.stats())["hangs"] == 1  # answered meanwhile
    assert not held.done()
    assert (await held).status == 200
    assert time.monotonic() - started >= 0.5


@pytest.mark.timeout(15)
async def test_closing_the_sandbox_drops_a_long_hang_at_once() -> None:
    async with aiohttp.ClientSession() as session:
        async with Sandbox() as sandbox:
            sandbox.configure(hang_rate=1, hang_seconds=35)
            held = asyncio.create_task(session.get(f"{sandbox.url}/api/me"))
            while sandbox.grants.stats.hangs < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            closing = time.monotonic()
        assert time.monotonic() - closing < 3
        with pytest.raises(aiohttp.ClientError):
            await held


async def test_malformed_answers_are_200s_that_are_not_json(hostile: Hostile) -> None:
    tokens = hostile.mint("alice")
    hostile.sandbox.configure(malformed_rate=1)
    for answer in (
        await hostile.refresh(tokens["refresh_token"]),
        await hostile.call(FEED, tokens["access_token"]),
    ):
        assert answer.status == 200
        with pytest.raises(json.JSONDecodeError):
            answer.json()
    assert (await hostile.call("/api/me", tokens["access_token"])).json()["user"] == "alice"
    grant = hostile.sandbox.grants.family(tokens["refresh_token"])
    assert grant is not None
    assert grant.refresh_token == tokens["refresh_token"]  # garbage before the provider
    stats = await hostile.stats()
    assert (stats["malformed"], stats["refreshes"]) == (2, 0)


async def test_a_seed_replays_the_same_faults(hostile: Hostile) -> None:
    token = hostile.mint("alice")["access_token"]

    async def garbled() -> list[bool]:
        return [(await hostile.call(FEED, token)).text == '{"items": [' for _ in range(20)]

    hostile.sandbox.configure(seed=7, malformed_rate=0.5)
    first = await garbled()
    await hostile.switch(seed=7)
    assert await garbled() == first
    assert 0 < sum(first) < 20


async def test_every_fault_at_once_still_answers_each_request_one_way(hostile: Hostile) -> None:
    """Four accounts refresh, probe and read the feed through the whole mix; each request
    meets at most one fault, and the stats count what the clients saw."""
    hostile.sandbox.configure(
        seed=3, throttle_rate=0.15, retry_after=1, hang_rate=0.15, hang_seconds=0.01,
        malformed_rate=0.15, lose_token_rate=0.15, grace_seconds=10, token_lifetime=20,
    )  # fmt: skip
    accounts = [hostile.mint(user) for user in ("ann", "ben", "cat", "dan")]
    seen: Counter[str] = Counter()
    for _ in range(12):
        hostile.clock.now += 2  # every pause is over by the next round
        for tokens in accounts:
            for path in ("/oauth/token", "/api/me", FEED):
                try:
                    if path == "/oauth/token":
                        answer = await hostile.refresh(tokens["refresh_token"])
                    else:
                        answer = await hostile.call(path, tokens["access_token"])
                except aiohttp.ClientError:
                    seen["lost"] += 1
                    continue
                seen[_kind(answer)] += 1
                if path == "/oauth/token" and _kind(answer) == "ok":
                    tokens.update(answer.json())
    stats = await hostile.stats()
    assert seen["429"] == stats["throttled"] > stats["pauses"] > 0  # paused for the round
    assert seen["lost"] == stats["lost_answers"] > 0
    assert seen["garbage"] == stats["malformed"] > 0
    assert stats["hangs"] > 0
    assert stats["paused_violations"] == 0
    assert seen["ok"] > 0


def _kind(answer: Answer) -> str:
    if answer.status == 429:
        assert answer.retry_after == "1"
        return "429"
    try:
        answer.json()
    except json.JSONDecodeError:
        return "garbage"
    return "ok" if answer.status == 200 else "refused"
