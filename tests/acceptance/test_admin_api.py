"""`/api/v1` on a real server (uvicorn on 127.0.0.1): API tokens with scopes, the same
refusal whatever was wrong with a credential, jobs and runs, every change audited."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cronlink import control
from cronlink.engine.scheduler import Scheduler, schedule_rows
from cronlink.jobs import with_overrides
from cronlink.records.api_tokens import Scope
from cronlink.records.runs import RunState
from cronlink.store import RunFilter, Store
from cronlink.web.server import serving
from tests.acceptance.handlers import app

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Api:
    url: str
    http: aiohttp.ClientSession
    store: Store
    tokens: dict[str, str]

    async def call(
        self, method: str, path: str, scope: str | None = "admin", **kwargs: Any
    ) -> tuple[int, Any]:
        headers = kwargs.pop("headers", {})
        if scope is not None:
            headers["Authorization"] = f"Bearer {self.tokens[scope]}"
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as got:
            return got.status, await got.json()


@pytest.fixture
async def api(any_store: Store) -> AsyncIterator[Api]:
    now = datetime.now(UTC)
    made = {}
    for scope in Scope:
        _, made[scope.label] = await control.create_token(any_store, scope.label, scope, None, now)
    async with serving(any_store, app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
        yield Api(url, http, any_store, made)


async def test_tokens_are_stored_hashed_and_never_listed(api: Api) -> None:
    listed = await api.store.tokens.list()
    assert [t.scope for t in listed] == list(Scope)
    rows = await api.store.transact(
        lambda c: c.exec_driver_sql("SELECT * FROM api_tokens").all(), write=False
    )
    stored = repr(rows)
    for secret in api.tokens.values():
        assert secret.startswith("clk_")
        assert len(secret) >= 40
        assert secret not in stored


@pytest.mark.parametrize(
    "auth",
    [None, "", "Bearer", "Bearer clk_", "Bearer clk_unknown-token-value", "Basic x",
     "Bearer \u00e9\u00e9", "EXPIRED", "REVOKED"],
)  # fmt: skip
async def test_every_bad_credential_gets_the_same_401(api: Api, auth: str | None) -> None:
    if auth == "EXPIRED":
        past = datetime.now(UTC) - timedelta(days=2)
        _, secret = await control.create_token(
            api.store, "old", Scope.ADMIN, timedelta(days=1), past
        )
        auth = f"Bearer {secret}"
    elif auth == "REVOKED":
        token, secret = await control.create_token(
            api.store, "gone", Scope.ADMIN, None, datetime.now(UTC)
        )
        works = {"Authorization": f"Bearer {secret}"}
        assert (await api.call("GET", "/api/v1/jobs", None, headers=works))[0] == 200
        await api.store.tokens.revoke(token.id, datetime.now(UTC))
        auth = f"Bearer {secret}"
    headers = {} if auth is None else {"Authorization": auth.encode().decode("latin-1")}
    async with api.http.get(api.url + "/api/v1/jobs", headers=headers) as answer:
        assert answer.status == 401
        assert await answer.json() == {"error": "unauthorized"}
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="cronlink"'
    [entry, *_] = await api.store.audit.find()
    assert (entry.actor, entry.outcome, entry.target) == ("anonymous", "denied", "GET /api/v1/jobs")


async def test_the_cron_secret_is_not_an_api_token(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, body = await api.call(
        "GET", "/api/v1/jobs", None, headers={"Authorization": "Bearer " + "x" * 30}
    )
    assert (status, body) == (401, {"error": "unauthorized"})


@pytest.mark.parametrize(
    ("method", "path", "least"),
    [
        ("GET", "/api/v1/jobs", "read"),
        ("GET", "/api/v1/runs", "read"),
        ("POST", "/api/v1/jobs/ok/pause", "operate"),
        ("POST", "/api/v1/jobs/ok/trigger", "operate"),
        ("GET", "/api/v1/audit", "admin"),
    ],
)
async def test_each_call_is_checked_against_the_scope(
    api: Api, method: str, path: str, least: str
) -> None:
    for scope in Scope:
        status, body = await api.call(method, path, scope.label)
        if scope >= Scope.named(least):
            assert status in (200, 202), (scope, body)
        else:
            assert (status, body) == (403, {"error": "forbidden"})
    forbidden = [e for e in await api.store.audit.find() if e.outcome == "forbidden"]
    assert len(forbidden) == Scope.named(least) - 1
    assert all(e.actor.startswith("token:") for e in forbidden)


async def test_jobs_pause_resume_and_unknown_names(api: Api) -> None:
    status, jobs = await api.call("GET", "/api/v1/jobs", "read")
    assert status == 200
    assert {"ok", "boom"} <= {j["name"] for j in jobs}
    status, job = await api.call("POST", "/api/v1/jobs/ok/pause", "operate")
    assert (status, job["name"], job["paused"]) == (200, "ok", True)
    assert "ok" in await api.store.paused_jobs()
    status, job = await api.call("POST", "/api/v1/jobs/ok/resume", "operate")
    assert (status, job["paused"]) == (200, False)
    status, body = await api.call("GET", "/api/v1/jobs/ko", "read")
    assert status == 404
    assert "ok" in body["suggestions"]
    actions = [(e.action, e.target, e.actor) for e in await api.store.audit.find()]
    token = (await api.store.tokens.list())[1]
    assert ("jobs.pause", "ok", token.actor) in actions
    assert ("jobs.resume", "ok", token.actor) in actions


async def test_trigger_runs_and_pages_and_cancel(api: Api) -> None:
    ids = []
    for n in range(5):
        status, queued = await api.call(
            "POST", "/api/v1/jobs/ok/trigger", "operate", json={"payload": {"n": n}}
        )
        assert status == 202
        ids.append(queued["run_id"])
    again = await api.call("POST", "/api/v1/jobs/ok/trigger", "operate",
                           headers={"Idempotency-Key": "k1"})  # fmt: skip
    same = await api.call("POST", "/api/v1/jobs/ok/trigger", "operate",
                          headers={"Idempotency-Key": "k1"})  # fmt: skip
    assert again[1]["run_id"] == same[1]["run_id"]
    assert (again[1]["deduplicated"], same[1]["deduplicated"]) == (False, True)

    status, page = await api.call("GET", "/api/v1/runs?job=ok&limit=3", "read")
    assert status == 200
    assert len(page["runs"]) == 3
    status, rest = await api.call(
        "GET", f"/api/v1/runs?job=ok&limit=3&before_id={page['next_before_id']}", "read"
    )
    seen = [r["id"] for r in page["runs"] + rest["runs"]]
    assert seen == sorted(seen, reverse=True)
    assert set(ids) <= set(seen)
    assert rest["next_before_id"] is None
    assert all("lease_token" not in r for r in page["runs"])

    status, run = await api.call("GET", f"/api/v1/runs/{ids[0]}", "read")
    assert (status, run["payload"], run["state"], run["logs"]) == (200, {"n": 0}, "queued", [])
    status, run = await api.call("POST", f"/api/v1/runs/{ids[0]}/cancel", "operate")
    assert (status, run["state"]) == (200, "cancelled")
    assert (await api.store.get_run(ids[0])).state is RunState.CANCELLED
    status, body = await api.call("GET", "/api/v1/runs/999999", "read")
    assert (status, body["error"]) == (404, "not_found")


async def test_bad_input_names_the_field_not_the_value(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/runs?limit=0&state=sideways", "read")
    assert status == 422
    assert "limit" in body["detail"]
    assert "state" in body["detail"]
    assert "sideways" not in body["detail"]


def test_tokens_cli_creates_lists_and_revokes(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cronlink", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    made = cli("tokens", "create", "--name", "ci", "--scope", "operate", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("clk_")
    assert "shown only this once" in made.stderr
    listed = cli("tokens", "list", "--json")
    assert secret not in listed.stdout
    assert '"scope": "operate"' in listed.stdout
    assert cli("tokens", "revoke", "1").stdout == "token 1 (ci) revoked\n"
    assert '"revoked_at": null' not in cli("tokens", "list", "--json").stdout
    bad = cli("tokens", "create", "--name", "x", "--scope", "god")
    assert bad.returncode == 2
    assert "god" in bad.stderr
    bad = cli("tokens", "create", "--name", "x", "--scope", "read", "--expires", "soon")
    assert bad.returncode == 2
    assert "--expires" in bad.stderr
    gone = cli("tokens", "revoke", "7")
    assert gone.returncode == 1
    assert "no API token has id 7" in gone.stderr


async def test_audit_pages_and_usage(api: Api) -> None:
    for _ in range(3):
        await api.call("POST", "/api/v1/jobs/ok/pause", "operate")
    status, page = await api.call("GET", "/api/v1/audit?action=jobs.pause&limit=2")
    assert status == 200
    assert [e["action"] for e in page["entries"]] == ["jobs.pause"] * 2
    status, rest = await api.call(
        "GET", f"/api/v1/audit?action=jobs.pause&limit=2&before_id={page['next_before_id']}"
    )
    assert len(rest["entries"]) == 1
    assert rest["next_before_id"] is None
    for secret in api.tokens.values():
        assert secret not in repr(page) + repr(rest)

    for payload in (1, 2):
        await api.call("POST", "/api/v1/jobs/ok/trigger", "operate", json={"payload": payload})
    [first, *_] = await api.store.list_runs(RunFilter(job="ok"))
    await api.store.request_cancel(first.id, datetime.now(UTC))
    status, report = await api.call("GET", "/api/v1/usage?hours=1", "read")
    assert status == 200
    [ok] = [u for u in report["jobs"] if u["job"] == "ok"]
    assert (ok["tier"], ok["runs"], ok["by_state"]) == ("light", 2, {"queued": 1, "cancelled": 1})


async def test_deep_json_and_huge_headers_are_refused_before_parsing(api: Api) -> None:
    auth = {"Authorization": f"Bearer {api.tokens['operate']}", "Content-Type": "application/json"}
    trigger = api.url + "/api/v1/jobs/ok/trigger"
    deep = b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with api.http.post(trigger, data=deep, headers=auth) as answer:
        assert (answer.status, await answer.json()) == (400, {"error": "json_too_deep"})
    fine = {"payload": {"text": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "list": [[[1]]]}}
    async with api.http.post(
        trigger, json=fine, headers={"Authorization": auth["Authorization"]}
    ) as answer:
        assert answer.status == 202
        run = await api.store.get_run((await answer.json())["run_id"])
        assert run.payload == fine["payload"]
    async with api.http.get(api.url + "/healthz", headers={"X-Big": "x" * 20_000}) as answer:
        assert (answer.status, await answer.json()) == (431, {"error": "request_headers_too_large"})
    many = {f"X-H{n}": "1" for n in range(150)}
    async with api.http.get(api.url + "/healthz", headers=many) as answer:
        assert answer.status == 431
    async with api.http.get(api.url + "/healthz") as answer:
        assert answer.status == 200


@pytest.mark.timeout(30)  # it took 106 s, and every listing of jobs 43 s after it
async def test_a_schedule_that_never_fires_is_refused_at_once(api: Api) -> None:
    # Its only matches are 02:xx on the second Sunday of March: the hour New York skips.
    never = [("* * 2 * 3 0#2", "America/New_York")]
    body = {"schedules": [{"cron": cron, "timezone": zone} for cron, zone in never]}
    status, answer = await api.call("PUT", "/api/v1/jobs/ok/schedules", json=body)
    assert status == 422
    assert answer["detail"].startswith("schedules[0]: never fires in America/New_York: ")
    assert "skips when its clocks go forward" in answer["detail"]
    status, job = await api.call("GET", "/api/v1/jobs/ok", "read")
    assert (status, job["overridden"]) == (200, False)

    # One stored before such schedules were refused lists at once, with no next fire.
    now = datetime.now(UTC)
    changed = with_overrides(app.jobs, {"ok": never})["ok"]
    await api.store.overrides.replace("ok", never, schedule_rows(changed, now), now)
    status, jobs = await api.call("GET", "/api/v1/jobs", "read")
    assert status == 200
    listed = next(j for j in jobs if j["name"] == "ok")
    assert (listed["overridden"], listed["next_fire"]) == (True, None)


async def test_an_admin_changes_a_jobs_schedules_for_every_scheduler(api: Api) -> None:
    scheduler = Scheduler(api.store, app.jobs)  # started before the change, as in a fleet
    await scheduler.sync(datetime.now(UTC))
    body = {
        "schedules": [{"cron": "* * * * * *"}, {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}]
    }
    status, _ = await api.call("PUT", "/api/v1/jobs/ok/schedules", "operate", json=body)
    assert status == 403
    status, job = await api.call("PUT", "/api/v1/jobs/ok/schedules", json=body)
    assert status == 200
    assert job["overridden"] is True
    assert [(s["cron"], s["timezone"]) for s in job["schedules"]] == [
        ("* * * * * *", "UTC"), ("0 9 * * 1-5", "Europe/Paris"),
    ]  # fmt: skip
    report = await scheduler.tick(datetime.now(UTC) + timedelta(seconds=3))
    assert report.started >= 1  # the instants it calls past are recorded as missed
    assert report.started + report.missed >= 3
    fired = await api.store.list_runs(RunFilter(job="ok"))
    assert {r.reason.value for r in fired} == {"schedule"}

    status, body_ = await api.call(
        "PUT", "/api/v1/jobs/ok/schedules", json={"schedules": [{"cron": "61 * * * *"}]}
    )
    assert status == 422
    assert body_["detail"].startswith("schedules[0]:")
    status, body_ = await api.call(
        "PUT", "/api/v1/jobs/ok/schedules",
        json={"schedules": [{"cron": "* * * * *", "timezone": "Mars/Olympus"}]},
    )  # fmt: skip
    assert (status, "Mars/Olympus" in body_["detail"]) == (422, True)
    status, job = await api.call("GET", "/api/v1/jobs/ok", "read")
    assert len(job["schedules"]) == 2  # a refused change changed nothing

    status, job = await api.call("DELETE", "/api/v1/jobs/ok/schedules")
    assert (status, job["overridden"], job["schedules"]) == (200, False, [])
    before = len(await api.store.list_runs(RunFilter(job="ok", limit=1000)))
    await scheduler.tick(datetime.now(UTC) + timedelta(seconds=10))
    assert len(await api.store.list_runs(RunFilter(job="ok", limit=1000))) == before
    changes = [e.detail for e in await api.store.audit.find(action="jobs.schedules")]
    assert changes[0] == "back to the configured schedules"
    assert "* * * * * * (UTC)" in changes[-1]
