"""One evaluation: read the facts, apply the rules, record what started and what
recovered, and deliver the messages owed, within the rate limit.

Deduplication is the stored state: an alert owes one message when it starts firing and
one when it recovers, whatever the number of evaluations in between. Delivery takes the
owed messages under a lease and the rate-limit slots by compare-and-swap, so evaluators
sharing a database send each message once and together stay under the cap. A message
that reached no channel is owed still, and tried again at the next evaluation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cronlink.clock import iso_seconds
from cronlink.durations import format_duration
from cronlink.jobs import with_overrides
from cronlink.observe.alert_rules import findings, runs_needed, usage_quota
from cronlink.records.alerts import Message, Owed

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cronlink.jobs import Job
    from cronlink.observe.notify import Notifier
    from cronlink.observe.usage import UsageReport
    from cronlink.records.alerts import Alert, Policy
    from cronlink.store import Store

LEASE = timedelta(minutes=5)
"""How long an evaluator holds the messages it is sending (they wait for it meanwhile)."""
CLAIM_LIMIT = 1000
SUMMARY_LINES = 50
"""Alerts named in a summary: a first evaluation over a large fleet can owe thousands."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True, slots=True)
class Evaluation:
    findings: int
    started: list[str]
    resolved: list[str]
    delivery: Delivery


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    sent: int = 0
    """Messages that reached at least one channel."""
    summarised: int = 0
    """Alerts told in a summary, the rate limit being reached."""
    held: int = 0
    """Messages left owed: for the next window, or for another try."""


async def evaluate(
    store: Store,
    jobs: Mapping[str, Job],
    policy: Policy,
    notifier: Notifier,
    now: datetime,
    usage: UsageReport | None = None,
) -> Evaluation:
    """Evaluate the rules over `jobs` (with their schedules as overridden) and `usage` at
    `now`, then deliver what is owed."""
    current = with_overrides(jobs, await store.overrides.all())
    facts = await store.alerts.facts(sorted(current), runs_needed(policy))
    found = findings(facts, current, policy, now)
    if usage is not None and "usage-quota" in policy.rules:
        found.extend(usage_quota(usage))
    started, resolved = await store.alerts.reconcile(found, now, policy.repeat)
    delivery = await deliver(store, notifier, policy, now)
    return Evaluation(findings=len(found), started=started, resolved=resolved, delivery=delivery)


async def deliver(store: Store, notifier: Notifier, policy: Policy, now: datetime) -> Delivery:
    """Send the messages owed: each alone while the window has room, the rest in one
    summary when it runs out; none at all once it is full (they wait for the next)."""
    token = secrets.token_hex(16)
    owing = await store.alerts.claim(token, now + LEASE, now, CLAIM_LIMIT)
    if not owing:
        return Delivery()
    slots = await store.alerts.take_slots(window_start(now, policy.window), len(owing),
                                          policy.max_messages)  # fmt: skip
    alone = owing if slots >= len(owing) else owing[: max(slots - 1, 0)]
    folded = owing[len(alone) :] if 0 < slots < len(owing) else []
    sent = unsent = told = 0
    for alert in alone:
        reached = await _send(notifier, message(alert, policy))
        sent, unsent = sent + reached, unsent + (not reached)
        await store.alerts.settle(alert.key, token, alert.owed if reached else None, now)
    if folded:
        reached = await _send(notifier, summary(folded, policy))
        sent, told = sent + reached, len(folded) if reached else 0
        unsent += len(folded) - told
        for alert in folded:
            await store.alerts.settle(alert.key, token, alert.owed if reached else None, now)
    held = owing[len(alone) + len(folded) :]
    for alert in held:
        await store.alerts.settle(alert.key, token, None, now)
    return Delivery(sent=sent, summarised=told, held=len(held) + unsent)


def window_start(now: datetime, window: timedelta) -> datetime:
    """The rate-limit window `now` falls in: windows are aligned on the epoch, so every
    evaluator counts in the same one."""
    return _EPOCH + (now - _EPOCH) // window * window


def message(alert: Alert, policy: Policy) -> Message:
    """The message `alert` owes its channels."""
    if alert.owed is Owed.RECOVERED:
        cleared = alert.resolved_at or alert.since
        return Message(
            title=f"[{policy.label}] resolved: {alert.subject}",
            body=f"Alert {alert.key} has cleared: it fired at {_at(alert.since)} and cleared "
                 f"at {_at(cleared)} (after {_span(cleared - alert.since)})."
                 f"\n\nIt said: {alert.body}",
            kind="success",
        )  # fmt: skip
    again = alert.notified_at is not None and alert.notified_at >= alert.since
    return Message(
        title=f"[{policy.label}] {'still firing' if again else 'FIRING'}: {alert.subject}",
        body=f"{alert.body}\n\nAlert {alert.key}, firing since {_at(alert.since)}.",
        kind="failure",
    )


def summary(alerts: list[Alert], policy: Policy) -> Message:
    """One message for the alerts beyond the rate limit."""
    lines = [
        f"- {'resolved' if a.owed is Owed.RECOVERED else 'FIRING'} {a.key}: {a.subject}"
        for a in alerts[:SUMMARY_LINES]
    ]
    if len(alerts) > SUMMARY_LINES:
        lines.append(f"- and {len(alerts) - SUMMARY_LINES} more")
    return Message(
        title=f"[{policy.label}] {len(alerts)} more alerts (at most {policy.max_messages} "
              f"messages per {format_duration(policy.window)})",
        body="\n".join(lines) + "\n\n`cronlink alerts list` shows those still firing.",
        kind="warning",
    )  # fmt: skip


async def _send(notifier: Notifier, message: Message) -> bool:
    """Whether `message` reached at least one channel (resending it would repeat it on
    those that took it)."""
    failed = await notifier.send(message)
    return len(failed) < len(notifier.urls)


def _span(span: timedelta) -> str:
    """`1h30m7s`: how long an alert fired, in the units people write durations in."""
    seconds, parts = int(span.total_seconds()), []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _at(value: datetime) -> str:
    return iso_seconds(value)
