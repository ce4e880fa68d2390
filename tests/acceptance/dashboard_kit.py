"""A deployment to look at through the dashboard, and a visitor that logs in with aiohttp."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

from cronlink import App, RunContext, control
from cronlink.jobs import HttpTarget, Job, new_run
from cronlink.records.api_tokens import Scope
from cronlink.records.runs import Reason, RunState
from cronlink.store import Done, Outcome, Store

CANARY = "canary-7f3a9c-never-on-a-page"
"""Stands in for every secret: CRON_SECRET, a job's header, a connection's tokens."""

app = App()


@app.job("*/5 * * * *", name="tick", max_attempts=1)
async def tick(ctx: RunContext) -> str:
    ctx.log.info("ticked on attempt %s", ctx.attempt)
    return "ticked"


@app.job("0 3 * * 1-5", name="nightly", timezone="Europe/Paris", max_attempts=2)
async def nightly(ctx: RunContext) -> None:
    raise RuntimeError("the report failed")


app.add(Job(name="webhook", target=HttpTarget(
    url="http://127.0.0.1:9/hook", headers={"Authorization": f"Bearer {CANARY}"},
)))  # fmt: skip


async def tokens(store: Store) -> dict[str, str]:
    """A token of each scope, by scope label."""
    made = {}
    for scope in Scope:
        _, made[scope.label] = await control.create_token(
            store, scope.label, scope, None, datetime.now(UTC)
        )
    return made


async def history(store: Store, job: str, count: int) -> list[int]:
    """`count` finished runs of `job` (every fifth failed, the last one dead), the way a
    worker records them."""
    now = datetime.now(UTC)
    ids = [await store.enqueue(new_run(app.get(job), Reason.API), now) for _ in range(count)]
    claimed = await store.claim("w1", app.get(job).tier, count, timedelta(minutes=1), now)
    done = []
    for n, run in enumerate(sorted(claimed, key=lambda r: r.id)):
        state = RunState.SUCCEEDED if n % 5 else RunState.FAILED
        if n == count - 1:
            state = RunState.DEAD
        outcome = Outcome(state=state, duration_ms=10 + 7 * n,
                          logs=((now, "INFO", f"line of run {run.id}"),))  # fmt: skip
        done.append(Done(run_id=run.id, lease_token=run.lease_token or "", outcome=outcome))
    await store.complete(done, now)
    return ids


CSRF = re.compile(r'name="csrf" value="([^"]+)"')
NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@dataclass
class Visitor:
    """A browser without a browser: a cookie jar, forms posted as a browser posts them."""

    url: str
    http: aiohttp.ClientSession = field(
        default_factory=lambda: aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    )

    async def login(self, token: str) -> aiohttp.ClientResponse:
        page = await self.get("/dashboard/login")
        nonce = NONCE.search(page)
        assert nonce is not None
        return await self.post("/dashboard/login", {"nonce": nonce[1], "token": token})

    async def get(self, path: str, status: int = 200) -> str:
        async with self.http.get(self.url + path, allow_redirects=False) as answer:
            text = await answer.text()
            assert answer.status == status, (answer.status, text[:500])
            return text

    async def post(self, path: str, data: dict[str, str]) -> aiohttp.ClientResponse:
        async with self.http.post(self.url + path, data=data, allow_redirects=False) as answer:
            await answer.read()
            return answer

    async def csrf(self) -> str:
        found = CSRF.search(await self.get("/dashboard"))
        assert found is not None
        return found[1]

    def cookie(self) -> str:
        return next(c.value for c in self.http.cookie_jar if c.key == "cronlink_session")

    async def close(self) -> None:
        await self.http.close()
