"""The OAuth connect flow end to end: a browser (aiohttp with a cookie jar) goes from
`cronlink serve`'s /connect to the sandbox provider's /oauth/authorize and back to
/oauth/callback, all on 127.0.0.1; the connection it leaves has tokens the sandbox takes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import aiohttp
import pytest
from yarl import URL

from cronlink.app import App
from cronlink.config_models import ServeModel
from cronlink.connections.authorize import Authorizer
from cronlink.connections.connect_state import COOKIE_PREFIX, INVALID_STATE, Flow
from cronlink.connections.crypto import Vault, generate_key
from cronlink.connections.providers import SHIPPED, Providers
from cronlink.connections.service import Connections
from cronlink.sandbox import Sandbox
from cronlink.store import Store
from cronlink.web.server import serving

Answer = tuple[int, Any, aiohttp.ClientResponse]


@dataclass
class Clock:
    ahead: timedelta = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def _browser() -> aiohttp.ClientSession:
    # `unsafe`: keep cookies of a bare IP address (127.0.0.1), as browsers do.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def _state(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def _with(url: str, **params: str) -> str:
    """`url` with query parameters replaced (an empty value drops one)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | params
    return parts._replace(query=urlencode({k: v for k, v in query.items() if v})).geturl()


@dataclass
class Served:
    url: str
    key: str
    sandbox: Sandbox
    connections: Connections
    clock: Clock
    browser: aiohttp.ClientSession
    seen: list[str] = field(default_factory=list)
    """Every URL and body a browser was shown, to look for secrets in."""

    async def start(self, query: str = "owner=alice") -> str:
        """The authorize URL `/connect/sandbox` sends the browser to."""
        status, body, answer = await self.get(f"{self.url}/connect/sandbox?{query}")
        assert status == 303, body
        return answer.headers["Location"]

    async def authorize(self, location: str) -> str:
        """The callback URL, with its code, the sandbox sends the browser back to."""
        status, _, answer = await self.get(location)
        assert status == 302
        return answer.headers["Location"]

    async def get(
        self, url: str, browser: aiohttp.ClientSession | None = None, **headers: str
    ) -> Answer:
        async with (browser or self.browser).get(
            url, headers=headers, allow_redirects=False
        ) as answer:
            text = await answer.text()
            self.seen += [text, answer.headers.get("Location", "")]
            body = await answer.json() if answer.content_type == "application/json" else text
            return answer.status, body, answer

    def cookies(self) -> dict[str, str]:
        found = self.browser.cookie_jar.filter_cookies(URL(f"{self.url}/oauth/callback"))
        return {k: v.value for k, v in found.items() if k.startswith(COOKIE_PREFIX)}

    def flow_of(self, url: str) -> Flow:
        """The flow sealed into a URL's state, opened by an authorizer of the test's own
        (the server's copy of the state stays unspent)."""
        return Authorizer(self.connections).resume(_state(url), self.cookies())

    async def audit(self) -> list[tuple[str, str, str, str, str]]:
        entries = await self.connections.store.audit.find(limit=1000)
        return [(e.actor, e.action, e.target, e.outcome, e.detail) for e in reversed(entries)]


@asynccontextmanager
async def serve(
    store: Store, sandbox: Sandbox, key: str, providers: Providers | None = None
) -> AsyncIterator[Served]:
    """One `cronlink serve` with connections; several with the same store and key stand
    for several processes behind a balancer."""
    # A plain session: the test reaches the sandbox on 127.0.0.1 whatever egress allows.
    clock, session = Clock(), aiohttp.ClientSession()
    connections = Connections(
        store, Vault.from_text(key), providers or Providers.load(), session, clock=clock
    )
    try:
        async with (
            serving(store, App(), "127.0.0.1", 0, connections=connections) as url,
            _browser() as browser,
        ):
            yield Served(url, key, sandbox, connections, clock, browser)
    finally:
        await session.close()


@pytest.fixture
async def sandbox(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sandbox]:
    async with Sandbox() as running:
        monkeypatch.setenv("CRONLINK_SANDBOX_URL", running.url)
        yield running


@pytest.fixture
async def served(sqlite_store: Store, sandbox: Sandbox) -> AsyncIterator[Served]:
    async with serve(sqlite_store, sandbox, generate_key()) as running:
        yield running


async def test_a_browser_connects_and_its_tokens_work(any_store: Store, sandbox: Sandbox) -> None:
    async with (
        serve(any_store, sandbox, generate_key()) as served,
        served.browser.get(f"{served.url}/connect/sandbox?owner=alice") as answer,
    ):
        assert [r.status for r in answer.history] == [303, 302]
        assert answer.status == 200
        body = await answer.json()
        assert set(body) == {"connection_id", "provider", "owner"}
        assert (body["provider"], body["owner"]) == ("sandbox", "alice")
        assert served.cookies() == {}  # the flow's cookie went with its state
        connection = await served.connections.get(body["connection_id"])
        assert (connection.owner, connection.scopes) == ("alice", "profile events")
        assert connection.refresh_due_at is not None
        token = (await served.connections.credentials(connection.id)).access_token
        async with served.browser.get(
            f"{sandbox.url}/api/me", headers={"Authorization": f"Bearer {token}"}
        ) as me:
            assert (await me.json())["user"] == "sandbox-user"
        assert [e.kind for e in await served.connections.events(connection.id)] == ["created"]
        assert [line[:4] for line in await served.audit()] == [
            ("anonymous", "connect.start", "sandbox", "redirected"),
            ("alice", "connect.callback", "sandbox", "connected"),
        ]


async def test_the_authorize_url_has_state_and_pkce_but_never_the_verifier(
    served: Served,
) -> None:
    status, _, answer = await served.get(f"{served.url}/connect/sandbox?owner=bob&scopes=b,a")
    location = answer.headers["Location"]
    [cookie] = answer.headers.getall("Set-Cookie")
    assert (status, answer.headers["Cache-Control"]) == (303, "no-store")
    assert location.startswith(f"{served.sandbox.url}/oauth/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "cronlink-sandbox"
    assert query["redirect_uri"] == f"{served.url}/oauth/callback"
    assert query["scope"] == "b a"
    assert query["code_challenge_method"] == "S256"
    assert {"state", "code_challenge"} <= set(query)
    assert cookie.startswith(COOKIE_PREFIX)
    for attribute in ("HttpOnly", "Path=/oauth/callback", "SameSite=lax", "Max-Age=600"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http here; over https the cookie is Secure
    flow = served.flow_of(location)
    assert flow.verifier is not None
    assert (flow.owner, flow.scopes) == ("bob", "b a")
    status, _, _ = await served.get(await served.authorize(location))
    assert status == 200
    assert not any(flow.verifier in text or flow.nonce in text for text in served.seen)
    for line in await served.audit():
        assert flow.verifier not in str(line)
        assert flow.nonce not in str(line)


async def test_a_replayed_callback_stores_nothing_more(any_store: Store, sandbox: Sandbox) -> None:
    async with serve(any_store, sandbox, generate_key()) as served:
        callback = await served.authorize(await served.start())
        stolen = "; ".join(f"{k}={v}" for k, v in served.cookies().items())
        assert (await served.get(callback))[0] == 200
        status, body, _ = await served.get(callback)  # the browser's cookie is gone
        assert (status, body) == (400, {"error": "invalid_state", "detail": INVALID_STATE})
        async with aiohttp.ClientSession() as thief:  # state, code and cookie, all copied
            status, body, _ = await served.get(callback, thief, Cookie=stolen)
            assert (status, body["error"]) == (400, "invalid_state")
            async with serve(any_store, sandbox, served.key) as other:
                # Another process has not seen the state: the provider refuses the code.
                elsewhere = callback.replace(served.url, other.url)
                status, body, _ = await served.get(elsewhere, thief, Cookie=stolen)
                assert (status, body["error"]) == (400, "code_rejected")
        assert len(await served.connections.find()) == 1
        outcomes = [line[3] for line in await served.audit()]
        # The thief's refusal follows the browser's within the second: counted, not written.
        assert outcomes[:3] == ["redirected", "connected", "no_cookie"]
        assert (outcomes[-1], outcomes.count("connected")) == ("code_rejected", 1)


async def test_a_flow_begun_on_one_server_finishes_on_another(
    sqlite_store: Store, sandbox: Sandbox
) -> None:
    async with (
        serve(sqlite_store, sandbox, generate_key()) as first,
        serve(sqlite_store, sandbox, first.key) as second,
    ):
        callback = await first.authorize(await first.start())
        # Cookies go by host, not port: the browser brings its cookie to the other one.
        status, body, _ = await first.get(callback.replace(first.url, second.url))
        assert (status, body["owner"]) == (200, "alice")


async def test_a_state_opens_after_a_key_rotation_and_never_with_another_key(
    sqlite_store: Store, sandbox: Sandbox
) -> None:
    old, new = generate_key(), generate_key()
    async with (
        serve(sqlite_store, sandbox, old) as before,
        serve(sqlite_store, sandbox, f"{new},{old}") as rotated,
        serve(sqlite_store, sandbox, new) as stranger,
    ):
        callback = await before.authorize(await before.start())
        status, body, _ = await before.get(callback.replace(before.url, stranger.url))
        assert (status, body["error"]) == (400, "invalid_state")
        status, _, _ = await before.get(callback.replace(before.url, rotated.url))
        assert status == 200


async def test_a_tampered_missing_or_expired_state_is_refused(served: Served) -> None:
    callback = await served.authorize(await served.start())
    state = _state(callback)
    flipped = state[:40] + ("A" if state[40] != "A" else "B") + state[41:]
    for url in (_with(callback, state=flipped), _with(callback, state="")):
        status, body, _ = await served.get(url)
        assert (status, body) == (400, {"error": "invalid_state", "detail": INVALID_STATE})
    served.clock.ahead = timedelta(minutes=11)
    status, body, _ = await served.get(callback)
    assert (status, body["error"]) == (400, "invalid_state")
    served.clock.ahead = timedelta()
    assert (await served.get(callback))[0] == 200  # refusals do not spend the state
    refused = [line[3] for line in await served.audit() if line[2] == "state"]
    assert refused[0] == "tampered"  # the next two within the second are counted, not written
    assert await served.connections.find() != []


async def test_an_expired_state_is_audited_as_such(served: Served) -> None:
    callback = await served.authorize(await served.start())
    served.clock.ahead = timedelta(minutes=10, seconds=1)
    assert (await served.get(callback))[0] == 400
    assert (await served.audit())[-1][2:4] == ("state", "expired")


async def test_a_state_brought_by_another_browser_is_refused(served: Served) -> None:
    """Login CSRF: someone's code and state sent to another person's browser."""
    callback = await served.authorize(await served.start())
    [name] = served.cookies()
    async with _browser() as victim:
        assert (await served.get(callback, victim))[0] == 400
        victim.cookie_jar.update_cookies({name: "not-the-nonce"}, URL(served.url))
        status, body, _ = await served.get(callback, victim)
        assert (status, body["error"]) == (400, "invalid_state")
    assert await served.connections.find() == []
    assert (await served.get(callback))[0] == 200


async def test_a_declined_consent_is_said_plainly(served: Served) -> None:
    location = await served.start("owner=alice&return_to=/settings")
    declined = f"{served.url}/oauth/callback?error=access_denied&state={quote(_state(location))}"
    status, _, answer = await served.get(declined)
    assert (status, answer.headers["Location"]) == (
        303, "/settings?error=access_denied&provider=sandbox",
    )  # fmt: skip
    location = await served.start("owner=alice")
    declined = f"{served.url}/oauth/callback?error=access_denied&state={quote(_state(location))}"
    status, page, _ = await served.get(declined, Accept="text/html")
    assert status == 400
    assert "<h1>Not connected</h1>" in page
    assert "was declined; nothing was stored" in page
    assert await served.connections.find() == []
    assert [line[:4] for line in await served.audit()][-1] == (
        "alice", "connect.callback", "sandbox", "access_denied",
    )  # fmt: skip


async def test_pkce_a_code_with_another_flows_verifier_is_refused(served: Served) -> None:
    """The sandbox checks the verifier: a code injected into another flow is useless."""
    mine = await served.authorize(await served.start())
    other = await served.start()
    code = parse_qs(urlsplit(mine).query)["code"][0]
    injected = f"{served.url}/oauth/callback?code={code}&state={quote(_state(other))}"
    status, body, _ = await served.get(injected)
    assert (status, body["error"]) == (400, "code_rejected")
    assert await served.connections.find() == []
    assert (await served.audit())[-1][3:] == (
        "code_rejected", "sandbox refused the refresh: invalid_grant (Code challenge failed.)",
    )  # fmt: skip


async def test_bad_requests_to_connect_are_named(served: Served) -> None:
    status, body, _ = await served.get(f"{served.url}/connect/nope?owner=alice")
    assert (status, body["error"]) == (404, "unknown_provider")
    assert "'nope'" in body["detail"]
    assert "sandbox" in body["known"]
    for query, named in (("", "owner"), ("owner=%20", "owner"), ("owner=a&scopes=x%22y", "scopes"),
                         ("owner=" + "a" * 201, "owner")):  # fmt: skip
        status, body, _ = await served.get(f"{served.url}/connect/sandbox?{query}")
        assert (status, body["error"]) == (400, "invalid_request")
        assert body["detail"].startswith(f"{named}:")
    assert served.cookies() == {}


async def test_return_to_must_stay_on_this_site(served: Served) -> None:
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example", "settings",
                   "javascript:alert(1)", "/\tevil", "/a\r\nSet-Cookie: x=y"):  # fmt: skip
        status, body, _ = await served.get(
            f"{served.url}/connect/sandbox?owner=a&return_to={quote(target, safe='')}"
        )
        assert (status, body["error"]) == (400, "invalid_request"), target
        assert body["detail"].startswith("return_to:")
    async with served.browser.get(
        f"{served.url}/connect/sandbox?owner=a&return_to={quote('/settings?tab=2')}"
    ) as answer:
        assert [r.status for r in answer.history] == [303, 302, 303]
        [connection] = await served.connections.find()
        expected = f"/settings?tab=2&connection_id={connection.id}&provider=sandbox"
        assert str(answer.url) == served.url + expected


async def test_providers_that_cannot_start_a_flow(
    sqlite_store: Store, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = (SHIPPED / "sandbox.toml").read_text()
    manual = shipped.replace('"sandbox"', '"manual"').replace(
        'authorize_url = "/oauth/authorize"\n', ""
    )  # a provider with no authorization step (client credentials, pasted tokens)
    unset = shipped.replace('"sandbox"', '"unset"').replace(
        "${CRONLINK_SANDBOX_CLIENT_SECRET:-sandbox-secret}", "${CRONLINK_TEST_UNSET_SECRET}"
    )
    (tmp_path / "manual.toml").write_text(manual)
    (tmp_path / "unset.toml").write_text(unset)
    monkeypatch.delenv("CRONLINK_TEST_UNSET_SECRET", raising=False)
    async with serve(sqlite_store, sandbox, generate_key(), Providers.load(tmp_path)) as served:
        status, body, _ = await served.get(f"{served.url}/connect/manual?owner=a")
        assert (status, body["error"]) == (400, "unsupported")
        assert body["detail"].startswith("provider 'manual' has no authorization step")
        status, body, _ = await served.get(f"{served.url}/connect/unset?owner=a")
        assert (status, body) == (
            503, {"error": "provider_misconfigured",
                  "detail": "provider 'unset' is not set up on this server"},
        )  # fmt: skip


async def test_without_connections_the_flow_is_unavailable(sqlite_store: Store) -> None:
    async with serving(sqlite_store, App(), "127.0.0.1", 0) as url, _browser() as browser:
        for path in ("/connect/sandbox?owner=a", "/oauth/callback?state=x&code=y"):
            async with browser.get(url + path, allow_redirects=False) as answer:
                assert answer.status == 503
                body = await answer.json()
                assert body["error"] == "not_configured"
                assert "[connections]" in body["detail"]


async def test_behind_a_tls_proxy_the_public_url_is_what_browsers_get(served: Served) -> None:
    public = ServeModel(public_url="https://cron.example.com/")
    store = served.connections.store
    async with serving(store, App(), "127.0.0.1", 0, public, served.connections) as url:
        connect = f"{url}/connect/sandbox?owner=bob"
        async with _browser() as browser, browser.get(connect, allow_redirects=False) as got:
            assert got.status == 303
            query = parse_qs(urlsplit(got.headers["Location"]).query)
            [cookie] = got.headers.getall("Set-Cookie")
    assert query["redirect_uri"] == ["https://cron.example.com/oauth/callback"]
    assert "Secure" in cookie
    with pytest.raises(ValueError, match="not a base URL"):
        ServeModel(public_url="cron.example.com")


async def test_a_name_asked_for_at_connect_is_the_connections(served: Served) -> None:
    status, body, _ = await served.get(f"{served.url}/connect/sandbox?owner=alice&name=a%20b")
    assert (status, body["error"]) == (400, "invalid_request")
    assert body["detail"].startswith("name: 'a b' is not a connection name")
    callback = await served.authorize(await served.start("owner=alice&name=mail-main"))
    status, body, _ = await served.get(callback)
    assert status == 200
    assert (await served.connections.get(body["connection_id"])).name == "mail-main"
    taken = await served.authorize(await served.start("owner=alice&name=mail-main"))
    status, body, _ = await served.get(taken)
    assert (status, body["error"]) == (400, "invalid_request")
    assert "alice has a connection named 'mail-main' already" in body["detail"]
    assert [c.name for c in await served.connections.find(owner="alice")] == ["mail-main"]
