"""The sandbox's second provider, a CRM: its own OAuth client (`cronlink-crm`, which
authenticates with `client_secret_post` only) and grants under `/crm/oauth/`, and a
contacts API under `/crm/api/` (bearer tokens of the CRM's grants; the mail provider's get
401, as the CRM's get 401 there).

- `GET /crm/api/me`: the health probe.
- `GET /crm/api/contacts?cursor=&limit=`: contacts in id order, `limit` (default 100, at
  most 1000) at a time; `next_cursor` in the body, None on the last page.
- `GET /crm/api/contacts/{id}`: one contact, or 404.
- `POST /crm/api/contacts/batch` with `{"records": [...]}`: an upsert by `external_id` of
  at most `crm_batch_limit` (100) records (more: 400 naming the limit), applied in order
  (`contacts.py`). The answer counts `created`, `updated`, `unchanged` and `rejected`, with
  `results` (index, id, external_id, status) and `errors` (index, external_id, reason: no
  external id, no or a bad email, a field the CRM sets). An `Idempotency-Key` seen before
  replays its first answer; with another body it is refused (422).

Controls, never faulted: `GET /sandbox/crm/contacts` (every contact), `POST
/sandbox/crm/reset` (no contacts, answers or counts; grants stay), `GET /sandbox/crm/stats`
(the CRM's grant and fault counts, and the contacts' in `contacts.ContactStats`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cronlink.sandbox.contacts import Contacts
from cronlink.sandbox.feed import iso
from cronlink.sandbox.grants import Client, Grants
from cronlink.sandbox.provider import Provider, bearer

if TYPE_CHECKING:
    from collections.abc import Callable

CLIENT_ID, CLIENT_SECRET = "cronlink-crm", "crm-secret"
SCOPE = "contacts.read contacts.write"
PREFIX = "/crm"
BATCH = f"{PREFIX}/api/contacts/batch"
PAGE, MAX_PAGE = 100, 1000


class Crm:
    def __init__(self, clock: Callable[[], float]) -> None:
        client = Client(CLIENT_ID, CLIENT_SECRET, auth_methods=("client_secret_post",))
        self.provider = Provider.serving(
            Grants(client, SCOPE), PREFIX, (f"{PREFIX}/api/",), frozenset({BATCH}), clock
        )
        self.contacts = Contacts()
        self.replies: dict[str, tuple[bytes, dict[str, Any]]] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(f"{PREFIX}/api/contacts", self.list_contacts)
        router.add_post(BATCH, self.batch)
        router.add_get(PREFIX + "/api/contacts/{id}", self.get_contact)
        router.add_get("/sandbox/crm/contacts", self.all_contacts)
        router.add_post("/sandbox/crm/reset", self.reset)
        router.add_get("/sandbox/crm/stats", self.stats)

    async def list_contacts(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _unauthorized()
        try:
            limit = int(request.query.get("limit", PAGE))
            if limit <= 0:
                raise ValueError(limit)
            page = self.contacts.page(request.query.get("cursor", ""), min(limit, MAX_PAGE))
        except ValueError:
            return _json({"error": "bad_request", "message": "bad cursor or limit"}, 400)
        return _json(page)

    async def get_contact(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _unauthorized()
        contact = self.contacts.get(request.match_info["id"])
        if contact is None:
            return _json({"error": "not_found"}, 404)
        return _json(contact)

    async def batch(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _unauthorized()
        body = await request.read()
        key = request.headers.get("Idempotency-Key")
        digest = hashlib.blake2b(body, digest_size=16).digest()
        if key and key in self.replies:
            return self._replay(key, digest)
        try:
            records = json.loads(body)["records"]
        except (ValueError, TypeError, KeyError):
            records = None
        if not isinstance(records, list):
            return self._refuse("bad_request", 'the body must be {"records": [...]}')
        limit = self.provider.faults.switches.crm_batch_limit
        if len(records) > limit:
            message = f"at most {limit} records per batch; this one has {len(records)}"
            return self._refuse("batch_too_large", message, limit=limit)
        reply = self.contacts.upsert(records, iso(datetime.now(UTC)))
        if key:
            self.replies[key] = (digest, reply)
        return _json(reply)

    async def all_contacts(self, _: web.Request) -> web.StreamResponse:
        return _json({"contacts": self.contacts.stored, "count": len(self.contacts.stored)})

    async def reset(self, _: web.Request) -> web.StreamResponse:
        self.contacts.reset()
        self.replies.clear()
        return _json({"contacts": 0})

    async def stats(self, _: web.Request) -> web.StreamResponse:
        counted = dataclasses.asdict(self.provider.grants.stats)
        del counted["model"]  # the chat model is served beside the mail provider only
        return _json({
            **counted, **dataclasses.asdict(self.contacts.stats),
            "grants": len(self.provider.grants.grants), "revoked_grants": self.provider.revoked(),
            "contacts": len(self.contacts.stored),
        })  # fmt: skip

    def _authorized(self, request: web.Request) -> bool:
        return self.provider.grants.holder(bearer(request)) is not None

    def _replay(self, key: str, digest: bytes) -> web.Response:
        first, reply = self.replies[key]
        if first != digest:
            message = "this Idempotency-Key came with another body"
            return self._refuse("idempotency_key_reused", message, status=422)
        self.contacts.stats.replays += 1
        return _json(reply)

    def _refuse(self, error: str, message: str, status: int = 400, **more: Any) -> web.Response:
        self.contacts.stats.refused_batches += 1
        return _json({"error": error, "message": message, **more}, status)


def _unauthorized() -> web.Response:
    return _json({"error": "invalid_token"}, 401, {"WWW-Authenticate": "Bearer"})


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body), status=status, headers=headers, content_type="application/json"
    )
