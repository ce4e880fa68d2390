"""`/api/v1/connections` and `/api/v1/automations` on a real server against the sandbox
provider: scopes, pages, never a token in an answer, every change audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from cronlink import control
from cronlink.records.api_tokens import Scope
from cronlink.records.automations import EventState
from cronlink.web.server import serving
from tests.acceptance.automation_kit import AutoKit, auto
from tests.acceptance.handlers import app
from tests.acceptance.sandbox_kit import kit
from tests.acceptance.test_admin_api import Api

__all__ = ["auto", "kit"]


@pytest.fixture
async def api(auto: AutoKit) -> AsyncIterator[Api]:
    store = auto.automations.store
    made = {}
    for scope in Scope:
        _, made[scope.label] = await control.create_token(
            store, scope.label, scope, None, datetime.now(UTC)
        )
    async with (
        serving(store, app, "127.0.0.1", 0, None, auto.kit.connections, auto.automations) as url,
        aiohttp.ClientSession() as http,
    ):
        yield Api(url, http, store, made)


async def test_connections_create_list_refresh_and_delete(api: Api, auto: AutoKit) -> None:
    minted = await auto.kit.mint("bob")
    body: dict[str, Any] = {
        "provider": "sandbox", "owner": "bob", "access_token": minted["access_token"],
        "refresh_token": minted["refresh_token"], "expires_in": minted["expires_in"],
    }  # fmt: skip
    status, _ = await api.call("POST", "/api/v1/connections", "operate", json=body)
    assert status == 403
    status, made = await api.call("POST", "/api/v1/connections", "admin", json=body)
    assert status == 201
    assert (made["provider"], made["owner"], made["state"]) == ("sandbox", "bob", "active")
    for n in range(3):
        await auto.kit.connect(f"user{n}")

    status, page = await api.call("GET", "/api/v1/connections?limit=2", "read")
    assert status == 200
    assert len(page["connections"]) == 2
    status, rest = await api.call(
        "GET", f"/api/v1/connections?limit=2&after_id={page['next_after_id']}", "read"
    )
    assert [c["owner"] for c in page["connections"] + rest["connections"]] == [
        "bob", "user0", "user1", "user2",
    ]  # fmt: skip
    assert rest["next_after_id"] is None

    cid = made["id"]
    status, refreshed = await api.call("POST", f"/api/v1/connections/{cid}/refresh", "operate")
    assert status == 200
    assert refreshed["refreshed_at"] is not None
    status, checked = await api.call("POST", f"/api/v1/connections/{cid}/check", "operate")
    assert (status, checked["health"]) == (200, "healthy")
    status, events = await api.call("GET", f"/api/v1/connections/{cid}/events", "read")
    assert status == 200
    assert "refreshed" in {e["kind"] for e in events}

    status, disabled = await api.call("POST", f"/api/v1/connections/{cid}/disable", "admin")
    assert (status, disabled["state"]) == (200, "disabled")
    status, body_ = await api.call("POST", f"/api/v1/connections/{cid}/refresh", "operate")
    assert (status, body_["error"]) == (422, "invalid_request")
    async with api.http.delete(
        f"{api.url}/api/v1/connections/{cid}",
        headers={"Authorization": f"Bearer {api.tokens['admin']}"},
    ) as answer:
        assert answer.status == 204
    status, gone = await api.call("GET", f"/api/v1/connections/{cid}", "read")
    assert (status, gone["error"]) == (404, "not_found")

    everything = repr(page) + repr(rest) + repr(made) + repr(refreshed) + repr(events)
    tokens = await auto.kit.stats()
    assert minted["access_token"] not in everything
    assert minted["refresh_token"] not in everything
    assert tokens  # the sandbox answered: the tokens above were real ones
    actions = [e.action for e in await api.store.audit.find()]
    for action in ("create", "refresh", "check", "disable", "delete"):
        assert f"connections.{action}" in actions


async def test_bad_connection_input_names_the_field(api: Api) -> None:
    status, body = await api.call(
        "POST", "/api/v1/connections", json={"provider": "nope", "owner": "x",
                                             "access_token": "secret-value-1234"},
    )  # fmt: skip
    assert status == 422
    assert "nope" in body["detail"]
    status, body = await api.call(
        "POST", "/api/v1/connections",
        json={"provider": "sandbox", "owner": "", "access_token": "secret-value-1234"},
    )  # fmt: skip
    assert status == 422
    assert "owner" in body["detail"]
    assert "secret-value-1234" not in body["detail"]


async def test_automations_pause_run_events_and_replay(api: Api, auto: AutoKit) -> None:
    cid = await auto.kit.connect()
    added = await auto.automations.add(
        name="inbox", connection_id=cid, trigger="new_item", start="beginning",
        steps=[{"name": "trace", "call": "tests.acceptance.automation_steps:traced"}],
        params={"trace": str(auto.trace)},
    )  # fmt: skip
    status, page = await api.call("GET", "/api/v1/automations", "read")
    assert status == 200
    assert [a["name"] for a in page["automations"]] == ["inbox"]
    status, one = await api.call("GET", "/api/v1/automations/inbox", "read")
    assert (status, one["id"]) == (200, added.id)
    status, paused = await api.call("POST", "/api/v1/automations/inbox/pause", "operate")
    assert (status, paused["state"]) == (200, "paused")
    status, resumed = await api.call("POST", f"/api/v1/automations/{added.id}/resume", "operate")
    assert (status, resumed["state"]) == (200, "active")
    status, event = await api.call("POST", "/api/v1/automations/inbox/run", "operate")
    assert status == 202
    assert event["key"].startswith("manual:")
    status, events = await api.call("GET", "/api/v1/automations/inbox/events", "read")
    assert [e["id"] for e in events["events"]] == [event["id"]]
    status, body = await api.call(
        "POST", f"/api/v1/automations/events/{event['id']}/replay", "operate"
    )
    assert status == 422  # still pending: nothing to replay
    assert "pending" in body["detail"]
    status, body = await api.call("GET", "/api/v1/automations/nothing", "read")
    assert (status, body["error"]) == (404, "not_found")
    status, dead = await api.call(
        "GET", f"/api/v1/automations/inbox/events?state={EventState.DEAD_LETTER}", "read"
    )
    assert (status, dead["events"]) == (200, [])
    status, body = await api.call("GET", "/api/v1/automations/inbox/events?state=dead", "read")
    assert status == 422
    assert "state" in body["detail"]


async def test_a_connection_is_named_at_create_and_renamed(api: Api, auto: AutoKit) -> None:
    minted = await auto.kit.mint("bob")
    body: dict[str, Any] = {
        "provider": "sandbox", "owner": "bob", "access_token": minted["access_token"],
        "name": "mail",
    }  # fmt: skip
    status, made = await api.call("POST", "/api/v1/connections", "admin", json=body)
    assert (status, made["name"]) == (201, "mail")
    status, clash = await api.call("POST", "/api/v1/connections", "admin", json=body)
    assert status == 422
    assert f"bob has a connection named 'mail' already (connection {made['id']})" in repr(clash)
    status, bad = await api.call(
        "POST", "/api/v1/connections", "admin", json={**body, "name": "no spaces"}
    )
    assert status == 422
    assert "'no spaces' is not a connection name" in repr(bad)
    path = f"/api/v1/connections/{made['id']}"
    assert (await api.call("PATCH", path, "operate", json={"name": "x"}))[0] == 403
    status, renamed = await api.call("PATCH", path, "admin", json={"name": "mail-main"})
    assert (status, renamed["name"]) == (200, "mail-main")
    status, shown = await api.call("GET", path, "read")
    assert shown["name"] == "mail-main"
    status, cleared = await api.call("PATCH", path, "admin", json={"name": None})
    assert (status, cleared["name"]) == (200, None)
    assert "connections.rename" in [e.action for e in await api.store.audit.find()]
