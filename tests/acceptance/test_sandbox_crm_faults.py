"""The sandbox's fault switches on its CRM: its own `crm_*` switches strike it and not the
mail provider (and the mail provider's not it), the shared ones strike both."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from cronlink.sandbox.crm import CLIENT_ID, CLIENT_SECRET
from tests.acceptance.hostile_kit import Answer, Hostile, hostile

__all__ = ["hostile"]
CONTACTS = "/crm/api/contacts"
PEOPLE = [{"external_id": f"ext-{n}", "email": f"p{n}@example.com"} for n in (1, 2)]


def crm_mint(hostile: Hostile, user: str = "alice") -> dict[str, Any]:
    return hostile.sandbox.crm.provider.grants.mint(user)


async def crm_refresh(hostile: Hostile, refresh_token: str) -> Answer:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}  # fmt: skip
    return await hostile.call("/crm/oauth/token", form=form)


async def upsert(hostile: Hostile, token: str, key: str | None = None) -> Answer:
    headers = {"Authorization": f"Bearer {token}"} | ({"Idempotency-Key": key} if key else {})
    url = f"{hostile.sandbox.url}{CONTACTS}/batch"
    async with hostile.session.post(url, json={"records": PEOPLE}, headers=headers) as response:
        return Answer(status=response.status, retry_after=response.headers.get("Retry-After"),
                      text=await response.text())  # fmt: skip


async def crm_stats(hostile: Hostile) -> dict[str, Any]:
    return dict((await hostile.call("/sandbox/crm/stats")).json())


async def test_each_providers_status_switch_strikes_it_alone(hostile: Hostile) -> None:
    mail, crm = hostile.mint("alice")["access_token"], crm_mint(hostile)["access_token"]
    await hostile.switch(crm_api_status=429, retry_after=7)
    answer = await hostile.call(CONTACTS, crm)
    assert (answer.status, answer.retry_after) == (429, "7")
    assert (await hostile.call("/api/me", mail)).status == 200
    await hostile.switch(crm_api_status=None, api_status=503, crm_token_status=500)
    assert (await hostile.call("/api/me", mail)).status == 503
    assert (await hostile.call(CONTACTS, crm)).status == 200
    assert (await crm_refresh(hostile, crm_mint(hostile)["refresh_token"])).status == 500
    assert (await hostile.call("/sandbox/crm/contacts")).status == 200  # controls never


async def test_a_drawn_throttle_pauses_the_crm_account_and_no_other(hostile: Hostile) -> None:
    mail, crm = hostile.mint("alice")["access_token"], crm_mint(hostile)["access_token"]
    await hostile.switch(crm_throttle_rate=1, retry_after=2)
    answer = await hostile.call(CONTACTS, crm)
    assert (answer.status, answer.retry_after) == (429, "2")
    await hostile.switch(crm_throttle_rate=0)
    hostile.clock.now += 1
    answer = await upsert(hostile, crm)
    assert (answer.status, answer.retry_after) == (429, "1")  # paused, and told so late
    assert (await hostile.call("/api/me", mail)).status == 200  # the mail account is not
    assert (await hostile.call(CONTACTS, crm_mint(hostile, "bob")["access_token"])).status == 200
    hostile.clock.now += 1
    assert (await upsert(hostile, crm)).status == 200
    stats = await crm_stats(hostile)
    assert (stats["throttled"], stats["pauses"], stats["paused_violations"]) == (2, 1, 1)
    assert (await hostile.stats())["throttled"] == 0


async def test_named_crm_users_are_throttled_on_the_api_only(hostile: Hostile) -> None:
    bob = crm_mint(hostile, "bob")
    await hostile.switch(crm_throttled_users=["bob"], throttled_users=["alice"])
    assert (await hostile.call(CONTACTS, bob["access_token"])).status == 429
    assert (await crm_refresh(hostile, bob["refresh_token"])).status == 200
    assert (await hostile.call(CONTACTS, crm_mint(hostile)["access_token"])).status == 200
    assert (await hostile.call("/api/me", hostile.mint("bob")["access_token"])).status == 200


async def test_a_lost_batch_answer_was_written_and_its_key_replays_it(hostile: Hostile) -> None:
    token = crm_mint(hostile)["access_token"]
    await hostile.switch(crm_lose_rate=1)
    assert (await hostile.call(CONTACTS, token)).status == 200  # reads are never lost
    with pytest.raises(aiohttp.ClientError):
        await upsert(hostile, token, key="k-1")
    await hostile.switch(crm_lose_rate=0)
    assert len(hostile.sandbox.crm.contacts.stored) == 2  # written all the same
    replayed = await upsert(hostile, token, key="k-1")
    assert (replayed.status, replayed.json()["created"]) == (200, 2)
    assert (await upsert(hostile, token)).json()["unchanged"] == 2  # no key: a duplicate
    stats = await crm_stats(hostile)
    assert (stats["lost_answers"], stats["replays"], stats["duplicates"]) == (1, 1, 2)
    assert (stats["created"], stats["batches"]) == (2, 2)


async def test_malformed_answers_come_before_the_crm_sees_the_request(hostile: Hostile) -> None:
    token = crm_mint(hostile)["access_token"]
    await hostile.switch(crm_malformed_rate=1)
    answer = await upsert(hostile, token)
    assert answer.status == 200
    with pytest.raises(ValueError, match="Expecting"):
        answer.json()
    assert hostile.sandbox.crm.contacts.stored == []
    refreshed = await crm_refresh(hostile, crm_mint(hostile)["refresh_token"])
    assert refreshed.text.startswith("<html>")
    assert (await hostile.call("/api/feed/id", hostile.mint("alice")["access_token"])).status == 200
    assert (await crm_stats(hostile))["malformed"] == 2


async def test_hangs_and_the_shared_latency_hold_crm_answers(hostile: Hostile) -> None:
    token = crm_mint(hostile)["access_token"]
    await hostile.switch(crm_hang_rate=1, hang_seconds=0.3)
    started = time.monotonic()
    held = asyncio.create_task(hostile.call(CONTACTS, token))
    while hostile.sandbox.crm.provider.grants.stats.hangs < 1:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert (await hostile.call("/api/me", hostile.mint("alice")["access_token"])).status == 200
    assert not held.done()
    assert (await held).status == 200
    assert time.monotonic() - started >= 0.3
    await hostile.switch(crm_hang_rate=0, latency_ms=150)
    started = time.monotonic()
    assert (await hostile.call(CONTACTS, token)).status == 200
    assert time.monotonic() - started >= 0.15


async def test_the_crms_token_lifetime_rotation_and_grace_are_its_own(hostile: Hostile) -> None:
    await hostile.switch(crm_token_lifetime=0)
    expired = crm_mint(hostile)
    assert expired["expires_in"] == 0
    assert (await hostile.call(CONTACTS, expired["access_token"])).status == 401
    assert (await hostile.call("/api/me", hostile.mint("alice")["access_token"])).status == 200
    await hostile.switch(crm_token_lifetime=3600, crm_rotation=False)
    kept = (await crm_refresh(hostile, expired["refresh_token"])).json()
    assert kept["refresh_token"] == expired["refresh_token"]
    assert (await hostile.call(CONTACTS, kept["access_token"])).status == 200
    await hostile.switch(crm_rotation=True, crm_grace_seconds=-1)
    rotated = (await crm_refresh(hostile, kept["refresh_token"])).json()["refresh_token"]
    assert rotated != kept["refresh_token"]
    reused = await crm_refresh(hostile, kept["refresh_token"])  # past its (no) grace
    assert (reused.status, reused.json()["error"]) == (400, "invalid_grant")
    stats = await crm_stats(hostile)
    assert (stats["reuse_revocations"], stats["revoked_grants"]) == (1, 1)
    assert hostile.sandbox.grants.grace == 120  # the mail provider's grace is untouched


async def test_a_seed_replays_the_crms_draws(hostile: Hostile) -> None:
    tokens = [crm_mint(hostile, f"user{n}")["access_token"] for n in range(12)]

    async def statuses() -> list[int]:
        hostile.sandbox.crm.provider.faults.pauses.clear()
        return [(await hostile.call(CONTACTS, t)).status for t in tokens]

    await hostile.switch(crm_throttle_rate=0.5, seed=7)
    first = await statuses()
    await hostile.switch(seed=7)
    assert await statuses() == first
    assert set(first) == {200, 429}
