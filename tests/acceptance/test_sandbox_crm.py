"""The sandbox's CRM over real HTTP: its own OAuth client and grants, the contacts API
(upserts by external id, idempotency, rejections, pagination), and cronlink's connections
to it. Its faults are in test_sandbox_crm_faults.py."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from cronlink.connections.tokens import exchange_code
from cronlink.errors import RefreshError
from cronlink.records.connections import Health
from cronlink.sandbox.crm import CLIENT_ID, CLIENT_SECRET
from tests.acceptance.automation_kit import STEPS, AutoKit, auto
from tests.acceptance.sandbox_kit import Kit, kit

__all__ = ["auto", "kit"]
CALLBACK = "http://127.0.0.1:9/oauth/callback"
BATCH = "/crm/api/contacts/batch"


async def call(kit: Kit, method: str, path: str, token: str = "", **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers |= kwargs.pop("headers", {})
    url = f"{kit.sandbox.url}{path}"
    async with kit.session.request(method, url, headers=headers, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def crm_tokens(kit: Kit, user: str = "alice") -> dict[str, Any]:
    status, tokens = await call(kit, "POST", "/sandbox/crm/grants", json={"user": user})
    assert status == 200
    return dict(tokens)


async def upsert(
    kit: Kit, token: str, records: list[Any], key: str | None = None
) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    return await call(kit, "POST", BATCH, token, json={"records": records}, headers=headers)


def people(first: int, last: int) -> list[dict[str, Any]]:
    return [
        {"external_id": f"ext-{n}", "email": f"p{n}@example.com", "name": f"person {n}"}
        for n in range(first, last + 1)
    ]


async def crm_stats(kit: Kit) -> dict[str, Any]:
    return dict((await call(kit, "GET", "/sandbox/crm/stats"))[1])


async def test_the_code_flow_with_the_crm_client_gives_tokens_for_the_crm(kit: Kit) -> None:
    provider = kit.connections.providers.get("sandbox-crm")
    verifier = secrets.token_urlsafe(48)
    uri = prepare_grant_uri(
        provider.url("authorize_url"), CLIENT_ID, "code", CALLBACK, "contacts.read", "st",
        code_challenge=create_s256_code_challenge(verifier), code_challenge_method="S256",
        login_hint="carol",
    )  # fmt: skip
    async with kit.session.get(uri, allow_redirects=False) as response:
        assert response.status == 302
        code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
    now = datetime.now(UTC)
    mail = kit.connections.providers.get("sandbox")
    with pytest.raises(RefreshError, match="invalid_grant"):  # codes are the CRM's own
        await exchange_code(kit.session, mail, code, CALLBACK, verifier, now)
    tokens = await exchange_code(kit.session, provider, code, CALLBACK, verifier, now)
    assert tokens.refresh_token is not None
    status, me = await call(kit, "GET", "/crm/api/me", tokens.access_token)
    assert (status, me["user"], me["scope"]) == (200, "carol", "contacts.read")
    assert (await call(kit, "GET", "/api/me", tokens.access_token))[0] == 401


async def test_the_crm_client_authenticates_in_the_form_only(kit: Kit) -> None:
    refresh = (await crm_tokens(kit))["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    basic = {"Authorization": aiohttp.encode_basic_auth(CLIENT_ID, CLIENT_SECRET)}
    status, body = await call(kit, "POST", "/crm/oauth/token", data=form, headers=basic)
    assert (status, body["error"]) == (401, "invalid_client")
    form |= {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    status, body = await call(kit, "POST", "/crm/oauth/token", data=form)
    assert status == 200
    assert body["refresh_token"] != refresh  # rotated
    assert (await crm_stats(kit))["refreshes"] == 1
    assert (await kit.stats())["refreshes"] == 0


async def test_each_provider_refuses_the_others_tokens(kit: Kit) -> None:
    mail, crm = await kit.mint("alice"), await crm_tokens(kit, "alice")
    for path in ("/crm/api/me", "/crm/api/contacts", "/crm/api/contacts/1"):
        assert (await call(kit, "GET", path, mail["access_token"]))[0] == 401, path
    assert (await upsert(kit, mail["access_token"], people(1, 1)))[0] == 401
    for path in ("/api/me", "/api/records", "/api/feed/id"):
        assert (await call(kit, "GET", path, crm["access_token"]))[0] == 401, path
    crm_form = {"grant_type": "refresh_token", "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, "refresh_token": mail["refresh_token"]}  # fmt: skip
    status, body = await call(kit, "POST", "/crm/oauth/token", data=crm_form)
    assert (status, body["error"]) == (400, "invalid_grant")
    mail_form = {"grant_type": "refresh_token", "refresh_token": crm["refresh_token"]}
    basic = {"Authorization": aiohttp.encode_basic_auth("cronlink-sandbox", "sandbox-secret")}
    status, body = await call(kit, "POST", "/oauth/token", data=mail_form, headers=basic)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_an_upsert_updates_by_external_id_and_a_repeat_writes_nothing(kit: Kit) -> None:
    token = (await crm_tokens(kit))["access_token"]
    status, first = await upsert(kit, token, people(1, 3))
    assert status == 200
    assert (first["created"], first["updated"], first["unchanged"]) == (3, 0, 0)
    assert [r["id"] for r in first["results"]] == ["1", "2", "3"]
    _, again = await upsert(kit, token, people(1, 3))
    assert (again["created"], again["unchanged"]) == (0, 3)
    changed = [*people(2, 3), {"external_id": "ext-1", "email": "new@example.com"}]
    _, third = await upsert(kit, token, changed)
    assert (third["updated"], third["unchanged"]) == (1, 2)
    assert third["results"][2] == {"index": 2, "id": "1", "external_id": "ext-1",
                                   "status": "updated"}  # fmt: skip
    _, stored = await call(kit, "GET", "/sandbox/crm/contacts")
    assert stored["count"] == 3
    one = stored["contacts"][0]
    assert (one["email"], one["name"]) == ("new@example.com", "person 1")  # merged
    stats = await crm_stats(kit)
    assert (stats["created"], stats["updated"], stats["duplicates"]) == (3, 1, 5)
    assert (stats["batches"], stats["largest_batch"]) == (3, 3)


async def test_an_idempotency_key_replays_the_first_answer(kit: Kit) -> None:
    token = (await crm_tokens(kit))["access_token"]
    first = await upsert(kit, token, people(1, 5), key="batch-1")
    await upsert(kit, token, [*people(1, 2), {"external_id": "ext-1", "email": "x@y.z"}])
    assert await upsert(kit, token, people(1, 5), key="batch-1") == first
    status, reused = await upsert(kit, token, people(6, 7), key="batch-1")
    assert (status, reused["error"]) == (422, "idempotency_key_reused")
    stats = await crm_stats(kit)
    assert (stats["batches"], stats["replays"], stats["refused_batches"]) == (2, 1, 1)
    assert (stats["contacts"], stats["created"]) == (5, 5)


async def test_invalid_records_are_rejected_alone_with_their_index(kit: Kit) -> None:
    token = (await crm_tokens(kit))["access_token"]
    records: list[Any] = [
        {"external_id": "a", "email": "a@example.com"},
        {"external_id": "b"},
        {"external_id": "c", "email": "not-an-email"},
        {"email": "d@example.com"},
        "e",
        {"external_id": "f", "email": "f@example.com", "id": "9"},
        {"external_id": 7, "email": "g@example.com"},
    ]
    status, answer = await upsert(kit, token, records)
    assert (status, answer["created"], answer["rejected"]) == (200, 2, 5)
    reasons = {e["index"]: e["reason"] for e in answer["errors"]}
    assert reasons == {
        1: "missing email", 2: "invalid email",
        3: "missing external_id (a non-empty string or an integer)",
        4: "a record must be an object", 5: "id: set by the CRM, not writable",
    }  # fmt: skip
    assert [r["external_id"] for r in answer["results"]] == ["a", "7"]
    assert (await crm_stats(kit))["rejected"] == 5


async def test_a_batch_over_the_limit_is_refused_naming_it(kit: Kit) -> None:
    token = (await crm_tokens(kit))["access_token"]
    status, answer = await upsert(kit, token, people(1, 101))
    assert (status, answer["error"], answer["limit"]) == (400, "batch_too_large", 100)
    assert "at most 100 records" in answer["message"]
    assert (await upsert(kit, token, people(1, 100)))[0] == 200
    kit.sandbox.configure(crm_batch_limit=500)
    assert (await upsert(kit, token, people(1, 500)))[1]["created"] == 400
    assert (await call(kit, "POST", BATCH, token, json={"records": 1}))[0] == 400
    stats = await crm_stats(kit)
    assert (stats["contacts"], stats["refused_batches"]) == (500, 2)


async def test_pages_read_every_contact_exactly_once_in_a_stable_order(kit: Kit) -> None:
    token = (await crm_tokens(kit))["access_token"]
    for first in range(1, 1001, 100):
        await upsert(kit, token, people(first, first + 99))
    await upsert(kit, token, [{"external_id": "ext-5", "email": "moved@example.com"}])
    seen: list[str] = []
    cursor, pages = "", 0
    while cursor is not None:
        status, page = await call(kit, "GET", f"/crm/api/contacts?limit=37&cursor={cursor}", token)
        assert status == 200
        seen += [c["id"] for c in page["contacts"]]
        cursor, pages = page["next_cursor"], pages + 1
    assert seen == [str(n) for n in range(1, 1001)]
    assert pages == 28
    _, stored = await call(kit, "GET", "/sandbox/crm/contacts")
    assert [c["id"] for c in stored["contacts"]] == seen
    status, five = await call(kit, "GET", "/crm/api/contacts/5", token)
    assert (status, five["external_id"], five["email"]) == (200, "ext-5", "moved@example.com")
    assert (await call(kit, "GET", "/crm/api/contacts/1001", token))[0] == 404
    assert (await call(kit, "GET", "/crm/api/contacts?cursor=x", token))[0] == 400
    assert len((await call(kit, "GET", "/crm/api/contacts", token))[1]["contacts"]) == 100
    assert (await call(kit, "POST", "/sandbox/crm/reset"))[1] == {"contacts": 0}
    assert (await call(kit, "GET", "/crm/api/contacts", token))[1] == {
        "contacts": [], "next_cursor": None,
    }  # fmt: skip


async def test_the_mail_records_reach_the_crm_with_bad_ones_refused(kit: Kit) -> None:
    status, added = await call(
        kit, "POST", "/sandbox/records", json={"count": 10_000, "bad_every": 2500}
    )
    assert (status, added["count"]) == (200, 10_000)
    mail, crm = (await kit.mint())["access_token"], (await crm_tokens(kit))["access_token"]
    records: list[dict[str, Any]] = []
    page_token: str | None = "0"
    while page_token is not None:
        path = f"/api/records?limit=500&page_token={page_token}"
        page = (await call(kit, "GET", path, mail))[1]
        records += page["records"]
        page_token = page.get("next_page_token")
    assert [r["id"] for r in records] == list(range(1, 10_001))
    assert records[0] == {"id": 1, "name": "record 1", "email": "record1@example.com",
                          "company": "company 1", "amount": 1}  # fmt: skip
    contacts = [
        {"external_id": str(r["id"]), **{k: v for k, v in r.items() if k not in ("id", "bad")}}
        for r in records
    ]
    for _ in range(2):  # the second time, as a replayed sync would
        for start in range(0, 10_000, 100):
            await upsert(kit, crm, contacts[start : start + 100])
    stats = await crm_stats(kit)
    assert (stats["contacts"], stats["created"], stats["rejected"]) == (9996, 9996, 8)
    assert (stats["duplicates"], stats["updated"], stats["batches"]) == (9996, 0, 200)


async def test_cronlink_connects_refreshes_and_probes_a_crm_connection(kit: Kit) -> None:
    tokens = await crm_tokens(kit, "dave")
    added = await kit.connections.add(
        provider="sandbox-crm", owner="dave", access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"], expires_in=tokens["expires_in"],
    )  # fmt: skip
    assert (await kit.connections.check(added.id)).health is Health.HEALTHY
    refreshed = await kit.connections.refresh(added.id)
    assert refreshed.version == 2
    grant = next(iter(kit.sandbox.crm.provider.grants.grants.values()))
    assert grant.refresh_token != tokens["refresh_token"]  # rotated, and cronlink kept up
    creds = await kit.connections.credentials(added.id)
    headers = {"Authorization": creds.authorization}
    status, answer = await call(kit, "POST", BATCH, json={"records": people(1, 2)},
                                headers=headers)  # fmt: skip
    assert (status, answer["created"]) == (200, 2)
    assert (await kit.connections.refresh(added.id)).version == 3
    stats = await crm_stats(kit)
    assert (stats["refreshes"], stats["invalid_grants"], stats["probes"]) == (2, 0, 1)
    assert (await kit.stats())["refreshes"] == 0


async def test_the_new_contact_trigger_fires_once_per_contact_not_per_update(
    auto: AutoKit,
) -> None:
    kit = auto.kit
    tokens = await crm_tokens(kit)
    added = await kit.connections.add(
        provider="sandbox-crm", owner="alice", access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"], expires_in=tokens["expires_in"],
    )  # fmt: skip
    automation = await auto.automations.add(
        name="contacts", connection_id=added.id, trigger="new_contact", steps=STEPS,
        start="beginning",
    )  # fmt: skip
    for first in (1, 101):
        await upsert(kit, tokens["access_token"], people(first, first + 99))
    await auto.poll()
    renamed = [{**p, "name": "renamed"} for p in people(190, 205)]
    assert (await upsert(kit, tokens["access_token"], renamed))[1]["updated"] == 11
    await auto.poll()
    assert await auto.ledger(automation.id) == [str(n) for n in range(1, 206)]
