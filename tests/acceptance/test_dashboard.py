"""`/dashboard` over plain HTTP on a real server (uvicorn on 127.0.0.1): sessions, CSRF,
scopes, revocation, tampered and expired cookies, audit lines, and no secret on any page.
The flows in a real browser are in tests/browser/test_dashboard.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import update

from cronlink.config_models import ServeModel
from cronlink.connections.crypto import Vault, generate_key
from cronlink.records.ai_calls import AiCall
from cronlink.records.api_tokens import digest
from cronlink.records.connections import ConnectionState
from cronlink.store import Store
from cronlink.store.schema import api_tokens, automations
from cronlink.web.dashboard_auth import LOGIN_BURST, PURPOSE
from cronlink.web.server import serving
from tests.acceptance.automation_kit import AutoKit, auto
from tests.acceptance.dashboard_kit import CANARY, NONCE, Visitor, app, history, tokens
from tests.acceptance.sandbox_kit import kit

__all__ = ["auto", "kit"]


@dataclass
class Site:
    url: str
    store: Store
    tokens: dict[str, str]
    visitors: list[Visitor] = field(default_factory=list)

    async def visitor(self, scope: str | None = "operate") -> Visitor:
        visitor = Visitor(self.url)
        self.visitors.append(visitor)
        if scope is not None:
            answer = await visitor.login(self.tokens[scope])
            assert (answer.status, answer.headers["Location"]) == (303, "/dashboard")
        return visitor


@pytest.fixture
async def site(any_store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Site]:
    monkeypatch.setenv("CRON_SECRET", CANARY)
    async with serving(any_store, app, "127.0.0.1", 0) as url:
        site = Site(url, any_store, await tokens(any_store))
        yield site
        for visitor in site.visitors:
            await visitor.close()


async def test_an_operator_sees_every_page_and_acts(site: Site) -> None:
    ids = await history(site.store, "tick", 60)
    me = await site.visitor()
    overview = await me.get("/dashboard")
    assert "60</b> runs in the last 24 h" in overview
    assert "<svg" in overview
    assert f'href="/dashboard/runs/{ids[-1]}"' in overview  # the dead run needs attention
    page = await me.get("/dashboard/jobs/tick")
    assert "Every 5 minutes" in page
    assert page.count("<rect") == 60
    assert f"/dashboard/jobs/tick?before_id={ids[-50]}" in page
    older = await me.get(f"/dashboard/jobs/tick?before_id={ids[-50]}")
    assert f'href="/dashboard/runs/{ids[0]}"' in older
    assert "Older runs" not in older
    nightly = await me.get("/dashboard/jobs/nightly")
    assert nightly.count("CET") + nightly.count("CEST") == 10  # the next 10 fires, zoned
    run = await me.get(f"/dashboard/runs/{ids[-1]}")
    assert "dead" in run
    assert f"line of run {ids[-1]}" in run
    await me.get("/dashboard/runs/999999", 404)
    await me.get("/dashboard/jobs/tik", 404)

    csrf = await me.csrf()
    answer = await me.post("/dashboard/jobs/tick/pause", {"csrf": csrf})
    assert (answer.status, answer.headers["Location"]) == (303, "/dashboard/jobs/tick")
    assert "tick" in await site.store.paused_jobs()
    assert "Resume" in await me.get("/dashboard/jobs/tick")
    await me.post("/dashboard/jobs/tick/resume", {"csrf": csrf})
    assert "tick" not in await site.store.paused_jobs()
    answer = await me.post("/dashboard/jobs/tick/run", {"csrf": csrf})
    run_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    assert (await site.store.get_run(run_id)).job == "tick"
    assert 'http-equiv="refresh"' in await me.get(answer.headers["Location"])

    operator = next(t for t in await site.store.tokens.list() if t.name == "operate")
    audited = [(e.actor, e.action, e.target, e.outcome) for e in await site.store.audit.find()]
    for action in ("dashboard.login", "jobs.pause", "jobs.resume", "jobs.trigger"):
        assert (operator.actor, action) in {(a, b) for a, b, _, _ in audited}, action


async def test_posts_without_the_sessions_csrf_token_are_refused(site: Site) -> None:
    me = await site.visitor()
    for form in ({}, {"csrf": ""}, {"csrf": "x" * 43}, {"csrf": (await me.csrf())[:-1]}):
        answer = await me.post("/dashboard/jobs/tick/pause", form)
        assert answer.status == 403
    assert await site.store.paused_jobs() == set()
    other = await site.visitor()  # another session's token does not do either
    answer = await me.post("/dashboard/jobs/tick/pause", {"csrf": await other.csrf()})
    assert answer.status == 403
    denied = await site.store.audit.find(action="jobs.pause")
    assert {e.outcome for e in denied} == {"denied"}


async def test_a_read_token_sees_pages_but_no_buttons_and_may_not_act(site: Site) -> None:
    me = await site.visitor("read")
    page = await me.get("/dashboard/jobs/tick")
    assert "Pause" not in page
    assert "Run now" not in page
    for action in ("pause", "resume", "run"):
        answer = await me.post(f"/dashboard/jobs/tick/{action}", {"csrf": await me.csrf()})
        assert answer.status == 403
    assert await site.store.paused_jobs() == set()
    forbidden = [e for e in await site.store.audit.find() if e.outcome == "forbidden"]
    assert len(forbidden) == 3


async def test_revoking_or_expiring_the_token_ends_the_session_at_once(site: Site) -> None:
    me = await site.visitor("operate")
    await me.get("/dashboard")
    [token] = [t for t in await site.store.tokens.list() if t.name == "operate"]
    await site.store.tokens.revoke(token.id, datetime.now(UTC))
    await me.get("/dashboard", 303)
    answer = await me.post("/dashboard/jobs/tick/pause", {"csrf": "anything"})
    assert (answer.status, answer.headers["Location"]) == (303, "/dashboard/login")

    them = await site.visitor("admin")
    await them.get("/dashboard")
    past = datetime.now(UTC) - timedelta(seconds=1)
    await site.store.transact(
        lambda c: c.execute(update(api_tokens).where(api_tokens.c.name == "admin")
                            .values(expires_at=past)),
        write=True,
    )  # fmt: skip
    await them.get("/dashboard", 303)


async def test_a_wrong_token_gets_one_message_and_logins_are_limited(site: Site) -> None:
    me = await site.visitor(None)
    messages = set()
    for wrong in ("clk_" + "x" * 43, "not-a-token", "", site.tokens["read"] + "x"):
        answer = await me.login(wrong)
        assert answer.status == 401
        messages.add(await me.get("/dashboard", 303))
    async with me.http.post(me.url + "/dashboard/login", data={"token": "clk_x"}) as answer:
        text = await answer.text()
        assert answer.status == 401  # no nonce: the same refusal
    for wrong in ("clk_" + "y" * 43, "nope"):
        async with me.http.post(
            me.url + "/dashboard/login", data={"token": wrong, "nonce": "n"}
        ) as answer:
            assert (answer.status, await answer.text()) == (401, text)
    assert "That token was not accepted." in text
    statuses = []
    for _ in range(LOGIN_BURST):
        statuses.append((await me.login(site.tokens["read"])).status)
    assert statuses[-1] == 429  # a good token too, once the address is over its limit
    assert "Retry-After" in (await me.login(site.tokens["read"])).headers
    refused = await site.store.audit.find(action="dashboard.login")
    assert {e.actor for e in refused if e.outcome == "denied"} == {"anonymous"}


async def test_tampered_forged_and_expired_cookies_are_refused(
    any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    monkeypatch.setenv("CRONLINK_SECRET_KEY", key)
    made = await tokens(any_store)
    async with serving(any_store, app, "127.0.0.1", 0) as url:
        me = Visitor(url)
        await me.login(made["admin"])
        good = me.cookie()
        sealer = Vault.from_text(key).derived(PURPOSE)
        plain = json.dumps({"d": digest(made["admin"]), "c": "c" * 43}).encode()
        old = sealer.encrypt_at_time(plain, int((datetime.now(UTC) - timedelta(hours=13))
                                                .timestamp()))  # fmt: skip
        other_key = Vault.from_text(generate_key()).derived(PURPOSE).encrypt(plain)
        for cookie in (good[:-2] + ("AA" if not good.endswith("AA") else "BB"), old.decode(),
                       other_key.decode(), "x" * 5000, sealer.encrypt(b"[]").decode()):  # fmt: skip
            me.http.cookie_jar.clear()
            me.http.cookie_jar.update_cookies({"cronlink_session": cookie})
            await me.get("/dashboard", 303)
        me.http.cookie_jar.clear()
        me.http.cookie_jar.update_cookies({"cronlink_session": good})
        await me.get("/dashboard")
        await me.close()
    # The same key in another process (a restart, a replica) opens the same sessions.
    async with serving(any_store, app, "127.0.0.1", 0) as url:
        again = Visitor(url)
        again.http.cookie_jar.update_cookies({"cronlink_session": good})
        await again.get("/dashboard")
        await again.close()


async def test_cookies_are_httponly_strict_and_secure_behind_https(
    sqlite_store: Store,
) -> None:
    made = await tokens(sqlite_store)

    async def cookies(url: str) -> str:
        """The Set-Cookie lines of a login, sent by hand (a jar keeps Secure cookies from
        plain HTTP)."""
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/dashboard/login") as page:
                nonce = NONCE.search(await page.text())
                assert nonce is not None
                assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
                lines = page.headers.getall("Set-Cookie")
            async with http.post(
                url + "/dashboard/login",
                data={"nonce": nonce[1], "token": made["read"]},
                headers={"Cookie": f"cronlink_login={nonce[1]}"},
                allow_redirects=False,
                cookies={},
            ) as answer:
                assert answer.status == 303
                return "\n".join([*lines, *answer.headers.getall("Set-Cookie")])

    limits = ServeModel(public_url="https://cron.example.com")
    async with serving(sqlite_store, app, "127.0.0.1", 0, limits) as url:
        lines = await cookies(url)
    assert made["read"] not in lines
    for line in lines.splitlines():
        for part in ("HttpOnly", "SameSite=Strict", "Path=/dashboard", "Secure"):
            assert part.lower() in line.lower(), line
    assert "cronlink_session=" in lines
    async with serving(sqlite_store, app, "127.0.0.1", 0) as url:
        assert "secure" not in (await cookies(url)).lower()


async def test_no_secret_on_any_page(auto: AutoKit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRON_SECRET", CANARY)
    store = auto.kit.connections.store
    made = await tokens(store)
    cid = await auto.kit.connect("alice", name="mail-main")
    down = await auto.kit.connect("bob")
    await store.connections.set_state(down, ConnectionState.NEEDS_REAUTH, "invalid_grant",
                                      datetime.now(UTC))  # fmt: skip
    await auto.automations.add(
        name="inbox", connection_id=cid, trigger="new_item", start="beginning",
        steps=[{"name": "trace", "call": "tests.acceptance.automation_steps:traced"}],
        params={"trace": str(auto.trace)},
    )  # fmt: skip
    await store.transact(lambda c: c.execute(update(automations).values(stalled=True)),
                         write=True)  # fmt: skip
    await history(store, "tick", 12)
    secrets = [CANARY, *made.values()]
    for sealed in (await store.connections.sealed_many([cid, down])).values():
        opened = auto.kit.connections.vault.open(sealed.connection.id, sealed.ciphertext)
        secrets += [opened.access_token, opened.refresh_token or "", sealed.ciphertext]
    async with serving(store, app, "127.0.0.1", 0, None, auto.kit.connections,
                       auto.automations) as url:  # fmt: skip
        site = Site(url, store, made)
        me = await site.visitor("admin")
        pages = [await me.get(p) for p in (
            "/dashboard", "/dashboard/jobs/tick", "/dashboard/jobs/webhook",
            "/dashboard/jobs/nightly", "/dashboard/runs/1", "/dashboard/connections",
            "/dashboard/automations", "/dashboard/login",
        )]  # fmt: skip
        assert "needs_reauth" in pages[0]
        assert "Stalled triggers" in pages[0]
        assert "bob" in pages[5]
        assert "mail-main" in pages[5]
        assert "inbox" in pages[6]
        assert "stalled" in pages[6]
        for page in pages:
            for secret in filter(None, secrets):
                assert secret not in page
        await me.close()


async def test_unconfigured_domains_say_so(site: Site) -> None:
    me = await site.visitor("read")
    assert "not configured" in await me.get("/dashboard/connections")
    assert "not configured" in await me.get("/dashboard/automations")


async def test_logout_ends_the_session_and_needs_its_csrf_token(site: Site) -> None:
    me = await site.visitor("read")
    assert (await me.post("/dashboard/logout", {"csrf": "wrong"})).status == 403
    await me.get("/dashboard")
    answer = await me.post("/dashboard/logout", {"csrf": await me.csrf()})
    assert (answer.status, answer.headers["Location"]) == (303, "/dashboard/login")
    await me.get("/dashboard", 303)
    await me.close()


async def test_the_usage_page_draws_the_days_quotas_advice_and_costs(site: Site) -> None:
    await history(site.store, "tick", 12)
    me = await site.visitor(scope="read")
    page = await me.get("/dashboard/usage")
    assert "<b>12</b> light invocations today, of 100,000 free" in page
    assert "Invocations per day, light and heavy" in page  # the chart
    assert "<td>light</td><td>12</td>" in page
    assert "light cron runner</td><td>$0.00</td>" in page
    assert "Near a quota" not in page
    assert 'href="/dashboard/usage"' in await me.get("/dashboard")


async def test_the_usage_page_lists_each_models_month_against_its_budget(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", CANARY)
    now = datetime.now(UTC)
    await sqlite_store.ai.record(AiCall(
        model="big", at=now, job="weekly-report", run_id=None, attempt=1, input_tokens=1_200_000,
        output_tokens=3_000, cost_usd=9.0, requests=2, answered=True,
    ))  # fmt: skip
    budgets = {"big": 10.0, "idle": None}
    async with serving(sqlite_store, app, "127.0.0.1", 0, budgets=budgets) as url:
        me = Visitor(url)
        await me.login((await tokens(sqlite_store))["read"])
        page = await me.get("/dashboard/usage")
        await me.close()
    assert "<td>big</td><td>1</td><td>0</td>" in page
    assert "<td>1,200,000</td><td>3,000</td>" in page
    assert "<td>$9.0000</td>" in page
    assert "<td>$10.00</td>" in page
    assert "<td>idle</td>" not in page  # neither called nor budgeted
    assert "Model big nears its budget: model big cost $9.00 this month, 90%" in page
