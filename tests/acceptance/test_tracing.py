"""Traces of runs, exported over OTLP/HTTP to a real receiver on 127.0.0.1 that decodes
what it is sent: attempts, their outbound calls, a caller's trace continued, a heavy run's
process in the same trace; nothing at all when tracing is not configured."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from cronlink.ai import ChatModel, Models
from cronlink.config import Settings
from cronlink.jobs import HttpTarget, build_job, new_run
from cronlink.observe import tracing
from cronlink.records.automations import EventState
from cronlink.records.runs import Reason, Run, RunState, Tier
from cronlink.runtime import run_roles
from cronlink.store import Store
from cronlink.web.server import serving
from tests.acceptance.automation_kit import BUILTIN, AutoKit, auto, heavy_worker
from tests.acceptance.handlers import app
from tests.acceptance.sandbox_kit import Kit, kit
from tests.acceptance.worker_kit import enqueue, finished, running_worker, wait_until

__all__ = ["auto", "kit"]

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SECRET = "s3cret-tracing-7f1c2e"


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    service: str
    failed: bool


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver: `POST /v1/traces`, protobuf decoded into `spans`."""

    spans: list[Span] = field(default_factory=list)
    requests: int = 0
    sent: str = ""
    """Everything received, as text: what no span may hold is looked for here."""

    async def accept(self, request: web.Request) -> web.Response:
        self.requests += 1
        sent = ExportTraceServiceRequest.FromString(await request.read())
        self.sent += str(sent)
        for resource in sent.resource_spans:
            attributes = {a.key: _value(a.value) for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                self.spans.extend(
                    Span(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        failed=s.status.code == s.status.STATUS_CODE_ERROR,
                        service=str(attributes.get("service.name")),
                    )
                    for s in scope.spans
                )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value") or "string_value")


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Receiver, str]]:
    received = Receiver()
    server = web.Application()
    server.router.add_post("/v1/traces", received.accept)
    server.router.add_route("*", "/target", _target)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    try:
        yield received, f"http://127.0.0.1:{port}"
    finally:
        await asyncio.to_thread(tracing.stop)
        await runner.cleanup()


async def _target(request: web.Request) -> web.Response:
    return web.Response(text=request.headers.get("traceparent", "none"))


async def traced(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "cronlink-test")
    assert tracing.start()


async def exported() -> None:
    """Flush what the batch holds (off the loop: the receiver is served by it)."""
    await asyncio.to_thread(tracing.stop)


async def light_and_heavy(
    store: Store, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch, *jobs: str
) -> tuple[Receiver, Run, Run]:
    """A traced run of each job (light, heavy) on a worker of its tier, once both have
    finished and their spans were exported."""
    received, base = receiver
    await traced(monkeypatch, base)
    light, heavy = [await enqueue(store, job) for job in jobs]
    async with running_worker(store, Tier.LIGHT), running_worker(store, Tier.HEAVY):
        runs = await finished(store, light), await finished(store, heavy)
    await exported()
    return received, *runs


async def test_a_light_and_a_heavy_run_each_have_an_attempt_span(
    sqlite_store: Store, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, *runs = await light_and_heavy(sqlite_store, receiver, monkeypatch, "ok", "heavy-ok")
    assert [run.state for run in runs] == [RunState.SUCCEEDED] * 2
    light, heavy = (run.id for run in runs)
    attempts = {s.attributes["cronlink.run_id"]: s for s in received.named("cronlink.attempt")}
    assert attempts[light].attributes == {
        "cronlink.job": "ok", "cronlink.run_id": light, "cronlink.tier": "light",
        "cronlink.reason": "api", "cronlink.attempt": 1, "cronlink.outcome": "succeeded",
    }  # fmt: skip
    assert attempts[heavy].attributes["cronlink.tier"] == "heavy"
    assert attempts[heavy].service == "cronlink-test"
    # The heavy run's process exported its own span, under the worker's attempt span.
    [handler] = received.named("cronlink.handler")
    assert handler.trace_id == attempts[heavy].trace_id
    assert handler.parent_id == attempts[heavy].span_id
    assert handler.service == "cronlink-test"
    # The run's completion is a span of the attempt too.
    completions = [s for s in received.named("cronlink.complete") if s.trace_id == handler.trace_id]
    assert [c.parent_id for c in completions] == [attempts[heavy].span_id]


async def test_a_failed_attempt_s_span_names_the_error_but_not_its_message(
    sqlite_store: Store, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, *runs = await light_and_heavy(
        sqlite_store, receiver, monkeypatch, "boom", "heavy-boom"
    )  # fmt: skip
    assert [run.state for run in runs] == [RunState.DEAD, RunState.FAILED]
    light = runs[0].id
    outcomes = [
        (s.attributes["cronlink.attempt"], s.attributes["cronlink.outcome"], s.failed)
        for s in received.named("cronlink.attempt") if s.attributes["cronlink.run_id"] == light
    ]  # fmt: skip
    assert sorted(outcomes) == [(1, "queued", True), (2, "queued", True), (3, "dead", True)]
    [handler] = received.named("cronlink.handler")
    assert (handler.attributes["error.type"], handler.failed) == ("RuntimeError", True)
    assert "boom on attempt" not in received.sent
    assert "child failed" not in received.sent


async def test_an_http_target_gets_the_traceparent_of_its_client_span(
    sqlite_store: Store, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, base = receiver
    await traced(monkeypatch, base)
    job = build_job(name="call", schedules=[], target=HttpTarget(url=f"{base}/target?t={SECRET}"))
    run_id = await sqlite_store.enqueue(
        new_run(job, Reason.SCHEDULE, scheduled_for=datetime(2025, 1, 1, tzinfo=UTC)),
        datetime.now(UTC),
    )
    async with running_worker(sqlite_store, Tier.LIGHT, {job.name: job}):
        run = await finished(sqlite_store, run_id)
    await exported()
    assert run.result is not None
    sent = run.result.removeprefix("200 ")  # the target answers with the header it got
    [attempt] = received.named("cronlink.attempt")
    assert attempt.attributes["cronlink.scheduled_for"] == "2025-01-01T00:00:00+00:00"
    [client] = [s for s in received.spans if s.name == "POST 127.0.0.1"]
    assert client.parent_id == attempt.span_id
    assert sent.startswith(f"00-{attempt.trace_id}-{client.span_id}-")
    assert client.attributes["http.response.status_code"] == 200
    assert SECRET not in repr(received.spans)  # no URL path or query in a span


async def test_a_caller_s_traceparent_continues_into_the_run(
    sqlite_store: Store, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, base = receiver
    monkeypatch.setenv("CRON_SECRET", SECRET)
    async with (
        serving(sqlite_store, app, "127.0.0.1", 0) as url,
        aiohttp.ClientSession() as http,
    ):
        for parent in (f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "00-nonsense"):
            headers = {"Authorization": f"Bearer {SECRET}", "traceparent": parent}
            async with http.post(f"{url}/cron/ok", headers=headers) as answer:
                assert answer.status == 202
    await traced(monkeypatch, base)
    async with running_worker(sqlite_store, Tier.LIGHT):
        await finished(sqlite_store, 1)
        await finished(sqlite_store, 2)
    await exported()
    attempts = {s.attributes["cronlink.run_id"]: s for s in received.named("cronlink.attempt")}
    assert (attempts[1].trace_id, attempts[1].parent_id) == (CALLER_TRACE, CALLER_SPAN)
    # A malformed header is ignored: the run's trace starts with it.
    assert attempts[2].trace_id != CALLER_TRACE
    assert attempts[2].parent_id == ""


async def test_a_role_traces_from_its_start_and_exports_all_as_it_stops(
    sqlite_store: Store, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, base = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only the stop exports
    parent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    run_id = await sqlite_store.enqueue(
        new_run(app.get("ok"), Reason.API, traceparent=parent), datetime.now(UTC)
    )
    stop = asyncio.Event()
    settings = Settings(database_url=sqlite_store.url)
    role = asyncio.create_task(run_roles(settings, app, scheduler=False, tiers=(Tier.LIGHT,),
                                         stop=stop))  # fmt: skip
    await finished(sqlite_store, run_id)
    assert received.requests == 0
    stop.set()
    await role
    assert not tracing.enabled()
    [attempt] = received.named("cronlink.attempt")
    assert (attempt.trace_id, attempt.parent_id) == (CALLER_TRACE, CALLER_SPAN)
    assert attempt.service == "cronlink"


async def test_a_chat_model_call_is_a_span_with_its_tokens(
    kit: Kit, sqlite_store: Store, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, base = receiver
    await traced(monkeypatch, base)
    monkeypatch.setenv("SANDBOX_MODEL_KEY", "sandbox-model-key")
    fast = ChatModel(
        name="fast", base_url=f"{kit.sandbox.url}/v1", model="sandbox-model",
        api_key="${SANDBOX_MODEL_KEY}",
    )  # fmt: skip
    async with running_worker(sqlite_store, Tier.LIGHT, ai=Models({"fast": fast})):
        run_id = await enqueue(sqlite_store, "ask-model", "I love this product")
        assert (await finished(sqlite_store, run_id)).state is RunState.SUCCEEDED
    await exported()
    [attempt] = received.named("cronlink.attempt")
    [chat] = received.named("cronlink.chat")
    assert chat.parent_id == attempt.span_id
    assert chat.attributes["gen_ai.request.model"] == "sandbox-model"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    [request] = [s for s in received.spans if s.parent_id == chat.span_id]
    assert request.attributes["http.request.method"] == "POST"


async def test_nothing_is_exported_when_tracing_is_not_configured(
    sqlite_store: Store, receiver: tuple[Receiver, str]
) -> None:
    received, _ = receiver
    assert not tracing.start()
    run_id = await enqueue(sqlite_store, "ok")
    async with running_worker(sqlite_store, Tier.LIGHT):
        assert (await finished(sqlite_store, run_id)).state is RunState.SUCCEEDED
    await exported()
    assert received.requests == 0
    assert tracing.traceparent() is None


def test_off_a_process_does_not_import_opentelemetry() -> None:
    """What a worker and a heavy run's process load, with tracing asked for nowhere."""
    script = (
        "import sys, cronlink.cli, cronlink.engine.worker, cronlink.engine.child\n"
        "from cronlink.observe import tracing\n"
        "from cronlink.http_client import new_session\n"
        "assert not tracing.start()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    ran = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert ran.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        (f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", True),
        (f" 00-{CALLER_TRACE}-{CALLER_SPAN}-00 ", True),
        (f"00-{'0' * 32}-{CALLER_SPAN}-01", False),
        (f"00-{CALLER_TRACE}-{'0' * 16}-01", False),
        (f"00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01", False),
        (f"01-{CALLER_TRACE}-{CALLER_SPAN}-01-extra", False),
        (None, False),
    ],
)
def test_only_a_well_formed_traceparent_is_kept(header: str | None, kept: bool) -> None:
    assert (tracing.accepted(header) is not None) is kept


async def test_a_poll_an_automation_s_step_and_a_token_refresh_have_spans(
    auto: AutoKit, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, base = receiver
    await traced(monkeypatch, base)
    cid = await auto.kit.connect()
    added = await auto.automations.add(
        name="inbox", connection_id=cid, trigger="new_item", start="beginning",
        steps=[{"name": "notify", "http": {"url": "/api/hooks/summaries", "json": {"x": 1}}}],
    )  # fmt: skip
    await auto.feed(items=[{"subject": "hello"}])
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):
        await wait_until(lambda: _done(auto, added.id), within=30)
    store, refresh = auto.automations.store, BUILTIN["refresh-connection"]
    payload = {"connection_id": cid, "force": True}
    run_id = await store.enqueue(new_run(refresh, Reason.API, payload=payload), datetime.now(UTC))
    async with running_worker(store, refresh.tier, BUILTIN, connections=auto.kit.connections):
        assert (await finished(store, run_id)).state is RunState.SUCCEEDED
    await exported()
    [poll] = received.named("cronlink.poll")
    assert poll.attributes == {"cronlink.automation": "inbox", "cronlink.provider": "sandbox"}
    [step] = received.named("cronlink.step")
    assert step.attributes["cronlink.step_kind"] == "http"
    [attempt] = [s for s in received.named("cronlink.attempt") if s.trace_id == step.trace_id]
    assert attempt.attributes["cronlink.job"] == "process-automation"
    [sent] = [s for s in received.named("cronlink.provider_request") if s.parent_id == step.span_id]
    assert sent.attributes["http.response.status_code"] == 200
    assert [s.name for s in received.spans if s.parent_id == sent.span_id] == ["POST 127.0.0.1"]
    [refreshed] = received.named("cronlink.token_refresh")
    assert refreshed.attributes == {"cronlink.connection_id": cid}
    [parent] = [s for s in received.spans if s.span_id == refreshed.parent_id]
    assert parent.attributes["cronlink.run_id"] == run_id


async def _done(auto: AutoKit, automation_id: int) -> bool:
    events = await auto.automations.events(automation_id)
    return bool(events) and all(e.state is EventState.DONE for e in events)
