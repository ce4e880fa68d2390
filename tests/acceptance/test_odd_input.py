"""Odd input on a real server (uvicorn on 127.0.0.1), on both engines: whatever a caller
puts in a path, a query, a header or a JSON body, the answer is a 4xx, never a 5xx; a
refusal is audited (bad characters escaped, so the line can be written); nothing after it
is lost, and the service keeps answering."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from yarl import URL

from cronlink import control
from cronlink.records.api_tokens import Scope
from cronlink.store import Store
from cronlink.web.server import serving
from tests.acceptance.dashboard_kit import Visitor
from tests.acceptance.handlers import app

CRON = "odd-input-cron-secret-0123456789"


@dataclass
class Served:
    url: str
    http: aiohttp.ClientSession
    store: Store
    token: str

    async def call(
        self, method: str, path: str, auth: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {auth or self.token}", **kwargs.pop("headers", {})}
        url = self.url + path
        async with self.http.request(method, URL(url, encoded=True),
                                     headers=headers, **kwargs) as answer:  # fmt: skip
            text = await answer.text()
            try:
                return answer.status, await answer.json(content_type=None)
            except ValueError:
                return answer.status, text

    async def still_answers(self) -> None:
        """Every list the admin API gives still reads (a bad row would make it a 500)."""
        for path in ("/api/v1/runs", "/api/v1/audit", "/api/v1/jobs"):
            status, body = await self.call("GET", path)
            assert status == 200, (path, body)

    async def audit_targets(self) -> list[tuple[str, str]]:
        return [(e.target, e.outcome) for e in await self.store.audit.find()]


@pytest.fixture
async def served(any_store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setenv("CRON_SECRET", CRON)
    _, token = await control.create_token(any_store, "odd", Scope.ADMIN, None, datetime.now(UTC))
    connector = aiohttp.TCPConnector(force_close=True)  # a 5xx may close the connection
    async with (
        serving(any_store, app, "127.0.0.1", 0) as url,
        aiohttp.ClientSession(connector=connector) as http,
    ):
        yield Served(url, http, any_store, token)


async def test_a_nul_in_a_cron_path_with_a_wrong_secret_is_refused_audited_and_nothing_lost(
    served: Served,
) -> None:
    status, body = await served.call("POST", "/cron/x%00y", auth="wrong")
    assert status == 400
    assert body == {"error": "invalid_request", "detail": "the path holds a NUL character"}
    status, _ = await served.call("POST", "/cron/ok", auth="wrong")
    assert status == 401
    assert await served.audit_targets() == [
        ("ok", "denied"), ("POST /cron/x\\u0000y", "invalid"),
    ]  # fmt: skip
    await served.still_answers()


EVERYWHERE = [
    # path parameters: job, automation, connect's provider; the dashboard
    ("POST", "/cron/x%00y", None),
    ("POST", "/cron/x%ED%A0%80y", None),  # a lone surrogate, UTF-8 encoded
    ("POST", "/cron/x%FFy", None),  # not UTF-8 at all
    ("GET", "/api/v1/jobs/x%00y", None),
    ("POST", "/api/v1/jobs/x%00y/pause", None),
    ("GET", "/api/v1/automations/a%00b", None),
    ("POST", "/api/v1/automations/a%00b/run", None),
    ("GET", "/connect/x%00y", None),
    ("GET", "/connect/sandbox?owner=a%00b", None),
    ("GET", "/dashboard/jobs/x%00y", None),
    # query parameters: owner, actor, job, a name
    ("GET", "/api/v1/connections?owner=a%00b", None),
    ("GET", "/api/v1/audit?actor=a%00b", None),
    ("GET", "/api/v1/runs?job=a%00b", None),
    ("GET", "/api/v1/runs?job=a%ED%B0%80", None),
    ("GET", "/api/v1/runs?a%00=1", None),
    ("GET", "/oauth/callback?state=a%00b", None),
    # JSON strings, keys and numbers
    ("POST", "/api/v1/jobs/ok/trigger", '{"payload": "a\\u0000b"}'),
    ("POST", "/api/v1/jobs/ok/trigger", '{"payload": {"k": "\\ud800"}}'),
    ("POST", "/api/v1/jobs/ok/trigger", '{"payload": {"\\udc00": 1}}'),
    ("POST", "/api/v1/jobs/ok/trigger", '{"payload": [NaN]}'),
    ("POST", "/api/v1/jobs/ok/trigger", '{"payload": 1e400}'),
    ("POST", "/api/v1/jobs/ok/trigger", '{"payload": 99999999999999999999}'),
    ("POST", "/api/v1/jobs/ok/trigger", '{"payload": ' + "9" * 5000 + "}"),
    ("POST", "/api/v1/jobs/ok/trigger", b'{"payload": "\xed\xa0\x80"}'),  # raw, not UTF-8
    ("POST", "/api/v1/connections",
     '{"provider": "sandbox", "owner": "a\\u0000", "access_token": "t"}'),
    ("PUT", "/api/v1/jobs/ok/schedules", '{"schedules": [{"cron": "* * * * *", '
     '"timezone": "UTC\\u0000"}]}'),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), EVERYWHERE)
async def test_unstorable_text_anywhere_is_a_4xx_that_is_audited(
    served: Served, method: str, path: str, body: str | bytes | None
) -> None:
    headers = {} if body is None else {"Content-Type": "application/json"}
    data = body.encode() if isinstance(body, str) else body
    auth = CRON if path.startswith("/cron/") else None
    status, answer = await served.call(method, path, auth=auth, data=data, headers=headers)
    assert 400 <= status < 500, answer
    assert status == 400, answer
    await served.still_answers()
    [target] = [t for t, outcome in await served.audit_targets() if outcome == "invalid"]
    assert target.startswith(f"{method} /")
    assert "\x00" not in target
    assert target.encode("utf-8")  # no lone surrogate: it was written


async def test_a_lone_surrogate_in_a_payload_never_breaks_the_runs_list(served: Served) -> None:
    status, _ = await served.call("POST", "/api/v1/jobs/ok/trigger", data=b'{"payload": "\\ud83d"}',
                                  headers={"Content-Type": "application/json"})  # fmt: skip
    assert status == 400
    status, _ = await served.call("POST", "/api/v1/jobs/ok/trigger",
                                  json={"payload": {"fine": "\U0001f600 \u2028 é"}})  # fmt: skip
    assert status == 202
    status, body = await served.call("GET", "/api/v1/runs")
    assert status == 200
    assert [r["payload"] for r in body["runs"]] == [{"fine": "\U0001f600 \u2028 é"}]


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"])
async def test_a_scheduled_time_that_overflows_in_utc_is_a_400(served: Served, at: str) -> None:
    status, body = await served.call(
        "POST", "/cron/ok", auth=CRON, headers={"X-Cronlink-Scheduled-Time": at}
    )
    assert status == 400
    assert body["detail"] == f"X-Cronlink-Scheduled-Time: {at!r} is out of range once in UTC"
    [(target, outcome)] = await served.audit_targets()
    assert (target, outcome) == ("ok", "invalid")


@pytest.mark.parametrize("zone", ["America", "Europe", "America/Argentina"])
async def test_a_folder_of_zones_is_no_zone(served: Served, zone: str) -> None:
    body = {"schedules": [{"cron": "* * * * *", "timezone": zone}]}
    status, answer = await served.call("PUT", "/api/v1/jobs/ok/schedules", json=body)
    assert status == 422
    assert answer["detail"] == f"schedules[0]: unknown time zone {zone!r}"


async def test_two_identical_schedules_in_one_put_are_a_422(served: Served) -> None:
    same = {"cron": "*/5 * * * *", "timezone": "Europe/Paris"}
    status, answer = await served.call(
        "PUT", "/api/v1/jobs/ok/schedules", json={"schedules": [same, same]}
    )
    assert status == 422
    assert answer["detail"] == "schedules[1]: '*/5 * * * *' in Europe/Paris is listed twice"
    status, job = await served.call("GET", "/api/v1/jobs/ok")
    assert (status, job["overridden"]) == (200, False)


@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/audit"])
@pytest.mark.parametrize("since", ["2026-01-01T00:00:00", "2026-01-01", "2026-01-01T00:00"])
async def test_since_without_a_zone_is_refused_naming_it(
    served: Served, path: str, since: str
) -> None:
    status, answer = await served.call("GET", path, params={"since": since})
    assert status == 422
    assert answer["detail"].startswith("query.since: Value error, ")


async def test_since_far_off_in_either_direction_is_an_answer(served: Served) -> None:
    for since in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"):
        status, _ = await served.call("GET", "/api/v1/runs", params={"since": since})
        assert status in (200, 422)
    status, _ = await served.call(
        "GET", "/api/v1/runs", params={"since": "2026-01-01T00:00:00+05:30"}
    )
    assert status == 200


@pytest.mark.parametrize(
    "path",
    ["/dashboard/runs/9223372036854775808", "/dashboard/runs/0",
     "/api/v1/runs/9223372036854775808", "/api/v1/runs?before_id=9223372036854775808",
     "/dashboard/jobs/ok?before_id=99999999999999999999", "/api/v1/connections/2147483648",
     "/api/v1/automations?after_id=2147483648", "/api/v1/jobs/" + "j" * 201,
     "/cron/" + "j" * 201],
)  # fmt: skip
async def test_every_number_and_name_in_a_path_or_query_is_bounded(
    served: Served, path: str
) -> None:
    if path.startswith("/dashboard/"):
        visitor = Visitor(served.url)
        async with visitor.http:
            await visitor.login(served.token)
            async with visitor.http.get(served.url + path, allow_redirects=False) as answer:
                assert answer.status == 422, await answer.text()
        return
    auth = CRON if path.startswith("/cron/") else None
    status, answer = await served.call("POST" if auth else "GET", path, auth=auth)
    assert status == 422, answer


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/cron/tick", "POST"), ("PUT", "/cron/some-job", "POST"),
     ("POST", "/healthz", "GET"), ("DELETE", "/api/v1/jobs", "GET"),
     ("PATCH", "/api/v1/runs/1", "GET"), ("PUT", "/dashboard/login", "GET, POST")],
)  # fmt: skip
async def test_a_wrong_method_is_a_405_naming_the_methods_the_path_takes(
    served: Served, method: str, path: str, allowed: str
) -> None:
    async with served.http.request(method, served.url + path) as answer:
        assert answer.status == 405
        assert answer.headers.get("Allow") == allowed
