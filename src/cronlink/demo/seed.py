"""What the demo shows: its connections' owners, the emails its sandbox sends, and its
three automations (an inbox classified by the sandbox's chat model, a daily report, a
nightly sync to the CRM), put in place on a fresh start."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cronlink.errors import AutomationNotFoundError

if TYPE_CHECKING:
    from cronlink.automations.service import Automations
    from cronlink.connections.service import Connections
    from cronlink.sandbox import Sandbox

OWNERS = ("demo-ana", "demo-ben", "demo-chen", "demo-dana", "demo-eli")
REVOKED = "demo-eli"
"""Its grant is revoked at the provider: it shows what `needs_reauth` looks like."""
EMAIL_EVERY = 10.0
"""Seconds between the sandbox's new emails: the inbox automation polls as often (its
shortest interval), so each poll finds one."""
SYNC_RECORDS = 10_000
MODEL, MODEL_KEY = "sandbox", "SANDBOX_MODEL_KEY"
"""The chat model the demo declares (`[ai.models.sandbox]`) and the variable of its key."""
LABELS = ("urgent", "invoice", "meeting", "newsletter", "other")
REPORT_SCHEDULE = "0 18 * * *"
REPORT_AFTER = 35.0
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


async def seed_connections(
    connections: Connections, sandbox: Sandbox, lifetime: float
) -> list[int]:
    """A connection for each owner (one of them revoked at the provider) and the CRM one,
    replacing an earlier demo's; returns the owners' connection ids in `OWNERS` order."""
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


async def seed_automations(automations: Automations, sandbox: Sandbox, ids: list[int]) -> int:
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
        every=timedelta(seconds=EMAIL_EVERY), steps=INBOX_STEPS, start="beginning",
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


async def send_emails(sandbox: Sandbox) -> None:
    """A new email every `EMAIL_EVERY` seconds, the same few in turn."""
    for n in itertools.count():
        await asyncio.sleep(EMAIL_EVERY)
        sandbox.feed.add({"items": [EMAILS[n % len(EMAILS)]]})


async def first_report(automations: Automations, report: int) -> None:
    """Run the daily report once, `REPORT_AFTER` seconds in, so it shows without waiting
    for its evening."""
    await asyncio.sleep(REPORT_AFTER)
    await automations.run_now(report)
