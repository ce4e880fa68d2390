"""One poll of one trigger: read pages from the cursor on, return the items and the
cursor to store with them. Nothing is written here: the caller commits both at once.

Every request goes through the connection's account (`connections.account`): a paused
account is not asked, a refused token is renewed once, a 429 pauses the account.
A burst longer than `max_pages` stops at the page limit and keeps the next page's URL
(`resume`), so the next poll goes on from there; so does a poll whose later page fails:
the pages before it count. An expired cursor or resume (410) is dropped once per poll for
a resync from the watermark (or, for `id` and `token` cursors, from the start), whose
repeats the event ledger absorbs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from cronlink.automations import cursors
from cronlink.automations.template import dig, find, render
from cronlink.clock import iso_seconds
from cronlink.errors import (
    AccountPausedError,
    AddressRefusedError,
    ConfigError,
    CronlinkError,
    PollError,
)

if TYPE_CHECKING:
    from cronlink.connections.account import Account
    from cronlink.connections.triggers import TriggerModel
    from cronlink.records.automations import Cursor

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
    stopped: CronlinkError | None = None
    """Why the poll stopped before the end after reading some pages: those pages count
    (their items and the position after them are kept) and the rest waits."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """Where and as whom to poll."""

    base_url: str
    account: Account
    params: dict[str, Any]


async def poll(
    session: aiohttp.ClientSession,
    trigger: TriggerModel,
    target: Target,
    cursor: Cursor,
) -> Polled:
    """Read from `cursor` on, up to `trigger.max_pages` pages. A failure on the first
    page raises; a later one ends the poll with the pages read so far (`Polled.stopped`)."""
    url, fresh = _first_request(trigger, target, cursor), cursor.resume is None
    before = cursor
    items: list[Any] = []
    resynced = False
    pages = 0
    stopped: CronlinkError | None = None
    while pages < trigger.max_pages:
        try:
            answer = await _get(session, trigger, url, target, cursor if fresh else None)
        except CronlinkError as error:
            if not items:
                raise
            stopped, cursor = error, dataclasses.replace(cursor, resume=url)
            break
        status, headers, body = answer
        if status == 304 and pages == 0:
            read = cursors.end_pass(cursors.begin_pass(trigger, before, _date(trigger, headers)))
            return Polled(items=[], cursor=read, pages=1, not_modified=True)
        if status in trigger.expired_statuses and not resynced and _has_cursor(trigger, cursor):
            resynced, fresh = True, True
            cursor = dataclasses.replace(cursor, resume=None, token=None, etag=None)
            url = _first_request(trigger, target, cursor, from_start=trigger.cursor == "id")
            continue
        try:
            _check(status, body)
            page = dig(body, trigger.items, f"trigger answer: items at {trigger.items!r}")
            if not isinstance(page, list):
                raise PollError(f"trigger answer: items at {trigger.items!r} is not a list")
            following = _next_page(trigger, url, headers, body, page)
        except (PollError, ConfigError) as error:
            if not items:
                raise
            stopped, cursor = error, dataclasses.replace(cursor, resume=url)
            break
        pages += 1
        items.extend(page)
        if fresh and pages == 1:
            # A 304 on a first page that was not the whole answer says nothing of the rest.
            etag = headers.get("ETag") if following is None else None
            cursor = cursors.begin_pass(trigger, cursor, _date(trigger, headers))
            cursor = dataclasses.replace(cursor, etag=etag)
        if following is None:
            if trigger.cursor == "token":
                token = dig(body, trigger.delta_field or "", "trigger answer: delta token")
                cursor = dataclasses.replace(cursor, token=_delta(trigger, url, token))
            cursor = cursors.end_pass(dataclasses.replace(cursor, resume=None))
            break
        url, fresh = following, False
    else:
        cursor = dataclasses.replace(cursor, resume=url)
    if resynced:
        items = cursors.after_watermark(trigger, before, items)
    keyed = [(cursors.event_key(trigger, item), item) for item in items]
    early, cursor = cursors.before_start(trigger, cursors.advance(trigger, cursor, items), keyed)
    return Polled(
        items=keyed, cursor=cursor, pages=pages, resynced=resynced, baseline=early,
        stopped=stopped,
    )  # fmt: skip


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
    headers = {"Accept": "application/json"}
    if cursor is not None and cursor.etag:
        headers["If-None-Match"] = cursor.etag
    try:
        answer = await target.account.request(
            session, trigger.method, url, headers=headers, within=REQUEST_TIMEOUT
        )
    except AddressRefusedError as error:
        raise PollError(str(error)) from None
    except (aiohttp.ClientError, TimeoutError) as error:
        raise PollError(f"poll request failed: {type(error).__name__}") from None
    if answer.status == 429:
        assert answer.paused_until is not None, "the account pauses itself on a 429"
        raise AccountPausedError(
            f"throttled by the provider (429) until {iso_seconds(answer.paused_until)}",
            until=answer.paused_until,
        )
    body: Any = None
    if answer.status == 200:
        try:
            body = json.loads(answer.body)
        except ValueError:
            raise PollError("the provider's answer is not JSON") from None
    return answer.status, answer.headers, body


def _date(trigger: TriggerModel, headers: Headers) -> datetime | None:
    """The provider's own time of an answer (`Date`): what was visible to it then is
    measured in its clock, whatever ours says. Only timestamp triggers look back."""
    if trigger.cursor != "timestamp":
        return None
    try:
        moment = parsedate_to_datetime(headers.get("Date", ""))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check(status: int, body: Any) -> None:
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
