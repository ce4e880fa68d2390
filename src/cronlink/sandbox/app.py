"""`cronlink sandbox`: the sandbox's HTTP server (aiohttp), with fault switches. It plays
two providers (`provider.py`), each with its own OAuth client, grants, faults and paused
accounts, so neither accepts the other's tokens:

- the mail-like one at the root: `/oauth/authorize` (approves at once, as user
  `login_hint`), `/oauth/token` (client `cronlink-sandbox`, Basic or form), `/api/me` (the
  health probe, bearer token), the event feeds and record endpoints of `feed.py`;
- a CRM under `/crm/` (`crm.py`): the same three OAuth and probe paths (client
  `cronlink-crm`, form only) and a contacts API with batch upserts.

Under `/sandbox/`, the controls tests and the demo use: `switches`, `grants` (mint tokens
without a browser), `revoke`, `feed` (add items: bursts, equal timestamps, late items; ETags
on or off; expire cursors), `records` (add records to copy), `sink` and `stats`; the CRM's
`crm/grants`, `crm/revoke`, `crm/contacts`, `crm/reset` and `crm/stats`. Under `/v1/`, an
OpenAI-compatible `chat/completions` and `models` answered by a deterministic rule model
(`chat.py`, `model.py`), with its own `model_*` switches; its faults are in `chat.py`.

The switches (`Switches` in `faults.py`, set by `Sandbox.configure` or `POST
/sandbox/switches`): `latency_ms` on every request; on the token endpoint `token_status`,
`malformed`, `leaky_errors`, `hold_ms`; on `/api/` `api_status` and `throttled_users`;
`rotation`, `grace_seconds` and `token_lifetime` for the grants; and the rates, drawn
per request from the provider's generator seeded by `seed`: `throttle_rate` (429 with Retry-After
`retry_after`, pausing the account; `pause_tolerance`), `hang_rate` (`hang_seconds`),
`malformed_rate`, `lose_token_rate`. The CRM has its own `crm_token_status`,
`crm_api_status`, `crm_throttled_users`, `crm_throttle_rate`, `crm_hang_rate`,
`crm_malformed_rate`, `crm_lose_rate` (refreshes and batch writes), `crm_rotation`,
`crm_grace_seconds`, `crm_token_lifetime` and `crm_batch_limit`; the others (latency,
`retry_after`, `pause_tolerance`, `hang_seconds`, `hang_token`, `hold_ms`, `malformed`,
`leaky_errors`, `seed`) apply to both.

The controls under `/sandbox/` are never faulted; neither is `/oauth/authorize` beyond
latency. On a provider's token endpoint and API, the faults strike in this order, the
first that answers ending the request:

1. throttling, by account (the grant of the form's refresh token, retired ones included,
   or of the bearer token): a paused account is answered 429 before anything else, then
   `throttled_users`, then a drawn throttle;
2. a drawn hang holds the request, then lets it go on (or drops it if the sandbox closes);
3. the fixed answers: `token_status`, `malformed`, `leaky_errors`, `api_status`;
4. a drawn malformed answer (token endpoints, the feeds and the CRM's API): a proxy's
   page, given before the provider saw the request, so the grant does not rotate and no
   contact is written;
5. a drawn lost answer (refreshes, and the CRM's batch writes): the provider rotates the
   grant or writes the batch, then the connection closes without an answer. A retry with
   the old refresh token within `grace_seconds` gets new tokens; after it, reuse revokes
   the grant. A batch retried with its `Idempotency-Key` gets the first answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any, Self

from aiohttp import web
from authlib.oauth2.rfc6749.errors import OAuth2Error

from cronlink.errors import CronlinkError
from cronlink.sandbox.chat import Chat
from cronlink.sandbox.crm import Crm
from cronlink.sandbox.faults import Faults, Switches, crm_switches
from cronlink.sandbox.feed import Feed
from cronlink.sandbox.grants import Grants
from cronlink.sandbox.oauth import Request
from cronlink.sandbox.provider import Provider, bearer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Sandbox:
    """The sandbox provider on 127.0.0.1; `async with Sandbox() as s:` serves at `s.url`."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        """`clock` times the accounts' pauses (tests pass their own to end one)."""
        self.host, self.port = host, port
        self.mail = Provider.serving(Grants(), "", ("/api/feed/",), clock=clock)
        self.grants, self.faults = self.mail.grants, self.mail.faults
        self.crm = Crm(clock)
        self.feed = Feed()
        self.chat = Chat(self.faults, self.grants.stats.model, clock)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults])
        for prefix in ("", self.crm.provider.prefix):
            app.router.add_get(f"{prefix}/oauth/authorize", self._authorize)
            app.router.add_post(f"{prefix}/oauth/token", self._token)
            app.router.add_route("*", f"{prefix}/api/me", self._me)
            app.router.add_post(f"/sandbox{prefix}/grants", self._mint)
            app.router.add_post(f"/sandbox{prefix}/revoke", self._revoke)
        app.router.add_get("/api/feed/timestamp", self._authorized(self.feed.by_timestamp))
        app.router.add_get("/api/feed/id", self._authorized(self.feed.by_id))
        app.router.add_get("/api/feed/delta", self._authorized(self.feed.delta))
        app.router.add_get("/api/feed/list", self._authorized(self.feed.by_list))
        app.router.add_get("/api/feed/graph", self._authorized(self.feed.graph_delta))
        app.router.add_get("/api/feed/sync", self._authorized(self.feed.sync))
        app.router.add_get("/api/records", self._authorized(self.feed.list_records))
        app.router.add_post("/api/records", self._write_records)
        app.router.add_post("/api/hooks/{name}", self._hook)
        self.chat.add_routes(app.router)
        self.crm.add_routes(app.router)
        app.router.add_post("/sandbox/switches", self._set_switches)
        app.router.add_get("/sandbox/stats", self._stats)
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
        # Held requests would otherwise keep the runner's graceful shutdown waiting.
        self.faults.release()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def switches(self) -> Switches:
        return self.faults.switches

    def configure(self, **changes: Any) -> Switches:
        switches = dataclasses.replace(self.switches, **changes)
        self.mail.apply(switches)
        self.crm.provider.apply(crm_switches(switches))
        if "seed" in changes:
            self.faults.reseed(switches.seed)
            self.crm.provider.faults.reseed(switches.seed)
        return switches

    def _provider(self, path: str) -> Provider:
        """The provider a path is of: the CRM's under `/crm/` and `/sandbox/crm/`."""
        crm = self.crm.provider
        return crm if path.startswith((f"{crm.prefix}/", f"/sandbox{crm.prefix}/")) else self.mail

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The faults in the order of the module docstring."""
        path = request.path
        if path.startswith("/sandbox/"):
            return await handler(request)
        if self.switches.latency_ms:
            await asyncio.sleep(self.switches.latency_ms / 1000)
        provider = self._provider(path)
        token, faults = path == provider.token_path, provider.faults
        if not token and not path.startswith(provider.api):
            return await handler(request)
        form = await _form(request) if token else {}
        grant = provider.account(path, bearer(request), form)
        wait = faults.throttle(grant.user if grant else None, path, api=not token)
        if wait is not None:
            return _json({"error": "rate_limited"}, 429, {"Retry-After": str(wait)})
        if not await faults.hang(token):
            return _drop(request)
        fixed = _fixed(faults, token, form)
        if fixed is not None:
            return fixed
        if (token or path.startswith(provider.malformable)) and faults.malformed():
            return _garbage(token)
        lost = form.get("grant_type") == "refresh_token" or path in provider.losable
        if lost and faults.lose():
            await handler(request)
            return _drop(request)
        return await handler(request)

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        oauth = Request("GET", str(request.url), request.headers, query, {})
        user = query.get("login_hint") or "sandbox-user"
        server = self._provider(request.path).server
        try:
            grant = server.get_consent_grant(request=oauth, end_user=user)
        except OAuth2Error as error:
            return _json({"error": error.error, "error_description": error.description}, 400)
        status, _, headers = server.create_authorization_response(
            oauth, grant_user=user, grant=grant
        )
        location = dict(headers).get("Location")
        if status != 302 or location is None:
            return _json({"error": "invalid_request"}, 400)
        raise web.HTTPFound(location)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        oauth = Request("POST", str(request.url), request.headers, dict(request.query), form)
        status, body, headers = self._provider(request.path).server.create_token_response(oauth)
        if self.switches.hold_ms:
            await asyncio.sleep(self.switches.hold_ms / 1000)
        return _json(body, status, dict(headers))

    async def _me(self, request: web.Request) -> web.StreamResponse:
        grants = self._provider(request.path).grants
        grant = grants.holder(bearer(request))
        grants.stats.probes += 1
        if grant is None:
            return _json({"error": "invalid_token"}, 401, {"WWW-Authenticate": "Bearer"})
        return _json({"ok": True, "user": grant.user, "scope": grant.scope})

    def _authorized(self, read: Callable[[web.Request], web.Response]) -> Handler:
        async def answer(request: web.Request) -> web.StreamResponse:
            if self.grants.holder(bearer(request)) is None:
                return _json({"error": "invalid_token"}, 401)
            return read(request)

        return answer

    async def _write_records(self, request: web.Request) -> web.StreamResponse:
        if self.grants.holder(bearer(request)) is None:
            return _json({"error": "invalid_token"}, 401)
        return self.feed.write_records(request, await request.json())

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        """Keep what a webhook is sent: JSON decoded, a text (a report's Markdown) as it is."""
        text = request.content_type.startswith("text/")
        body = await request.text() if text else await request.json()
        return self.feed.hook(request, request.match_info["name"], body)

    async def _set_switches(self, request: web.Request) -> web.StreamResponse:
        changes = await request.json()
        known = {f.name for f in dataclasses.fields(Switches)}
        unknown = sorted(set(changes) - known)
        if unknown:
            return _json({"error": f"unknown switches: {', '.join(unknown)}"}, 400)
        for users in ("throttled_users", "crm_throttled_users"):
            if users in changes:
                changes[users] = tuple(changes[users])
        return _json(dataclasses.asdict(self.configure(**changes)))

    async def _stats(self, _: web.Request) -> web.StreamResponse:
        stats = dataclasses.asdict(self.grants.stats)
        return _json({**stats, "grants": len(self.grants.grants),
                      "revoked_grants": self.mail.revoked()})  # fmt: skip

    async def _mint(self, request: web.Request) -> web.StreamResponse:
        """Tokens for `user`, or a list of them for each of `users`."""
        asked = await request.json() if request.can_read_body else {}
        grants = self._provider(request.path).grants
        if isinstance(asked.get("users"), list):
            return _json([grants.mint(str(user)) for user in asked["users"]])
        return _json(grants.mint(str(asked.get("user", "sandbox-user"))))

    async def _revoke(self, request: web.Request) -> web.StreamResponse:
        grants = self._provider(request.path).grants
        grants.revoke_all()
        return _json({"revoked": len(grants.grants)})

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
        asked = await request.json()
        self.feed.add_records(int(asked.get("count", 0)), int(asked.get("bad_every", 0)))
        return _json({"count": len(self.feed.records)})

    async def _sink(self, request: web.Request) -> web.StreamResponse:
        return _json(self.feed.sinks.get(request.match_info["name"], []))


async def _form(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection unanswered: aiohttp's writing of the response returned here
    then fails as a client's disconnection would, and is dropped without a log."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


def _fixed(faults: Faults, token: bool, form: dict[str, str]) -> web.Response | None:
    """The answer of the fixed switches (status, malformed, leaky), if any is on."""
    switches = faults.switches
    status = switches.token_status if token else switches.api_status
    if status is not None:
        headers = {"Retry-After": str(switches.retry_after)} if status == 429 else {}
        return _json({"error": "sandbox_fault"}, status, headers)
    if not token:
        return None
    if switches.malformed:
        faults.stats.malformed += 1
        return _garbage(token)
    if switches.leaky_errors:
        refresh_token = form.get("refresh_token")
        body = {"error": "invalid_request", "error_description": f"bad token {refresh_token}"}
        return _json(body, 400)
    return None


def _garbage(token: bool) -> web.Response:
    """A 200 that is not JSON: a proxy's page, or an API answer cut short."""
    if token:
        return web.Response(text="<html>upstream error</html>", content_type="text/html")
    return web.Response(text='{"items": [', content_type="application/json")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    text = body if isinstance(body, str) else json.dumps(body)
    headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
    return web.Response(text=text, status=status, headers=headers, content_type="application/json")
