"""The `report` step on a real heavy worker: a chat model's summary rendered to Markdown and
delivered to an HTTP endpoint, an apprise `json://` channel (with the report attached) and
a file; a destination answering 500 retried without sending the report again to the one
that took it; a 4xx, an unwritable file and a refused address failing the event for good;
the helper used from a `call` step; a bad step refused when added, naming its key."""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cronlink.ai import ChatModel, Models
from cronlink.egress import LOOPBACK, EgressPolicy
from cronlink.errors import ConfigError, StepError
from cronlink.http_client import new_session
from cronlink.records.automations import AutomationEvent, EventState
from cronlink.reports import delivery, render, spec_of
from tests.acceptance.automation_kit import AutoKit, auto, heavy_worker
from tests.acceptance.egress_kit import serving
from tests.acceptance.sandbox_kit import kit
from tests.acceptance.test_ai_step import declaring, settled

__all__ = ["auto", "kit"]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 keeping every request it gets, by path; `fail[path]`
    lists the statuses of its next answers (then 200)."""

    url: str = ""
    got: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail: dict[str, list[int]] = field(default_factory=dict)

    async def take(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.got.setdefault(name, []).append({
            "body": await request.text(), "type": request.headers.get("Content-Type"),
            "key": request.headers.get("Idempotency-Key"), "auth": request.headers.get("X-Auth"),
        })  # fmt: skip
        statuses = self.fail.get(name) or [200]
        status = statuses.pop(0) if self.fail.get(name) else 200
        said = f"nope, not with {request.headers.get('X-Auth')}" if status >= 400 else "ok"
        return web.Response(status=status, text=said)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver()
    async with serving([web.post("/in/{name}", made.take)]) as url:
        made.url = url
        yield made


async def run(auto: AutoKit, steps: list[dict[str, Any]], **options: Any) -> AutomationEvent:
    """One new event of an automation of `steps`, run on a heavy worker until it settles."""
    cid = await auto.kit.connect()
    added = await auto.automations.add(
        name="weekly", connection_id=cid, trigger="new_email", steps=steps, start="beginning"
    )
    await auto.feed(items=[{"subject": "Sales are up 12% this week"}])
    await auto.poll(timedelta(0))
    async with heavy_worker(auto, **options):
        await settled(auto, added.id, 1)
    [event] = await auto.automations.events(added.id)
    return event


def report(*deliver: dict[str, Any], **options: Any) -> dict[str, Any]:
    spec = {"format": "markdown", "title": "Event {{ event.id }}",
            "template": "# {{ title }}\n\n{{ event.subject }}\n", **options}  # fmt: skip
    return {"name": "report", "max_attempts": 3, "backoff": "10ms",
            "report": {**spec, "deliver": list(deliver)}}  # fmt: skip


async def test_an_ai_summary_is_rendered_and_delivered_to_a_webhook_a_channel_and_a_file(
    auto: AutoKit, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_MODEL_KEY", "sandbox-model-key")
    models = Models({"fast": ChatModel(
        name="fast", base_url=f"{auto.kit.sandbox.url}/v1", model="sandbox-model",
        api_key="${SANDBOX_MODEL_KEY}",
    )})  # fmt: skip
    declaring(auto, models)
    summarise = {"name": "summarise", "ai": {"model": "fast", "prompt": "{event.subject}"}}
    template = "# {{ title }}\n\n{{ steps.summarise }}\n\n> {{ event.subject }}\n"
    hook = f"{receiver.url}/in/hook"
    channel = f"json://{receiver.url.removeprefix('http://')}/in/channel"
    event = await run(auto, [summarise, report(
        {"http": {"url": hook}}, {"apprise": channel, "attach": True},
        {"file": str(tmp_path / "reports" / "{{ now.date() }}-{{ event.id }}.md")},
        title="Summary of {{ event.subject[:5] }} on {{ now.date() }}", template=template,
    )], ai=models)  # fmt: skip
    assert event.state is EventState.DONE, event.error
    [written] = (tmp_path / "reports").iterdir()
    body = written.read_text()
    summary = event.outputs["summarise"]
    assert isinstance(summary, str)
    assert summary
    assert body.endswith(f"\n\n{summary}\n\n> Sales are up 12% this week\n")
    title = body.splitlines()[0].removeprefix("# ")
    assert title.startswith("Summary of Sales on 20")
    [posted] = receiver.got["hook"]
    assert posted["body"] == body
    assert posted["type"] == "text/markdown; charset=utf-8"
    assert posted["key"].endswith(":report:deliver[0]")
    [sent] = receiver.got["channel"]
    message = json.loads(sent["body"])
    assert (message["title"], message["message"]) == (title, body.rstrip())  # apprise trims
    [attached] = message["attachments"]
    assert attached["filename"].endswith(".md")
    assert base64.b64decode(attached["base64"]).decode() == body
    assert event.outputs["report"] == {
        "format": "markdown", "title": title, "bytes": len(body.encode()),
        "sha256": hashlib.sha256(body.encode()).hexdigest(), "excerpt": body,
        "delivered": [f"http POST {hook}", f"apprise {channel}", f"file {written}"],
    }  # fmt: skip


async def test_a_destination_answering_500_is_retried_without_sending_twice_to_the_others(
    auto: AutoKit, receiver: Receiver
) -> None:
    receiver.fail["second"] = [500]
    first, second = f"{receiver.url}/in/first", f"{receiver.url}/in/second"
    event = await run(auto, [report({"http": {"url": first}}, {"http": {"url": second}})])
    assert event.state is EventState.DONE, event.error
    assert len(receiver.got["first"]) == 1
    assert len(receiver.got["second"]) == 2
    assert [r["body"] for r in receiver.got["second"]] == [receiver.got["first"][0]["body"]] * 2
    assert event.outputs["report"]["delivered"] == [f"http POST {first}", f"http POST {second}"]


async def test_a_4xx_fails_for_good_at_once_and_keeps_what_was_delivered_for_a_replay(
    auto: AutoKit, receiver: Receiver
) -> None:
    receiver.fail["second"] = [404, 404, 404]
    first = f"{receiver.url}/in/first"
    secret = f"{receiver.url}/in/second?token=s3cret-in-the-query"
    event = await run(auto, [report({"http": {"url": first}}, {"http": {"url": secret}})])
    assert event.state is EventState.DEAD_LETTER
    assert event.error is not None
    assert (
        f"step 0 (report): step report: deliver[1] (http POST {receiver.url}/in/second) "
        "answered HTTP 404: nope, not with "
    ) in event.error
    assert "s3cret" not in event.error
    assert len(receiver.got["second"]) == 1  # not retried
    assert event.outputs["report"] == {"checkpoint": {"delivered": {"0": f"http POST {first}"}}}


async def test_a_file_that_cannot_be_written_fails_the_event_naming_the_path(
    auto: AutoKit, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    target = tmp_path / "blocker" / "{{ event.id }}.md"
    event = await run(auto, [report({"file": str(target)})])
    assert event.state is EventState.DEAD_LETTER
    assert event.error is not None
    assert f"deliver[0] (file {target}): cannot write {tmp_path}/blocker/" in event.error


async def test_destinations_the_egress_policy_refuses_are_not_reached(
    auto: AutoKit, receiver: Receiver
) -> None:
    hook = f"{receiver.url}/in/hook"
    channel = f"json://{receiver.url.removeprefix('http://')}/in/channel"
    event = await run(
        auto, [report({"http": {"url": hook}}, {"apprise": channel})], egress=EgressPolicy()
    )
    assert event.state is EventState.DEAD_LETTER
    assert event.error is not None
    assert event.error.count("a loopback address; set allow_private_networks = true") == 2
    assert receiver.got == {}


async def test_a_handler_renders_and_delivers_with_the_helper(
    auto: AutoKit, receiver: Receiver, tmp_path: Path
) -> None:
    cid = await auto.kit.connect()
    params = {"hook": f"{receiver.url}/in/csv", "folder": str(tmp_path)}
    added = await auto.automations.add(
        name="csv", connection_id=cid, trigger="new_email", start="beginning", params=params,
        steps=[{"name": "csv", "call": "tests.acceptance.report_steps:weekly_csv"}],
    )  # fmt: skip
    await auto.feed(items=[{"subject": 'He said "hi", twice'}])
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):
        await settled(auto, added.id, 1)
    [event] = await auto.automations.events(added.id)
    assert event.state is EventState.DONE, event.error
    written = (tmp_path / "9.csv").read_bytes().decode()  # CRLF kept
    assert written == 'id,subject,note\r\n1,"He said ""hi"", twice",\r\n0,,"a, b"\r\n'
    [posted] = receiver.got["csv"]
    assert (posted["body"], posted["type"]) == (written, "text/csv; charset=utf-8")
    assert event.outputs["csv"] == [f"http POST {params['hook']}", f"file {tmp_path}/9.csv"]


async def test_a_bad_report_in_a_steps_file_is_refused_when_added(auto: AutoKit) -> None:
    steps = tomllib.loads(
        '[[steps]]\nname = "weekly"\n'
        '[steps.report]\nformat = "markdown"\ntemplate = "# {{ title }"\n'
    )["steps"]
    cid = await auto.kit.connect()
    with pytest.raises(ConfigError) as raised:
        await auto.automations.add(name="bad", connection_id=cid, trigger="new_email",
                                   steps=steps)  # fmt: skip
    assert str(raised.value).startswith("steps[0] (weekly).report.template: line 1: unexpected")


async def test_an_error_never_quotes_back_the_variables_a_destination_names(
    receiver: Receiver,
) -> None:
    # In this process: a heavy run's process keeps the environment it was started with.
    receiver.fail["hook"] = [401]
    env = {"HOOK_TOKEN": "hook-token-0123456789"}
    target = {"http": {"url": f"{receiver.url}/in/hook", "headers": {"X-Auth": "${HOOK_TOKEN}"}}}
    spec = spec_of({"format": "json", "data": "{x}", "deliver": [target]})
    made = render(spec, {"x": [1]})
    async with new_session(LOOPBACK) as session:
        with pytest.raises(StepError) as raised:
            await delivery.deliver(made, spec.deliver, session=session, env=env)
    assert receiver.got["hook"][0]["auth"] == "hook-token-0123456789"
    assert str(raised.value).startswith("report: deliver[0] (http POST ")
    assert "answered HTTP 401: nope, not with " in str(raised.value)
    assert "hook-token" not in str(raised.value)
    assert not raised.value.retryable
