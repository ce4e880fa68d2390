"""`POST /cron/{job}` and `/cron/tick` on a real server (uvicorn on 127.0.0.1): behind
CRON_SECRET, idempotent by the caller's headers, every call audited without a secret."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from cronlink.app import App
from cronlink.config import Settings, load_settings
from cronlink.config_models import ServeModel
from cronlink.engine.scheduler import Scheduler
from cronlink.errors import ConfigError
from cronlink.jobs import HttpTarget, Job, new_run
from cronlink.records.runs import Reason, Run, RunState, Tier
from cronlink.runtime import run_roles, serve_http
from cronlink.signatures import Request, sign
from cronlink.store import RunFilter, Store, store_for
from cronlink.web import service
from cronlink.web.limits import Limiter
from cronlink.web.server import serving
from tests.acceptance.handlers import app
from tests.acceptance.worker_kit import finished, running_worker, wait_until
from tests.unit.test_refusal_tally import summed

ONE, TWO = "s3cret-one-5b1f0e2c9a", "s3cret-two-9d27c4aa51"
KEY, OLD_KEY = "signing-key-new-0123456789abcdef0", "signing-key-old-0123456789abcdef0"


@dataclass
class Served:
    url: str
    http: aiohttp.ClientSession
    store: Store

    async def post(
        self, path: str, auth: str | None = f"Bearer {ONE}", **headers: str
    ) -> tuple[int, dict[str, object], dict[str, str]]:
        if auth is not None:
            headers["Authorization"] = auth
        async with self.http.post(self.url + path, headers=headers) as answer:
            return answer.status, await answer.json(), dict(answer.headers)


@pytest.fixture
async def served(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setenv("CRON_SECRET", f"{ONE}, {TWO}")
    ticking = App()
    ticking.jobs.update(app.jobs)
    ticking.job(schedule="* * * * * *", name="every-second")(app.jobs["ok"].handler)  # type: ignore[arg-type]
    async with (
        serving(sqlite_store, ticking, "127.0.0.1", 0) as url,
        aiohttp.ClientSession() as http,
    ):
        yield Served(url, http, sqlite_store)


@pytest.mark.parametrize(
    "auth",
    [None, "", "Bearer", "Bearer ", f"Basic {ONE}", f"Bearer {ONE}x", "Bearer wrong",
     f"bearer  {ONE[:-1]}", "Bearer \u00e9\u00e9\u00e9"],
)  # fmt: skip
async def test_every_wrong_credential_gets_the_same_401(served: Served, auth: str | None) -> None:
    headers = {} if auth is None else {"Authorization": auth.encode().decode("latin-1")}
    async with served.http.post(served.url + "/cron/ok", headers=headers) as answer:
        assert answer.status == 401
        assert await answer.json() == {"error": "unauthorized"}
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="cronlink"'
    [entry] = await served.store.audit.find()
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (
        "anonymous", "cron.run", "ok", "denied",
    )  # fmt: skip
    assert entry.client == "127.0.0.1"


async def test_either_secret_queues_a_run_and_answers_at_once(served: Served) -> None:
    for secret in (ONE, TWO):
        status, body, _ = await served.post("/cron/ok", auth=f"Bearer {secret}")
        assert status == 202
        assert body["state"] == "queued"
        run = await served.store.get_run(int(body["run_id"]))  # type: ignore[call-overload]
        assert (run.job, run.reason, run.state) == ("ok", Reason.API, RunState.QUEUED)


async def test_the_same_schedule_time_or_key_twice_gives_the_same_run(served: Served) -> None:
    stamp = "2030-05-01T12:00:00+02:00"
    first = await served.post("/cron/ok", **{"X-CloudScheduler-ScheduleTime": stamp})
    again = await served.post("/cron/ok", **{"X-CloudScheduler-ScheduleTime": stamp})
    assert first[1]["run_id"] == again[1]["run_id"]
    assert (first[1]["deduplicated"], again[1]["deduplicated"]) == (False, True)
    run = await served.store.get_run(int(first[1]["run_id"]))  # type: ignore[call-overload]
    assert run.scheduled_for == datetime(2030, 5, 1, 10, tzinfo=UTC)
    keyed = [await served.post("/cron/ok", **{"Idempotency-Key": "k-1"}) for _ in range(2)]
    assert keyed[0][1]["run_id"] == keyed[1][1]["run_id"] != first[1]["run_id"]
    status, body, _ = await served.post("/cron/ok", **{"X-Cronlink-Scheduled-Time": "noon"})
    assert (status, body["error"]) == (400, "invalid_request")
    assert "X-Cronlink-Scheduled-Time: 'noon' is not an ISO 8601 instant" in str(body["detail"])
    outcomes = [e.outcome for e in reversed(await served.store.audit.find())]
    assert outcomes == ["accepted", "deduplicated", "accepted", "deduplicated", "invalid"]


async def test_an_unknown_job_is_named_with_close_ones(served: Served) -> None:
    status, body, _ = await served.post("/cron/oK")
    assert status == 404
    assert body["error"] == "unknown_job"
    assert body["suggestions"] == ["ok"]


async def test_wait_returns_a_light_runs_result(served: Served) -> None:
    async with running_worker(served.store, Tier.LIGHT):
        status, body, _ = await served.post("/cron/ok?wait=true")
    assert status == 200
    assert body["state"] == "succeeded"


async def test_wait_without_a_light_worker_answers_at_once_saying_why(served: Served) -> None:
    status, body, _ = await served.post("/cron/ok?wait=true")
    assert (status, body["state"]) == (202, "queued")
    assert body["detail"] == (
        "no light worker has run in the last two minutes: the run waits in the queue for "
        "`cronlink run` or `cronlink worker --tier light`"
    )
    # A worker that ran once and stopped three minutes ago does not count either.
    then = datetime.now(UTC) - timedelta(minutes=3)
    await served.store.heartbeats.beat("worker:light", then)
    status, body, _ = await served.post("/cron/ok?wait=true")
    assert (status, "detail" in body) == (202, True)


async def test_serve_alone_says_it_runs_no_workers(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CRON_SECRET", ONE)
    settings = load_settings(database_url=sqlite_store.url)
    stopped = asyncio.Event()
    stopped.set()
    with caplog.at_level(logging.INFO, logger="cronlink"):
        await serve_http(settings, app, "127.0.0.1", 0, stop=stopped)
    assert (
        "this process runs no workers and no scheduler: queued runs wait for `cronlink "
        "run` or `cronlink worker`" in caplog.text
    )


async def test_tick_fires_the_due_schedules(served: Served) -> None:
    status, body, _ = await served.post("/cron/tick")
    assert status == 200
    first = int(body["started"])  # type: ignore[call-overload]
    assert first in (0, 1)  # synced now: an instant is due within the second
    status, _, _ = await served.post("/cron/tick", auth="Bearer nope")
    assert status == 401


async def test_health_and_readiness(served: Served) -> None:
    async with served.http.get(served.url + "/healthz") as answer:
        assert (answer.status, await answer.json()) == (200, {"status": "ok"})
    async with served.http.get(served.url + "/readyz") as answer:
        assert answer.status == 503  # no scheduler has shown itself: schedules would not fire
        assert (await answer.json())["scheduler"] == "never seen"
    assert (await served.post("/cron/tick"))[0] == 200  # an external cron drives the schedules
    async with served.http.get(served.url + "/readyz") as answer:
        assert (answer.status, await answer.json()) == (
            200, {"status": "ready", "database": "ok", "scheduler": "ok"},
        )  # fmt: skip
    stale = datetime.now(UTC) - timedelta(minutes=3)
    await served.store.heartbeats.beat("scheduler", stale)
    async with served.http.get(served.url + "/readyz") as answer:
        assert answer.status == 503
        seen = stale.isoformat(timespec="seconds")
        assert (await answer.json())["scheduler"] == f"last seen {seen}"


async def test_a_running_scheduler_keeps_readiness_fresh(sqlite_store: Store) -> None:
    stop = asyncio.Event()
    chief = asyncio.create_task(Scheduler(sqlite_store, app.jobs).run(stop))
    try:
        await wait_until(lambda: _beaten(sqlite_store), within=10)  # the first pass beats
    finally:
        stop.set()
        await chief
    last = await sqlite_store.heartbeats.last("scheduler")
    assert last is not None
    assert datetime.now(UTC) - last < timedelta(seconds=10)


async def _beaten(store: Store) -> bool:
    return await store.heartbeats.last("scheduler") is not None


async def test_without_cron_secret_everything_is_refused(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRON_SECRET", raising=False)
    async with serving(sqlite_store, app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
        for auth in ("Bearer ", "Bearer x", f"Bearer {ONE}"):
            async with http.post(url + "/cron/ok", headers={"Authorization": auth}) as answer:
                assert answer.status == 401


async def test_the_audit_log_never_holds_a_secret(served: Served, db_url: str) -> None:
    await served.post("/cron/ok")
    await served.post("/cron/ok", auth=f"Bearer {TWO}-wrong")
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronlink", "audit", "--json", "--database-url", db_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await cli.communicate())[0].decode()
    assert cli.returncode == 0, output
    entries = json.loads(output)
    assert [(e["actor"], e["outcome"]) for e in entries] == [
        ("anonymous", "denied"), ("cron-secret", "accepted"),
    ]  # fmt: skip
    assert ONE not in output
    assert TWO not in output


async def test_one_key_sent_twenty_times_at_once_is_one_run(
    any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", ONE)
    async with serving(any_store, app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as http:

        async def call() -> tuple[int, object]:
            headers = {"Authorization": f"Bearer {ONE}", "Idempotency-Key": "retry-storm"}
            async with http.post(url + "/cron/ok", headers=headers) as answer:
                return answer.status, (await answer.json())["run_id"]

        answers = await asyncio.gather(*(call() for _ in range(20)))
    assert {status for status, _ in answers} == {202}
    assert len({run_id for _, run_id in answers}) == 1


async def test_a_flood_of_wrong_secrets_is_audited_in_summary_and_slowed(served: Served) -> None:
    async def wrong(n: int) -> int:
        return (await served.post(f"/cron/job-{n}", auth="Bearer guess"))[0]

    began = asyncio.get_running_loop().time()
    statuses = await asyncio.gather(*(wrong(n) for n in range(40)))
    assert set(statuses) == {401}
    # The later ones waited, though each named another job: the back-off is the client's.
    assert asyncio.get_running_loop().time() - began >= 0.5
    status, _, _ = await served.post("/cron/ok")  # valid callers are not held up
    assert status == 202
    denied = [e for e in await served.store.audit.find() if e.outcome == "denied"]
    assert [e.target for e in denied] == ["job-0"]  # the rest are counted, not written


async def test_refusals_naming_many_targets_are_a_few_lines_with_exact_counts(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong secrets at 2,000 different paths, most of them over the address's rate: one
    line for the first, one summing up the rest, at once when the service stops."""
    monkeypatch.setenv("CRON_SECRET", ONE)
    monkeypatch.setattr(service, "SLOW_DOWN", 0.0)  # the back-off is tested above
    model = ServeModel(address_rate=1, address_burst=100)
    gate = asyncio.Semaphore(50)
    async with (
        serving(sqlite_store, app, "127.0.0.1", 0, model) as url,
        aiohttp.ClientSession() as http,
    ):

        async def wrong(n: int) -> int:
            async with gate, http.post(f"{url}/cron/job-{n}", headers={"Authorization": "x"}) as r:
                return r.status

        statuses = Counter(await asyncio.gather(*(wrong(n) for n in range(2000))))
        assert len(await sqlite_store.audit.find()) == 1
    assert set(statuses) == {401, 429}
    summary, first = await sqlite_store.audit.find()
    assert (first.target, first.outcome) == ("job-0", "denied")
    total, counts, distinct = summed(summary.detail)
    assert (summary.outcome, summary.client) == ("refused", "127.0.0.1")
    assert (total, counts) == (1999, {"denied": statuses[401] - 1, "limited": statuses[429]})
    assert distinct == "100+"


async def test_a_secret_over_its_rate_is_counted_not_written_each_time(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", ONE)
    monkeypatch.setattr(service, "SLOW_DOWN", 0.0)
    model = ServeModel(credential_rate=0.01, credential_burst=1)
    async with (
        serving(sqlite_store, app, "127.0.0.1", 0, model) as url,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for n in range(30):
            async with http.post(
                f"{url}/cron/ok?n={n}", headers={"Authorization": f"Bearer {ONE}"}
            ) as r:
                statuses.append(r.status)
        assert [e.outcome for e in await sqlite_store.audit.find()] == ["accepted"]
    assert statuses == [202] + [429] * 29
    summary, _ = await sqlite_store.audit.find()
    assert (summary.actor, summary.outcome) == ("cron-secret", "limited")
    assert summed(summary.detail) == (29, {"limited": 29}, "1")


async def _limited_server(
    store: Store, model: ServeModel
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with serving(store, app, "127.0.0.1", 0, model) as url, aiohttp.ClientSession() as http:
        yield url, http


async def test_a_client_over_its_rate_gets_429_with_retry_after(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", ONE)
    model = ServeModel(address_rate=0.5, address_burst=3)
    async for url, http in _limited_server(sqlite_store, model):
        statuses = []
        for _ in range(4):
            async with http.post(url + "/cron/ok", headers={"Authorization": f"Bearer {ONE}"}) as r:
                statuses.append(r.status)
                retry = r.headers.get("Retry-After")
        assert statuses == [202, 202, 202, 429]
        assert retry == "2"
    assert (await sqlite_store.audit.find())[0].outcome == "limited"


async def test_forwarded_for_counts_only_from_trusted_proxies(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", ONE)
    auth = {"Authorization": f"Bearer {ONE}"}

    async def statuses(model: ServeModel, senders: list[str]) -> list[int]:
        got = []
        async for url, http in _limited_server(sqlite_store, model):
            for sender in senders:
                # A client may prepend anything; the proxy appends the address it saw.
                headers = auth | {"X-Forwarded-For": f"198.51.100.1, {sender}"}
                async with http.post(url + "/cron/ok", headers=headers) as answer:
                    got.append(answer.status)
        return got

    behind = ServeModel(trusted_proxies=["127.0.0.1/32"], address_rate=0.01, address_burst=1)
    assert await statuses(behind, ["203.0.113.7", "203.0.113.8", "203.0.113.7"]) == [202, 202, 429]
    clients = {e.client for e in await sqlite_store.audit.find()}
    assert clients == {"203.0.113.7", "203.0.113.8"}
    exposed = ServeModel(address_rate=0.01, address_burst=1)  # 127.0.0.1 is not trusted
    assert await statuses(exposed, ["203.0.113.9", "203.0.113.10"]) == [202, 429]


async def test_servers_on_one_database_share_their_rate_limits_across_restarts(
    any_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `cronlink serve` on one database, then one started again: the address's burst
    of 3 is spent once between them, not 3 times each."""
    monkeypatch.setenv("CRON_SECRET", ONE)
    model = ServeModel(address_rate=0.01, address_burst=3)
    auth = {"Authorization": f"Bearer {ONE}"}
    stores = [store_for(any_url), store_for(any_url)]
    for store in stores:
        await store.open()
    try:

        async def calls(count: int, store: Store) -> list[int]:
            async with (
                serving(store, app, "127.0.0.1", 0, model) as url,
                aiohttp.ClientSession() as http,
            ):
                statuses = []
                for _ in range(count):
                    async with http.post(url + "/cron/ok", headers=auth) as answer:
                        statuses.append(answer.status)
                return statuses

        first, second = await asyncio.gather(calls(2, stores[0]), calls(2, stores[1]))
        assert sorted(first + second) == [202, 202, 202, 429]
        assert await calls(1, stores[0]) == [429]  # started again: the bucket is kept
    finally:
        for store in stores:
            await store.close()


async def test_a_bucket_refills_at_its_rate() -> None:
    bucket = Limiter(rate=2.0, burst=2)
    assert [await bucket.wait("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert await bucket.wait("a", now=0.5) == 0.0
    assert await bucket.wait("b", now=0.5) == 0.0  # keys do not share


async def test_a_huge_body_is_refused_and_a_slow_request_cut_off(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", ONE)
    auth = {"Authorization": f"Bearer {ONE}"}
    model = ServeModel.model_validate({"max_body": "64KiB", "request_timeout": "500ms"})
    async for url, http in _limited_server(sqlite_store, model):
        async with http.post(url + "/cron/ok", headers=auth, data=b"x" * 70_000) as answer:
            assert (answer.status, await answer.json()) == (413, {"error": "request_too_large"})
        async with http.post(url + "/cron/ok", headers=auth, data=b"x" * 60_000) as answer:
            assert answer.status == 202
        # A light worker seen, which never takes the run: the wait would last 25 s; the
        # request is cut off at 0.5 s.
        await sqlite_store.heartbeats.beat("worker:light", datetime.now(UTC))
        async with http.post(url + "/cron/ok?wait=true", headers=auth) as answer:
            assert (answer.status, await answer.json()) == (408, {"error": "request_timeout"})
        async with http.get(url + "/healthz") as answer:
            assert answer.status == 200


def _signed(path: str, body: bytes = b"", key: str = KEY, method: str = "POST") -> dict[str, str]:
    """The bearer and a signature for a call to `path` (with its query, if any)."""
    route, _, query = path.partition("?")
    call = Request(method=method, path=route, query=query, body=body)
    return {"Authorization": f"Bearer {ONE}", "X-Cronlink-Signature": sign(key, call)}


async def _called_by_a_target(store: Store, url: str, sign: bool) -> Run:
    """The run of an HTTP-target job of another cronlink that calls `url` with
    `Bearer ${CRON_SECRET}` (and signed, if `sign`)."""
    caller = App()
    caller.add(
        Job(name="call-ok", target=HttpTarget(
            url=url, sign=sign, headers={"Authorization": "Bearer ${CRON_SECRET}"}
        ))
    )  # fmt: skip
    run_id = await store.enqueue(new_run(caller.get("call-ok"), Reason.MANUAL), datetime.now(UTC))
    async with running_worker(store, Tier.LIGHT, caller.jobs):
        return await finished(store, run_id)


@pytest.fixture
def _signing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRON_SECRET", ONE)
    monkeypatch.setenv("CRON_SIGNING_KEY", f"{KEY},{OLD_KEY}")


@pytest.mark.usefixtures("_signing")
async def test_required_signatures_and_a_signing_http_target(sqlite_store: Store) -> None:
    auth = {"Authorization": f"Bearer {ONE}"}
    async for url, http in _limited_server(sqlite_store, ServeModel(require_signature=True)):
        async with http.post(url + "/cron/ok", headers=auth) as answer:
            assert answer.status == 401  # the bearer alone is not enough
            assert (await answer.json())["detail"] == "X-Cronlink-Signature is required"
        signed = _signed("/cron/ok?wait=false")
        async with http.post(url + "/cron/ok?wait=false", headers=signed) as answer:
            assert answer.status == 202
        async with http.post(url + "/cron/ok?wait=false", headers=signed) as answer:
            assert answer.status == 401  # the same signature again: a replay
            assert (await answer.json())["detail"] == "X-Cronlink-Signature was already used"
        # A cronlink's HTTP-target job calling this one signs each call, query included,
        # with the current signing key; its URL's odd characters are signed as sent.
        run = await _called_by_a_target(
            sqlite_store, url + "/cron/ok?wait=false&note=a b|c", sign=True
        )
        assert run.state is RunState.SUCCEEDED, run.error


@pytest.mark.usefixtures("_signing")
async def test_a_captured_call_can_be_neither_replayed_changed_nor_re_signed(
    sqlite_store: Store,
) -> None:
    """Whoever captured a signed call holds its bearer, not the signing key."""
    async for url, http in _limited_server(sqlite_store, ServeModel(require_signature=True)):
        captured = _signed("/cron/ok", b"{}")
        async with http.post(url + "/cron/ok", headers=captured, data=b"{}") as answer:
            assert answer.status == 202
        attempts = [
            ("/cron/ok", captured, b"{}"),  # verbatim
            ("/cron/ok?wait=true", _signed("/cron/ok", b"{}"), b"{}"),  # a query added
            ("/cron/ok", _signed("/cron/ok", b"{}"), b"{ }"),  # another body
            ("/cron/ok", _signed("/cron/ok", b"{}", key=ONE), b"{}"),  # re-signed with the bearer
        ]
        for path, headers, body in attempts:
            async with http.post(url + path, headers=headers, data=body) as answer:
                assert answer.status == 401, path
                assert (await answer.json())["error"] == "invalid_signature"
        async with http.post(url + "/cron/ok", headers=_signed("/cron/ok", key=OLD_KEY)) as answer:
            assert answer.status == 202  # a key still accepted during a rotation
    assert {e.outcome for e in await sqlite_store.audit.find()} >= {"bad_signature"}


@pytest.mark.usefixtures("_signing")
@pytest.mark.parametrize(
    "header",
    ["t=abc,n=0123456789abcdef,v2=" + "0" * 64, "t=" + "9" * 5000 + ",n=x,v1=00",
     "t=\u00b2,v1=00", "t=" + "9" * 4000 + ",v1=00", "v1", "t=1,t=2", ""],
)  # fmt: skip
async def test_a_malformed_signature_is_a_401_that_says_why_and_is_audited(
    sqlite_store: Store, header: str
) -> None:
    headers = {"Authorization": f"Bearer {ONE}", "X-Cronlink-Signature": header}
    async for url, http in _limited_server(sqlite_store, ServeModel()):
        async with http.post(url + "/cron/ok", headers=headers) as answer:
            assert answer.status == 401
            problem = await answer.json()
    assert problem["error"] == "invalid_signature"
    assert problem["detail"].startswith("X-Cronlink-Signature is malformed: ")
    [entry] = await sqlite_store.audit.find()
    assert (entry.action, entry.outcome) == ("cron.run", "bad_signature")


async def test_a_cronlink_calling_a_cronlink_sends_the_current_secret_alone(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CRON_SECRET="NEW,OLD" mid-rotation: `${CRON_SECRET}` is NEW, not the list."""
    monkeypatch.setenv("CRON_SECRET", f"{ONE},{TWO}")
    async for url, _ in _limited_server(sqlite_store, ServeModel()):
        run = await _called_by_a_target(sqlite_store, url + "/cron/ok", sign=False)
        assert run.state is RunState.SUCCEEDED, run.error


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"CRON_SECRET": f"{ONE},short-secret"}, "CRON_SECRET: value #2 is shorter than 16"),
        ({"CRON_SECRET": ONE, "CRON_SIGNING_KEY": "too-short"}, "CRON_SIGNING_KEY: value #1"),
        ({"CRON_SECRET": KEY, "CRON_SIGNING_KEY": KEY}, "must differ from every CRON_SECRET"),
    ],
)
async def test_a_weak_secret_stops_every_role_at_start(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], said: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(database_url=sqlite_store.url)
    stopped = asyncio.Event()
    stopped.set()
    starts: list[Callable[[], Awaitable[None]]] = [
        lambda: run_roles(settings, app, scheduler=True, tiers=(Tier.LIGHT,), stop=stopped),
        lambda: run_roles(settings, app, scheduler=False, tiers=(), serve=("127.0.0.1", 0),
                          stop=stopped),
        lambda: serve_http(settings, app, "127.0.0.1", 0, stop=stopped),
    ]  # fmt: skip
    for start in starts:
        with pytest.raises(ConfigError, match=said):
            await start()


async def test_required_signatures_without_a_key_stop_serve_at_start(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", ONE)
    monkeypatch.delenv("CRON_SIGNING_KEY", raising=False)
    settings = Settings(database_url=sqlite_store.url, serve=ServeModel(require_signature=True))
    stopped = asyncio.Event()
    stopped.set()
    with pytest.raises(ConfigError, match="require_signature needs CRON_SIGNING_KEY"):
        await serve_http(settings, app, "127.0.0.1", 0, stop=stopped)


async def test_a_signed_call_replayed_to_another_server_is_refused(
    any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `cronlink serve` behind one balancer share the database: a signature spent on
    one is spent on both."""
    monkeypatch.setenv("CRON_SECRET", ONE)
    monkeypatch.setenv("CRON_SIGNING_KEY", KEY)
    signed = _signed("/cron/ok")
    async with (
        serving(any_store, app, "127.0.0.1", 0) as first,
        serving(any_store, app, "127.0.0.1", 0) as second,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(first + "/cron/ok", headers=signed) as answer:
            assert answer.status == 202
        async with http.post(second + "/cron/ok", headers=signed) as answer:
            assert answer.status == 401
        async with http.post(second + "/cron/ok", headers=_signed("/cron/ok")) as answer:
            assert answer.status == 202
    spent = await any_store.transact(
        lambda c: c.exec_driver_sql("SELECT count(*) FROM spent_signatures").scalar_one(),
        write=False,
    )
    assert spent == 2


async def test_header_and_depth_limits_come_from_serve_settings(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", ONE)
    model = ServeModel.model_validate({"max_headers": "2KiB", "max_json_depth": 3})
    auth = {"Authorization": f"Bearer {ONE}", "Content-Type": "application/json"}
    async for url, http in _limited_server(sqlite_store, model):
        async with http.post(url + "/cron/ok", headers=auth | {"X-Pad": "p" * 3000}) as answer:
            assert answer.status == 431
        async with http.post(url + "/cron/ok", headers=auth, data=b"[[[[1]]]]") as answer:
            assert (answer.status, await answer.json()) == (400, {"error": "json_too_deep"})
        async with http.post(url + "/cron/ok", headers=auth, data=b"[[[1]]]") as answer:
            assert answer.status == 202


@pytest.mark.parametrize(
    ("body", "content_type", "payload"),
    [
        (b'{"a": 1}', "application/json", {"a": 1}),
        (b'{"a": 1}', "application/x-www-form-urlencoded", {"a": 1}),  # curl -d
        (b"[1, 2]", "", [1, 2]),
        (b"hello there", "text/plain", "hello there"),
        (b"{bad", "text/plain", "{bad"),
        (b"  ", "application/json", None),
    ],
)
async def test_a_body_is_the_runs_payload(
    served: Served, body: bytes, content_type: str, payload: object
) -> None:
    headers = {"Authorization": f"Bearer {ONE}"}
    if content_type:
        headers["Content-Type"] = content_type
    async with served.http.post(f"{served.url}/cron/ok", data=body, headers=headers) as answer:
        assert answer.status == 202, await answer.text()
        run_id = (await answer.json())["run_id"]
    assert (await served.store.get_run(run_id)).payload == payload


@pytest.mark.parametrize(
    ("body", "content_type", "detail"),
    [
        (b"{bad", "application/json", "the body is not valid JSON (Expecting property name"),
        # Refused as every JSON body holding one is, before the route reads it.
        (b'{"a": "\\u0000"}', "application/json", "body.a holds a NUL character"),
        (b"hi\x00", "text/plain", "the payload cannot be stored: the body holds a NUL character"),
        (b"\xff\xfe", "application/octet-stream", "the body is neither JSON nor UTF-8 text"),
        (b"[" * 40 + b"]" * 40, "text/plain", "the body's JSON nests deeper than 32"),
    ],
)
async def test_a_body_that_cannot_be_a_payload_is_a_400_naming_why(
    served: Served, body: bytes, content_type: str, detail: str
) -> None:
    headers = {"Authorization": f"Bearer {ONE}", "Content-Type": content_type}
    async with served.http.post(f"{served.url}/cron/ok", data=body, headers=headers) as answer:
        said = await answer.json()
        assert (answer.status, said["error"]) == (400, "invalid_request")
        assert said["detail"].startswith(detail), said
    assert await served.store.list_runs(RunFilter()) == []
