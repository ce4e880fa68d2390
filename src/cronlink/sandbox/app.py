"""`cronlink sandbox`: the sandbox provider's HTTP server (aiohttp), with fault switches.

Endpoints: `/oauth/authorize` (approves at once, as user `login_hint`), `/oauth/token`,
`/api/me` (the health probe, bearer token), the event feeds and record endpoints of
`feed.py`, and under `/sandbox/` the controls tests and the demo use: `switches` (latency,
failing statuses, 429 with Retry-After, garbled JSON, rotation, grace, token lifetime),
`grants` (mint tokens without a browser), `revoke`, `feed` (add items: bursts, equal
timestamps, late items; ETags on or off; expire cursors), `records`, `sink` and `stats`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from aiohttp import web
from authlib.oauth2.rfc6749.errors import OAuth2Error

from cronlink.errors import CronlinkError
from cronlink.sandbox.feed import Feed
from cronlink.sandbox.grants import Grants
from cronlink.sandbox.oauth import Request, Server

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Switches:
    latency_ms: float = 0
    token_status: int | None = None
    """Answer the token endpoint with this status (429 carries `retry_after`)."""
    api_status: int | None = None
    retry_after: int = 1
    malformed: bool = False
    """The token endpoint answers 200 with a body that is not JSON."""
    hold_ms: float = 0
    """Hold each token answer this long after the grant changed (a client may die meanwhile)."""
    leaky_errors: bool = False
    """The token endpoint refuses, quoting the refresh token it got (as careless ones do)."""
    rotation: bool = True
    grace_seconds: float = 120
    token_lifetime: float = 3600
    throttled_users: tuple[str, ...] = ()
    """API calls made with these users' tokens answer 429 (one account over its limit)."""


class Sandbox:
    """The sandbox provider on 127.0.0.1; `async with Sandbox() as s:` serves at `s.url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.grants = Grants()
        self.server = Server(self.grants)
        self.switches = Switches()
        self.feed = Feed()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults])
        app.router.add_get("/oauth/authorize", self._authorize)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_route("*", "/api/me", self._me)
        app.router.add_get("/api/feed/timestamp", self._authorized(self.feed.by_timestamp))
        app.router.add_get("/api/feed/id", self._authorized(self.feed.by_id))
        app.router.add_get("/api/feed/delta", self._authorized(self.feed.delta))
        app.router.add_get("/api/feed/list", self._authorized(self.feed.by_list))
        app.router.add_get("/api/feed/graph", self._authorized(self.feed.graph_delta))
        app.router.add_get("/api/feed/sync", self._authorized(self.feed.sync))
        app.router.add_get("/api/records", self._authorized(self.feed.list_records))
        app.router.add_post("/api/records", self._write_records)
        app.router.add_post("/api/hooks/{name}", self._hook)
        app.router.add_post("/sandbox/switches", self._set_switches)
        app.router.add_get("/sandbox/stats", self._stats)
        app.router.add_post("/sandbox/grants", self._mint)
        app.router.add_post("/sandbox/revoke", self._revoke)
        app.router.add_post("/sandbox/feed", self._add_items)
        app.router.add_post("/sandbox/feed/expire", self._expire)
        app.router.add_post("/sandbox/records", self._add_records)
        app.router.add_get("/sandbox/sink/{name}", self._sink)
        return app

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            raise CronlinkError(
                f"cannot serve the sandbox on {self.host}:{self.port} ({error.strerror}); "
                "choose another port with --port"
            ) from None
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def configure(self, **changes: Any) -> Switches:
        self.switches = dataclasses.replace(self.switches, **changes)
        self.grants.rotation = self.switches.rotation
        self.grants.grace = self.switches.grace_seconds
        self.grants.lifetime = self.switches.token_lifetime
        return self.switches

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/sandbox/"):
            return await handler(request)
        if self.switches.latency_ms:
            await asyncio.sleep(self.switches.latency_ms / 1000)
        status = None
        if request.path.startswith("/oauth/token"):
            status = self.switches.token_status
            if status is None and self.switches.malformed:
                return web.Response(text="<html>upstream error</html>", content_type="text/html")
            if status is None and self.switches.leaky_errors:
                token = str((await request.post()).get("refresh_token"))
                body = {"error": "invalid_request", "error_description": f"bad token {token}"}
                return _json(body, 400)
        elif request.path.startswith("/api/"):
            status = self.switches.api_status
            grant = self.grants.holder(_bearer(request))
            if grant is not None and grant.user in self.switches.throttled_users:
                self.grants.stats.throttled += 1
                status = 429
        if status is not None:
            headers = {"Retry-After": str(self.switches.retry_after)} if status == 429 else {}
            return _json({"error": "sandbox_fault"}, status, headers)
        return await handler(request)

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        oauth = Request("GET", str(request.url), request.headers, query, {})
        user = query.get("login_hint") or "sandbox-user"
        try:
            grant = self.server.get_consent_grant(request=oauth, end_user=user)
        except OAuth2Error as error:
            return _json({"error": error.error, "error_description": error.description}, 400)
        status, _, headers = self.server.create_authorization_response(
            oauth, grant_user=user, grant=grant
        )
        location = dict(headers).get("Location")
        if status != 302 or location is None:
            return _json({"error": "invalid_request"}, 400)
        raise web.HTTPFound(location)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        oauth = Request("POST", str(request.url), request.headers, dict(request.query), form)
        status, body, headers = self.server.create_token_response(oauth)
        if self.switches.hold_ms:
            await asyncio.sleep(self.switches.hold_ms / 1000)
        return _json(body, status, dict(headers))

    async def _me(self, request: web.Request) -> web.StreamResponse:
        grant = self.grants.holder(_bearer(request))
        self.grants.stats.probes += 1
        if grant is None:
            return _json({"error": "invalid_token"}, 401, {"WWW-Authenticate": "Bearer"})
        return _json({"ok": True, "user": grant.user, "scope": grant.scope})

    def _authorized(self, read: Callable[[web.Request], web.Response]) -> Handler:
        async def answer(request: web.Request) -> web.StreamResponse:
            if self.grants.holder(_bearer(request)) is None:
                return _json({"error": "invalid_token"}, 401)
            return read(request)

        return answer

    async def _write_records(self, request: web.Request) -> web.StreamResponse:
        if self.grants.holder(_bearer(request)) is None:
            return _json({"error": "invalid_token"}, 401)
        return self.feed.write_records(request, await request.json())

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        return self.feed.hook(request, request.match_info["name"], await request.json())

    async def _set_switches(self, request: web.Request) -> web.StreamResponse:
        changes = await request.json()
        known = {f.name for f in dataclasses.fields(Switches)}
        unknown = sorted(set(changes) - known)
        if unknown:
            return _json({"error": f"unknown switches: {', '.join(unknown)}"}, 400)
        if "throttled_users" in changes:
            changes["throttled_users"] = tuple(changes["throttled_users"])
        return _json(dataclasses.asdict(self.configure(**changes)))

    async def _stats(self, _: web.Request) -> web.StreamResponse:
        revoked = sum(1 for g in self.grants.grants.values() if g.revoked)
        stats = dataclasses.asdict(self.grants.stats)
        return _json({**stats, "grants": len(self.grants.grants), "revoked_grants": revoked})

    async def _mint(self, request: web.Request) -> web.StreamResponse:
        """Tokens for `user`, or a list of them for each of `users`."""
        asked = await request.json() if request.can_read_body else {}
        if isinstance(asked.get("users"), list):
            return _json([self.grants.mint(str(user)) for user in asked["users"]])
        return _json(self.grants.mint(str(asked.get("user", "sandbox-user"))))

    async def _revoke(self, request: web.Request) -> web.StreamResponse:
        self.grants.revoke_all()
        return _json({"revoked": len(self.grants.grants)})

    async def _add_items(self, request: web.Request) -> web.StreamResponse:
        """Add items (`count`, `items`, `same_time`, `late_by`, `created_at`, `kind`);
        `etags` and `expired_below` change how the feeds answer."""
        asked = await request.json()
        for switch in ("etags", "expired_below"):
            if switch in asked:
                setattr(self.feed, switch, asked[switch])
        added = self.feed.add(asked) if {"count", "items"} & set(asked) else []
        return _json({"added": added, "count": len(self.feed.items)})

    async def _expire(self, _: web.Request) -> web.StreamResponse:
        self.feed.generation += 1
        return _json({"generation": self.feed.generation})

    async def _add_records(self, request: web.Request) -> web.StreamResponse:
        """`count` records to copy; every `bad_every`-th one is refused by the writer."""
        asked = await request.json()
        bad_every = int(asked.get("bad_every", 0))
        start = len(self.feed.records)
        for n in range(start + 1, start + int(asked.get("count", 0)) + 1):
            record: dict[str, Any] = {"id": n, "name": f"record {n}", "amount": n % 997}
            if bad_every and n % bad_every == 0:
                record["bad"] = True
            self.feed.records.append(record)
        return _json({"count": len(self.feed.records)})

    async def _sink(self, request: web.Request) -> web.StreamResponse:
        return _json(self.feed.sinks.get(request.match_info["name"], []))


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    text = body if isinstance(body, str) else json.dumps(body)
    headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
    return web.Response(text=text, status=status, headers=headers, content_type="application/json")
