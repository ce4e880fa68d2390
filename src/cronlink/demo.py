"""`cronlink demo`: the sandbox provider, `cronlink run`, and a handful of connections with
short-lived tokens, so that refreshes and health checks show up within a minute; an
automation whose `ai` step has the sandbox's chat model classify and summarise each new
email the sandbox sends, then posts the answer to a webhook; a daily report (run once
shortly after the start too) whose `ai` step summarises the day's emails and whose
`report` step delivers it as Markdown to another webhook; what the model cost; and a
nightly sync, run once at the start, that copies 10,000 records to the sandbox's CRM
through a second connection of the same owner.

It keeps to its own database (`cronlink-demo.db`) and, when CRONLINK_SECRET_KEY is not set,
its own key (`.cronlink-demo.key`, readable by you only). The model's key is read from
SANDBOX_MODEL_KEY, set to the sandbox's own when absent (the sandbox takes whichever it
is). The sandbox keeps its grants in memory, so each start replaces the previous demo
connections with fresh ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cronlink.app import App
from cronlink.automations.jobs import POLL_TRIGGERS
from cronlink.builtin_jobs import connection_jobs
from cronlink.config import Settings
from cronlink.config_models import AiModel, AutomationsModel, ChatModelModel, ConnectionsModel
from cronlink.connections.crypto import ENV, generate_key
from cronlink.connections.jobs import CHECK_HEALTH
from cronlink.egress import LOOPBACK
from cronlink.errors import AutomationNotFoundError
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records.ai_calls import month_of
from cronlink.records.automations import AutomationEvent, EventState
from cronlink.records.runs import Reason, Tier
from cronlink.runtime import open_store, run_roles
from cronlink.sandbox import Sandbox
from cronlink.scrubbing import without_password
from cronlink.services import open_automations, open_connections

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.automations.service import Automations
    from cronlink.connections.service import Connections
    from cronlink.store import Store

DATABASE = "sqlite:///cronlink-demo.db"
KEY_FILE = Path(".cronlink-demo.key")
OWNERS = ("demo-ana", "demo-ben", "demo-chen", "demo-dana", "demo-eli")
REVOKED = "demo-eli"
"""Its grant is revoked at the provider: it shows what `needs_reauth` looks like."""
EMAIL_EVERY = 5.0
SYNC_RECORDS = 10_000
MODEL, MODEL_KEY = "sandbox", "SANDBOX_MODEL_KEY"
"""The chat model the demo declares (`[ai.models.sandbox]`) and the variable of its key."""
LABELS = ("urgent", "invoice", "meeting", "newsletter", "other")
REPORT_SCHEDULE = "0 18 * * *"
REPORT_AFTER = 20.0
"""Seconds from the start to the daily report's first run: a few emails are in by then."""
WELCOME = {
    "from": "demo@cronlink.invalid",
    "subject": "Welcome to the demo",
    "body": "A new email arrives every few seconds. Each gets a label and a line.",
}
EMAILS = (
    {"from": "alerts@example.com", "subject": "Outage: eu-west is down",
     "body": "The API in eu-west has answered 503 since 09:12. Please look at it right away."},
    {"from": "billing@example.com", "subject": "Invoice 1042",
     "body": "The amount due is $1,240.00, payable by the end of the month. Thank you."},
    {"from": "ben@example.com", "subject": "Lunch on Friday?",
     "body": "Shall we move Friday's call to lunch? I can send an invite for 12:30."},
    {"from": "news@example.com", "subject": "This week at cronlink",
     "body": "Our weekly digest: five links worth reading. Unsubscribe at any time."},
)  # fmt: skip
INBOX_STEPS: list[dict[str, Any]] = [
    {"name": "classify", "max_attempts": 3, "ai": {
        "model": MODEL, "max_tokens": 200,
        "system": f"Classify the email and say what it is about in one line. "
                  f"Labels: {', '.join(LABELS)}",
        "prompt": "Subject: {event.subject}\nFrom: {event.from}\n\n{event.body}",
        "schema": {"type": "object", "properties": {
            "label": {"type": "string", "enum": list(LABELS)},
            "summary": {"type": "string", "description": "the email in one line"},
        }, "required": ["label", "summary"], "additionalProperties": False},
    }},
    {"name": "notify", "http": {"url": "/api/hooks/summaries", "json": {
        "email": "{event.id}", "received": "{event.created_at}", "subject": "{event.subject}",
        "label": "{steps.classify.label}", "summary": "{steps.classify.summary}"}}},
]  # fmt: skip
REPORT = """\
# {{ title }}

{{ steps.summarise }}

{% for email in steps.collect.emails -%}
- **{{ email.label }}** {{ email.subject }} ({{ email.received[11:16] }} UTC): {{ email.summary }}
{% else -%}
No email was classified today.
{% endfor %}"""
CRM = "crm"
"""The name of the CRM connection the nightly sync writes through."""
SYNC_STEPS: list[dict[str, Any]] = [
    {"name": "copy", "sync": {
        "source": {"path": "/api/records"},
        "destination": {"path": "/crm/api/contacts/batch", "connection": CRM, "batch_size": 100,
                        "rejected": "errors"},
        "transform": "cronlink.examples:as_contact",
    }},
]  # fmt: skip


def demo_settings(database_url: str | None = None) -> Settings:
    """The demo's own settings: connections on, health checked every minute, its own
    database, outbound requests to loopback (its sandbox on 127.0.0.1); nothing from
    cronlink.toml or the environment (no real jobs, no real data)."""
    return Settings(
        database_url=database_url or DATABASE,
        egress=LOOPBACK,
        connections=ConnectionsModel(health_schedule="* * * * *"),
        automations=AutomationsModel(process_schedule="* * * * *"),
    )


def report_steps(hooks: str) -> list[dict[str, Any]]:
    """The daily report's steps: today's emails as the `summaries` webhook at `hooks` got
    them, a chat model's summary of them, and the report posted to the `reports` one."""
    return [
        {"name": "collect", "call": "cronlink.examples:inbox_digest"},
        {"name": "summarise", "ai": {
            "model": MODEL, "max_tokens": 200, "prompt": "{steps.collect.text}",
            "system": "Summarise today's emails for the team in a sentence: what needs "
                      "attention first.",
        }},
        {"name": "report", "max_attempts": 3, "report": {
            "format": "markdown", "title": "Inbox, {{ now.date() }}", "template": REPORT,
            "deliver": [{"http": {"url": f"{hooks}/reports"}}],
        }},
    ]  # fmt: skip


def with_model(settings: Settings, sandbox_url: str) -> Settings:
    """`settings` with the sandbox's chat model declared as `sandbox`, priced as a small
    hosted model is (USD per million tokens) so that what the demo spends shows."""
    model = ChatModelModel(
        base_url=f"{sandbox_url}/v1", model="sandbox-model", api_key=f"${{{MODEL_KEY}}}",
        input_price=0.15, output_price=0.60,
    )  # fmt: skip
    return dataclasses.replace(settings, ai=AiModel(models={**settings.ai.models, MODEL: model}))


def demo_key() -> None:
    """Use CRONLINK_SECRET_KEY, or the demo's own key file (made on first use)."""
    if os.environ.get(ENV):
        return
    if not KEY_FILE.exists():
        KEY_FILE.touch(mode=0o600)
        KEY_FILE.write_text(generate_key())
    os.environ[ENV] = KEY_FILE.read_text().strip()


async def demo(
    settings: Settings,
    *,
    port: int,
    lifetime: float,
    say: Callable[[str], None],
    stop: asyncio.Event | None = None,
) -> None:
    async with Sandbox(port=port) as sandbox:
        os.environ["CRONLINK_SANDBOX_URL"] = sandbox.url
        # The model's key stays in the environment: settings name it, output never shows it.
        os.environ[MODEL_KEY] = os.environ.get(MODEL_KEY) or sandbox.switches.model_api_key
        sandbox.configure(token_lifetime=lifetime, model_api_key=os.environ[MODEL_KEY])
        settings = with_model(settings, sandbox.url)
        app = App()
        for job in connection_jobs(
            settings.connections or ConnectionsModel(), settings.automations
        ):
            app.add(job)
        store = await open_store(settings)
        session = new_session(settings.egress)
        try:
            connections = await open_connections(settings, store, session, app)
            ids = await _seed(connections, sandbox, lifetime)
            automations = open_automations(settings, connections, app)
            report = await _seed_automations(automations, sandbox, ids)
            for starter in (CHECK_HEALTH, POLL_TRIGGERS):
                await store.enqueue(new_run(app.get(starter), Reason.MANUAL), datetime.now(UTC))
            say(
                f"demo: sandbox provider at {sandbox.url}, {len(OWNERS)} connections whose "
                f"tokens last {lifetime:g}s, a new email every {EMAIL_EVERY:g}s classified by "
                f"its chat model ({MODEL_KEY} holds the key), a daily report at "
                f"{REPORT_SCHEDULE!r} UTC and in {REPORT_AFTER:g}s, database "
                f"{without_password(settings.database_url)}; Ctrl-C stops"
            )
            chores = [
                asyncio.create_task(_print_events(connections, say)),
                asyncio.create_task(_print_automations(automations, sandbox, store, say)),
                asyncio.create_task(_send_emails(sandbox)),
                asyncio.create_task(_first_report(automations, report)),
            ]
            try:
                await run_roles(settings, app, scheduler=True, tiers=(Tier.LIGHT, Tier.HEAVY),
                                stop=stop)  # fmt: skip
            finally:
                for chore in chores:
                    chore.cancel()
                await asyncio.gather(*chores, return_exceptions=True)
            say(await _spend(store))  # the last line: nothing else prints by now
        finally:
            await session.close()
            await store.close()


async def _seed(connections: Connections, sandbox: Sandbox, lifetime: float) -> list[int]:
    for provider in ("sandbox", "sandbox-crm"):
        for old in await connections.find(provider=provider, limit=1000):
            if old.owner in OWNERS:
                await connections.delete(old.id)
    ids = []
    for owner in OWNERS:
        tokens = sandbox.grants.mint(owner)
        added = await connections.add(
            provider="sandbox", owner=owner, access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=lifetime,
        )  # fmt: skip
        ids.append(added.id)
        if owner == REVOKED:
            sandbox.grants.grants[max(sandbox.grants.grants)].revoked = True
    # The nightly sync's owner writes to the CRM too, through a second connection.
    crm = sandbox.crm.provider.grants.mint(OWNERS[1])
    await connections.add(
        provider="sandbox-crm", owner=OWNERS[1], access_token=crm["access_token"],
        refresh_token=crm["refresh_token"], expires_in=lifetime, name=CRM,
    )  # fmt: skip
    return ids


async def _seed_automations(automations: Automations, sandbox: Sandbox, ids: list[int]) -> int:
    """The inbox automation, the daily report (its id returned) and the nightly sync, on
    the first two connections (replacing those of an earlier demo, whose connections are
    gone)."""
    sandbox.feed.add({"count": 1, "items": [WELCOME]})
    sandbox.feed.records.extend(
        {"id": n, "name": f"record {n}", "amount": n % 997} for n in range(1, SYNC_RECORDS + 1)
    )
    for earlier in ("demo-inbox", "demo-daily-report", "demo-nightly-sync"):
        with contextlib.suppress(AutomationNotFoundError):
            await automations.delete(earlier)
    await automations.add(
        name="demo-inbox", connection_id=ids[0], trigger="new_email",
        every=timedelta(seconds=10), steps=INBOX_STEPS, start="beginning",
    )  # fmt: skip
    report = await automations.add(
        name="demo-daily-report", connection_id=ids[0], schedule=REPORT_SCHEDULE,
        steps=report_steps(f"{sandbox.url}/api/hooks"),
        params={"sink": f"{sandbox.url}/sandbox/sink/summaries"},
    )  # fmt: skip
    sync = await automations.add(
        name="demo-nightly-sync", connection_id=ids[1], schedule="0 2 * * *", steps=SYNC_STEPS
    )
    await automations.run_now(sync.id)
    return report.id


async def _send_emails(sandbox: Sandbox) -> None:
    for n in itertools.count():
        await asyncio.sleep(EMAIL_EVERY)
        sandbox.feed.add({"items": [EMAILS[n % len(EMAILS)]]})


async def _first_report(automations: Automations, report: int) -> None:
    """Run the daily report once, `REPORT_AFTER` seconds in, so it shows without waiting
    for its evening."""
    await asyncio.sleep(REPORT_AFTER)
    await automations.run_now(report)


async def _print_automations(
    automations: Automations, sandbox: Sandbox, store: Store, say: Callable[[str], None]
) -> None:
    seen = 0
    while True:
        await asyncio.sleep(1)
        for event in await automations.events(after_id=seen, limit=1000):
            if event.state not in (EventState.DONE, EventState.DEAD_LETTER):
                break
            seen = event.id
            when = (event.finished_at or event.seen_at).strftime("%H:%M:%S")
            say(f"{when} {_outcome(event, sandbox)}")
            if "report" in event.outputs:
                say(f"{when} {await _spend(store)}")


def _outcome(event: AutomationEvent, sandbox: Sandbox) -> str:
    """What an event of the demo's automations came to, in a line."""
    outputs = event.outputs
    if event.state is EventState.DEAD_LETTER:
        return f"event {event.id} dead-lettered: {event.error}"
    if "copy" in outputs:
        copied = outputs["copy"]
        return (f"nightly sync: copied {copied['copied']} records to the CRM in "
                f"{copied['pages']} pages")  # fmt: skip
    if "report" in outputs:
        report, emails = outputs["report"], len(outputs["collect"]["emails"])
        where = ", ".join(report["delivered"])
        return (f"daily report of {emails} emails, summarised by model {MODEL}, delivered: "
                f"{report['bytes']:,} bytes of Markdown to {where}")  # fmt: skip
    answer = outputs.get("classify", {})
    hooks = len(sandbox.feed.sinks.get("summaries", []))
    return (f"email {event.key} classified {answer.get('label')} by model {MODEL}, summary "
            f"posted (webhook has {hooks}): {answer.get('summary')}")  # fmt: skip


async def _spend(store: Store) -> str:
    """What the chat models cost this month, from the database as `cronlink usage` reads it."""
    spent = await store.ai.month(month_of(datetime.now(UTC)))
    if not spent:
        return "AI this month: no model called yet"
    each = [f"model {s.model}: {s.calls} calls ({s.failed} failed), {s.input_tokens:,} tokens "
            f"in and {s.output_tokens:,} out, ${s.cost_usd:.4f}" for s in spent]  # fmt: skip
    return f"AI this month: {'; '.join(each)}"


async def _print_events(connections: Connections, say: Callable[[str], None]) -> None:
    seen = 0
    while backlog := await connections.events(after_id=seen):  # start after what was there
        seen = backlog[-1].id
    while True:
        await asyncio.sleep(1)
        for event in await connections.events(after_id=seen):
            when = event.at.strftime("%H:%M:%S")
            say(f"{when} connection {event.connection_id}: {event.kind}: {event.detail}")
            seen = event.id
