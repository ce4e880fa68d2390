"""One poll of one trigger: read pages from the cursor on, return the items and the
cursor to store with them. Nothing is written here: the caller commits both at once.

A burst longer than `max_pages` stops at the page limit and keeps the next page's URL
(`resume`), so the next poll goes on from there; an expired cursor or resume (410) is
dropped once per poll for a resync from the watermark (or, for `id` and `token` cursors,
from the start), whose repeats the event ledger absorbs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from cronlink.automations import cursors
from cronlink.automations.template import dig, find, render
from cronlink.envtext import retry_after
from cronlink.errors import AddressRefusedError, ConfigError, PollError

if TYPE_CHECKING:
    from cronlink.automations.model import Cursor
    from cronlink.automations.triggers import TriggerModel

REQUEST_TIMEOUT = 20.0
Headers = CIMultiDict[str]


@dataclass(frozen=True, kw_only=True, slots=True)
class Polled:
    items: list[tuple[str, Any]]
    """(event key, item), oldest first."""
    cursor: Cursor
    pages: int
    resynced: bool = False
    not_modified: bool = False
    baseline: frozenset[str] = frozenset()
    """Keys of items older than the automation's start: recorded, never fired."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """Where and as whom to poll."""

    base_url: str
    authorization: str
    params: dict[str, Any]


async def poll(
    session: aiohttp.ClientSession, trigger: TriggerModel, target: Target, cursor: Cursor
) -> Polled:
    url, fresh = _first_request(trigger, target, cursor), cursor.resume is None
    before = cursor
    items: list[Any] = []
    resynced = False
    pages = 0
    while pages < trigger.max_pages:
        status, headers, body = await _get(session, trigger, url, target, cursor if fresh else None)
        if status == 304 and pages == 0:
            return Polled(items=[], cursor=cursor, pages=1, not_modified=True)
        if status in trigger.expired_statuses and not resynced and _has_cursor(trigger, cursor):
            resynced, fresh = True, True
            cursor = dataclasses.replace(cursor, resume=None, token=None, etag=None)
            url = _first_request(trigger, target, cursor, from_start=trigger.cursor == "id")
            continue
        _check(status, headers, body)
        pages += 1
        page = dig(body, trigger.items, f"trigger answer: items at {trigger.items!r}")
        if not isinstance(page, list):
            raise PollError(f"trigger answer: items at {trigger.items!r} is not a list")
        items.extend(page)
        following = _next_page(trigger, url, headers, body, page)
        if fresh and pages == 1:
            # A 304 on a first page that was not the whole answer says nothing of the rest.
            etag = headers.get("ETag") if following is None else None
            cursor = dataclasses.replace(cursor, etag=etag)
        if following is None:
            if trigger.cursor == "token":
                token = dig(body, trigger.delta_field or "", "trigger answer: delta token")
                cursor = dataclasses.replace(cursor, token=_delta(trigger, url, token))
            cursor = dataclasses.replace(cursor, resume=None)
            break
        url, fresh = following, False
    else:
        cursor = dataclasses.replace(cursor, resume=url)
    if resynced:
        items = cursors.after_watermark(trigger, before, items)
    keyed = [(cursors.event_key(trigger, item), item) for item in items]
    early, cursor = cursors.before_start(trigger, cursors.advance(trigger, cursor, items), keyed)
    return Polled(items=keyed, cursor=cursor, pages=pages, resynced=resynced, baseline=early)


def _first_request(
    trigger: TriggerModel, target: Target, cursor: Cursor, *, from_start: bool = False
) -> str:
    """The poll's first URL; `from_start` leaves the cursor out (an id cursor's resync:
    its watermark is kept, as it only ever moves forward)."""
    if cursor.resume is not None:
        return cursor.resume
    if trigger.cursor_format == "url" and cursor.token is not None:
        return cursor.token  # a delta link: the provider wrote the whole request into it
    values = {
        "cursor": None if from_start else cursors.request_value(trigger, cursor),
        "page_size": trigger.page_size,
        "params": target.params,
    }
    query = render(dict(trigger.query), values, "trigger query")
    kept = {k: str(v) for k, v in query.items() if v not in (None, "")}
    url = _join(target.base_url, trigger.path)
    return str(URL(url).update_query(kept)) if kept else url


def _has_cursor(trigger: TriggerModel, cursor: Cursor) -> bool:
    return (
        cursor.resume is not None
        or cursor.token is not None
        or (trigger.cursor == "id" and cursor.watermark is not None)
    )


async def _get(
    session: aiohttp.ClientSession,
    trigger: TriggerModel,
    url: str,
    target: Target,
    cursor: Cursor | None,
) -> tuple[int, Headers, Any]:
    if not url.startswith(target.base_url.rstrip("/") + "/"):
        raise PollError("the provider's next page points outside its base URL; not followed")
    headers = {"Authorization": target.authorization, "Accept": "application/json"}
    if cursor is not None and cursor.etag:
        headers["If-None-Match"] = cursor.etag
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            async with session.request(trigger.method, url, headers=headers) as response:
                body: Any = None
                if response.status == 200:
                    body = await response.json(content_type=None)
                return response.status, CIMultiDict(response.headers), body
    except AddressRefusedError as error:
        raise PollError(str(error)) from None
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise PollError(f"poll request failed: {type(error).__name__}") from None


def _check(status: int, headers: Headers, body: Any) -> None:
    if status == 429:
        wait = retry_after(headers.get("Retry-After"))
        seconds = 60.0 if wait is None else wait.total_seconds()
        raise PollError(f"throttled by the provider (429) for {seconds:g}s", throttled_for=seconds)
    if status != 200:
        raise PollError(f"the provider answered HTTP {status}")
    if body is None:
        raise PollError("the provider's answer is empty")


def _next_page(
    trigger: TriggerModel, url: str, headers: Headers, body: Any, page: list[Any]
) -> str | None:
    paging = trigger.pagination
    if paging.kind == "token":
        token = find(body, paging.field or "")
        if not token:  # absent, null, or Slack's empty `next_cursor` on the last page
            return None
        return str(_later_page(trigger, url).update_query({str(paging.param): str(token)}))
    if paging.kind == "url":
        following = find(body, paging.field or "")
        return urljoin(url, str(following)) if following else None
    if paging.kind == "has_more":
        if find(body, paging.field or "") is not True or not page:
            return None
        where = f"item field {paging.item_field!r} (has_more pagination)"
        last = dig(page[-1], paging.item_field or "", where)
        return str(URL(url).update_query({str(paging.param): str(last)}))
    if paging.kind == "link":
        for part in headers.get("Link", "").split(","):
            target, _, relation = part.partition(";")
            if 'rel="next"' in relation.replace(" ", ""):
                return urljoin(url, target.strip().strip("<>"))
        return None
    if paging.kind == "page" and len(page) >= trigger.page_size:
        current = int(URL(url).query.get(paging.param or "", "1"))
        return str(URL(url).update_query({str(paging.param): str(current + 1)}))
    return None


def _later_page(trigger: TriggerModel, url: str) -> URL:
    """The URL a next-page token is added to: this page's, or with `keep_query = false`
    only its page size, so later pages stay as long as the first."""
    if trigger.pagination.keep_query:
        return URL(url)
    size = {k: str(trigger.page_size) for k, v in trigger.query.items() if v == "{page_size}"}
    return URL(url).with_query(size)


def _delta(trigger: TriggerModel, url: str, token: Any) -> str:
    """The delta token to store; a delta link is kept absolute (and is checked against
    the base URL when the next poll requests it)."""
    return urljoin(url, str(token)) if trigger.cursor_format == "url" else str(token)


def _join(base: str, path: str) -> str:
    if not path.startswith("/"):
        raise ConfigError(f"trigger path {path!r} must start with '/'")
    return base.rstrip("/") + path
