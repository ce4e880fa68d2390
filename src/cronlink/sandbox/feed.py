"""The sandbox's event feed, readable in the shapes providers page in (one per trigger
cursor kind, and one per pagination shape), and the endpoints automations write to.

- `GET /api/feed/timestamp?since=&limit=&page=|page_token=`: items with `created_at >=
  since`, oldest first (ties by id), by page number or by next-page token (tokens from
  before `POST /sandbox/feed/expire` answer 410); answers carry an ETag and honour
  `If-None-Match`.
- `GET /api/feed/id?after=&limit=`: items with `id > after`, a `Link: rel="next"` header
  while more remain; a stored `after` below `expired_below` answers 410 (the cursor is
  gone); next-page links carry their own `page_after`, which does not expire.
- `GET /api/feed/delta?token=&limit=&page_token=`: a delta feed; no token is a full
  listing; the last page gives `delta_token`; tokens from before `POST /sandbox/feed/expire`
  answer 410.
- `GET /api/feed/list?created[gte]=&limit=&starting_after=`: the timestamp feed in
  Stripe's list shape (`data`, `has_more`; the next page after the item `starting_after`).
- `GET /api/feed/graph?$top=`: the delta feed in Microsoft Graph's shape (`value`,
  absolute `@odata.nextLink` / `@odata.deltaLink` URLs, stale ones answer 410).
- `GET /api/feed/sync?syncToken=&maxResults=&pageToken=`: the delta feed in Google's shape
  (`items`, `nextPageToken`, `nextSyncToken`); a page token sent with the `syncToken`
  answers 400, stale tokens 410.
- `GET /api/records?page_token=&limit=`: the records a `sync` copies (name, email, company,
  amount; added by `POST /sandbox/records {"count": N}`); `POST
  /api/records` writes a batch (per-record rejections, `Idempotency-Key` replays the first
  answer); `POST /api/hooks/{name}`: a webhook sink (JSON kept decoded, a `text/*` body
  such as a report's Markdown kept as text). `GET /sandbox/sink/{name}` reads a
  sink back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(ISO)


@dataclass
class Feed:
    items: list[dict[str, Any]] = field(default_factory=list)
    generation: int = 0
    expired_below: int = 0
    etags: bool = True
    records: list[dict[str, Any]] = field(default_factory=list)
    sinks: dict[str, list[Any]] = field(default_factory=dict)
    replies: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    not_modified: int = 0

    def add(self, asked: dict[str, Any]) -> list[dict[str, Any]]:
        """`count` items (or the given `items`) stamped now, at one `created_at`, or
        `late_by` seconds in the past (an item indexed late)."""
        given = asked.get("items") or [{} for _ in range(int(asked.get("count", 1)))]
        at = datetime.now(UTC) - timedelta(seconds=float(asked.get("late_by", 0)))
        stamp = asked.get("created_at")
        added = []
        for offset, item in enumerate(given):
            moment = at if stamp or asked.get("same_time") else at + timedelta(microseconds=offset)
            entry = {
                "kind": asked.get("kind", "email"),
                "subject": f"message {len(self.items) + 1}",
                **item,
                "id": len(self.items) + 1,
                "created_at": stamp or iso(moment),
            }
            self.items.append(entry)
            added.append(entry)
        return added

    def by_timestamp(self, request: web.Request) -> web.Response:
        since = request.query.get("since", "")
        limit, page = _int(request, "limit", 50), _int(request, "page", 1)
        start = (page - 1) * limit
        paging = request.query.get("page_token")
        if paging:
            generation, offset, since = paging.split(".", 2)
            if int(generation) != self.generation:
                return _gone()
            start = int(offset)
        chosen = sorted(
            (i for i in self.items if i["created_at"] >= since),
            key=lambda i: (i["created_at"], i["id"]),
        )
        body: dict[str, Any] = {"items": chosen[start : start + limit], "page": page}
        if start + limit < len(chosen):
            body["next_page_token"] = f"{self.generation}.{start + limit}.{since}"
        return self._answer(request, body)

    def by_id(self, request: web.Request) -> web.Response:
        after, limit = _int(request, "after", 0), _int(request, "limit", 50)
        if "after" in request.query and after < self.expired_below:
            return _gone()
        after = _int(request, "page_after", after)
        chosen = [i for i in self.items if i["id"] > after][:limit]
        headers = {}
        if chosen and chosen[-1]["id"] < len(self.items):
            following = request.url.without_query_params("after").update_query(
                page_after=chosen[-1]["id"]
            )
            headers["Link"] = f'<{following}>; rel="next"'
        return self._answer(request, {"items": chosen}, headers)

    def delta(self, request: web.Request) -> web.Response:
        limit = _int(request, "limit", 50)
        changes = self._changes(request.query.get("page_token"), request.query.get("token"), limit)
        if changes is None:
            return _gone()
        chosen, following, token = changes
        body: dict[str, Any] = {"items": chosen}
        if following:
            body["next_page"] = following
        else:
            body["delta_token"] = token
        return self._answer(request, body)

    def by_list(self, request: web.Request) -> web.Response:
        """Stripe's list shape: `data`, `has_more`, the next page by `starting_after`."""
        since, limit = request.query.get("created[gte]", ""), _int(request, "limit", 50)
        chosen = sorted(
            (i for i in self.items if i["created_at"] >= since),
            key=lambda i: (i["created_at"], i["id"]),
        )
        if "starting_after" in request.query:
            after = _int(request, "starting_after", 0)
            ids = [i["id"] for i in chosen]
            if after not in ids:
                return _json({"error": {"type": "invalid_request_error",
                                        "code": "resource_missing"}}, 400)  # fmt: skip
            chosen = chosen[ids.index(after) + 1 :]
        body = {"object": "list", "data": chosen[:limit], "has_more": len(chosen) > limit}
        return self._answer(request, body)

    def graph_delta(self, request: web.Request) -> web.Response:
        """Graph's delta shape: `value`, then `@odata.nextLink` or, on the last page,
        `@odata.deltaLink`, both absolute URLs carrying the page size (`$top`)."""
        limit = _int(request, "$top", 50)
        query = request.query
        changes = self._changes(query.get("$skiptoken"), query.get("$deltatoken"), limit)
        if changes is None:
            return _gone()
        chosen, following, token = changes
        here = request.url.with_query({"$top": str(limit)})
        body: dict[str, Any] = {"value": chosen}
        if following:
            body["@odata.nextLink"] = str(here.update_query({"$skiptoken": following}))
        else:
            body["@odata.deltaLink"] = str(here.update_query({"$deltatoken": token}))
        return self._answer(request, body)

    def sync(self, request: web.Request) -> web.Response:
        """Google's list shape: `items`, `nextPageToken`, and `nextSyncToken` on the last
        page only. Stricter than Calendar (which wants the first query repeated): a page
        token sent with a `syncToken` is refused, as APIs that refuse the first page's
        filters on later pages do."""
        query, limit = request.query, _int(request, "maxResults", 50)
        if "pageToken" in query and "syncToken" in query:
            return _json({"error": {"code": 400, "message": "syncToken with pageToken"}}, 400)
        changes = self._changes(query.get("pageToken"), query.get("syncToken"), limit)
        if changes is None:
            return _gone()
        chosen, following, token = changes
        body: dict[str, Any] = {"kind": "sandbox#items", "items": chosen}
        if following:
            body["nextPageToken"] = following
        else:
            body["nextSyncToken"] = token
        return self._answer(request, body)

    def _changes(
        self, page: str | None, token: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None, str] | None:
        """One page of a delta listing: its items, the next page's state (None on the last
        page) and the delta token for the next listing. A page state or token is
        `generation.after[.upto]`; None when it is from before an expiry. No token: a full
        listing."""
        if page:
            generation, after, upto = (int(p) for p in page.split("."))
        elif token:
            generation, after = (int(p) for p in token.split("."))
            upto = len(self.items)
        else:
            generation, after, upto = self.generation, 0, len(self.items)
        if generation != self.generation:
            return None
        chosen = [i for i in self.items if after < i["id"] <= upto][:limit]
        last = chosen[-1]["id"] if chosen else upto
        following = f"{generation}.{last}.{upto}" if last < upto else None
        return chosen, following, f"{generation}.{upto}"

    def add_records(self, count: int, bad_every: int = 0) -> None:
        """`count` more records to copy, the same ones every time (10,000 take a few ms);
        every `bad_every`-th is marked `bad` and has no email, so the record writer and the
        CRM both refuse it."""
        start = len(self.records)
        for n in range(start + 1, start + count + 1):
            record: dict[str, Any] = {
                "id": n, "name": f"record {n}", "email": f"record{n}@example.com",
                "company": f"company {n % 50}", "amount": n % 997,
            }  # fmt: skip
            if bad_every and n % bad_every == 0:
                record["bad"] = True
                del record["email"]
            self.records.append(record)

    def list_records(self, request: web.Request) -> web.Response:
        start, limit = _int(request, "page_token", 0), _int(request, "limit", 500)
        chosen = self.records[start : start + limit]
        body: dict[str, Any] = {"records": chosen}
        if start + limit < len(self.records):
            body["next_page_token"] = str(start + limit)
        return _json(body)

    def write_records(self, request: web.Request, asked: Any) -> web.Response:
        """Accept a batch; a record without an id, or marked `bad`, is rejected alone."""
        key = request.headers.get("Idempotency-Key")
        if key and key in self.replies:
            return _json(self.replies[key])
        rejected, accepted = [], 0
        for index, record in enumerate(asked.get("records", [])):
            if not isinstance(record, dict) or "id" not in record or record.get("bad"):
                rejected.append({"index": index, "error": "record needs an id and no 'bad'"})
                continue
            self.sinks.setdefault("records", []).append(record)
            accepted += 1
        reply = {"accepted": accepted, "rejected": rejected}
        if key:
            self.replies[key] = reply
        return _json(reply)

    def hook(self, request: web.Request, name: str, body: Any) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key and key in self.replies:
            return _json(self.replies[key])
        self.sinks.setdefault(name, []).append(body)
        reply = {"received": len(self.sinks[name])}
        if key:
            self.replies[key] = reply
        return _json(reply)

    def _answer(
        self, request: web.Request, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        self.requests += 1
        text = json.dumps(body)
        headers = dict(headers or {})
        if self.etags:
            tag = '"' + hashlib.sha256(text.encode()).hexdigest()[:20] + '"'
            headers["ETag"] = tag
            if request.headers.get("If-None-Match") == tag:
                self.not_modified += 1
                return web.Response(status=304, headers=headers)
        return _json(body, headers=headers, text=text)


def _int(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None


def _gone() -> web.Response:
    return _json({"error": "cursor_expired", "error_description": "resync from the start"}, 410)


def _json(
    body: Any, status: int = 200, headers: dict[str, str] | None = None, text: str | None = None
) -> web.Response:
    return web.Response(
        text=text if text is not None else json.dumps(body), status=status,
        headers=headers or {}, content_type="application/json",
    )  # fmt: skip
