"""Pagination and delta shapes as declared in trigger data: which URL comes next, what a
declaration must say, and that every shipped trigger is well-formed."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from pydantic import ValidationError

from cronlink.automations.poller import Target, _first_request, _next_page, poll
from cronlink.automations.template import dig, find
from cronlink.connections.account import Account
from cronlink.connections.providers import Providers, read
from cronlink.connections.triggers import TriggerModel
from cronlink.errors import ConfigError, PollError
from cronlink.records.automations import Cursor
from cronlink.records.connections import Credentials

BASE = "https://api.example.com"
PLACEHOLDER = re.compile(r"\{params\.([A-Za-z0-9_]+)\}")


def _trigger(**declared: Any) -> TriggerModel:
    return TriggerModel.model_validate({"path": "/list", "cursor": "id", "cursor_field": "id",
                                        "page_size": 2, **declared})  # fmt: skip


def _next(trigger: TriggerModel, url: str, body: Any, page: list[Any] | None = None) -> Any:
    return _next_page(trigger, url, CIMultiDict(), body, page or [])


def test_dotted_names_are_reached_whole_or_part_by_part() -> None:
    body = {"@odata.nextLink": "a", "meta": {"@odata.deltaLink": "b", "x": [{"y": 1}]}}
    assert dig(body, "@odata.nextLink", "here") == "a"
    assert dig(body, "meta.@odata.deltaLink", "here") == "b"
    assert dig(body, "meta.x.0.y", "here") == 1
    assert find(body, "@odata.count") is None
    with pytest.raises(ConfigError, match=r"here: nothing at 'meta\.@odata\.count'"):
        dig(body, "meta.@odata.count", "here")


def test_slack_cursors_are_token_pagination_on_a_dotted_field() -> None:
    trigger = _trigger(pagination={"kind": "token", "field": "response_metadata.next_cursor",
                                   "param": "cursor"})  # fmt: skip
    url = f"{BASE}/list?limit=2&channel=C1"
    following = _next(trigger, url, {"response_metadata": {"next_cursor": "dXNlcg=="}})
    assert following == f"{BASE}/list?limit=2&channel=C1&cursor=dXNlcg%3D%3D"
    assert _next(trigger, url, {"response_metadata": {"next_cursor": ""}}) is None  # last page
    assert _next(trigger, url, {"ok": True}) is None


def test_later_pages_carry_only_the_token_and_page_size_without_keep_query() -> None:
    trigger = _trigger(
        query={"syncToken": "{cursor}", "maxResults": "{page_size}", "q": "x"},
        pagination={"kind": "token", "field": "nextPageToken", "param": "pageToken",
                    "keep_query": False},
    )  # fmt: skip
    first = f"{BASE}/list?syncToken=s1&maxResults=2&q=x"
    second = _next(trigger, first, {"nextPageToken": "p2"})
    assert second == f"{BASE}/list?maxResults=2&pageToken=p2"
    assert (
        _next(trigger, second, {"nextPageToken": "p3"}) == f"{BASE}/list?maxResults=2&pageToken=p3"
    )
    kept = _trigger(query=trigger.query, pagination={**trigger.pagination.model_dump(),
                                                     "keep_query": True})  # fmt: skip
    assert _next(kept, first, {"nextPageToken": "p2"}) == f"{first}&pageToken=p2"


def test_a_next_page_url_in_the_body_is_followed_as_it_is() -> None:
    trigger = _trigger(pagination={"kind": "url", "field": "@odata.nextLink"})
    link = f"{BASE}/v1.0/me/messages/delta?$skiptoken=abc"
    assert _next(trigger, f"{BASE}/list", {"value": [], "@odata.nextLink": link}) == link
    assert _next(trigger, f"{BASE}/list", {"value": [], "@odata.deltaLink": link}) is None


def test_has_more_asks_for_the_page_after_the_last_item() -> None:
    trigger = _trigger(pagination={"kind": "has_more", "field": "has_more",
                                   "param": "starting_after", "item_field": "id"})  # fmt: skip
    page = [{"id": "evt_1"}, {"id": "evt_2"}]
    url = f"{BASE}/list?limit=2"
    assert _next(trigger, url, {"data": page, "has_more": True}, page) == (
        f"{BASE}/list?limit=2&starting_after=evt_2"
    )
    assert _next(trigger, url, {"data": page, "has_more": False}, page) is None
    assert _next(trigger, url, {"data": [], "has_more": True}) is None  # nothing to go on from
    with pytest.raises(ConfigError, match="item field 'id'"):
        _next(trigger, url, {"has_more": True}, [{"name": "no id"}])


class _NoRequests:
    """An account gate that fails the test if a request would be sent through it."""

    async def credentials(self, connection_id: int) -> Credentials:
        raise AssertionError("no request may be sent here")

    async def renew(self, connection_id: int, version: int) -> Credentials:
        raise AssertionError("no request may be sent here")

    async def pause(self, connection_id: int, seconds: float) -> datetime:
        raise AssertionError("no request may be sent here")

    async def paused_until(self, connection_id: int) -> datetime | None:
        raise AssertionError("no request may be sent here")


UNUSED = Account(
    _NoRequests(),
    Credentials(connection_id=1, provider="p", access_token="t", expires_at=None, version=1),
)


def test_a_delta_link_is_the_next_polls_whole_request() -> None:
    trigger = _trigger(cursor="token", cursor_format="url", delta_field="@odata.deltaLink",
                       query={"$top": "{page_size}"}, cursor_field=None)  # fmt: skip
    target = Target(base_url=BASE, account=UNUSED, params={})
    assert _first_request(trigger, target, Cursor()) == f"{BASE}/list?$top=2"
    link = f"{BASE}/list?$deltatoken=d1"
    assert _first_request(trigger, target, Cursor(token=link)) == link


async def test_a_delta_link_off_the_base_url_is_refused_before_any_request() -> None:
    trigger = _trigger(cursor="token", cursor_format="url", delta_field="@odata.deltaLink",
                       cursor_field=None)  # fmt: skip
    target = Target(base_url=BASE, account=UNUSED, params={})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PollError, match="outside its base URL; not followed"):
            await poll(session, trigger, target, Cursor(token="https://evil.example/list?d=1"))


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"pagination": {"kind": "has_more", "field": "has_more", "item_field": "id"}},
         "has_more pagination needs 'field', 'param' and 'item_field'"),
        ({"pagination": {"kind": "has_more", "field": "has_more", "param": "starting_after"}},
         "has_more pagination needs 'field', 'param' and 'item_field'"),
        ({"pagination": {"kind": "url"}}, "url pagination needs 'field'"),
        ({"pagination": {"kind": "token", "field": "next"}},
         "token pagination needs 'field' and 'param'"),
        ({"pagination": {"kind": "link", "keep_query": False}},
         "keep_query applies to token pagination only"),
        ({"cursor_format": "url"}, "cursor_format 'url' is for token cursors"),
    ],
)  # fmt: skip
def test_incomplete_declarations_are_refused(declared: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        _trigger(**declared)


def test_a_provider_file_names_the_trigger_that_is_incomplete(tmp_path: Path) -> None:
    sandbox = Path(__file__).parents[2] / "src/cronlink/connections/providers/sandbox.toml"
    text = sandbox.read_text().replace('param = "starting_after", ', "")
    (tmp_path / "sandbox.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"triggers.stripe_like.pagination: has_more pagination"):
        read(tmp_path / "sandbox.toml")


def test_every_shipped_trigger_is_well_formed() -> None:
    declared = 0
    for provider in Providers.load():
        base = provider.url("base_url")
        for name, trigger in provider.triggers.items():
            where = f"{provider.name}.{name}"
            assert trigger.description, where
            assert trigger.path.startswith("/"), where
            params = {p: "x" for v in trigger.query.values() for p in PLACEHOLDER.findall(v)}
            first = _first_request(trigger, Target(base_url=base, account=UNUSED, params=params),
                                   Cursor())  # fmt: skip
            assert first.startswith(base.rstrip("/") + "/"), where
            assert "{" not in first, where
            if trigger.cursor_format == "url":
                assert trigger.pagination.kind == "url", where
            declared += 1
    shipped = Providers.load()
    assert {"mail_received"} <= set(shipped.get("microsoft").triggers)
    assert {"event_changed"} <= set(shipped.get("google").triggers)
    assert declared >= 8
