"""The alert rules: pure functions from `Facts` (and the jobs' definitions) to findings.

Each rule looks at the present only: an alert fires while its finding is there and
recovers when it is gone. The store remembers which is which (`store.alerts`).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING

from cronlink.clock import iso_seconds
from cronlink.cron import next_fire
from cronlink.durations import format_duration
from cronlink.plurals import counted
from cronlink.records.alerts import Finding
from cronlink.records.runs import RunState, Tier

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from datetime import datetime

    from cronlink.jobs import Job
    from cronlink.observe.usage import UsageReport
    from cronlink.records.alerts import (
        ConnectionFacts,
        Facts,
        JobFacts,
        Policy,
        TriggerFacts,
    )

FAILED = {RunState.FAILED.value, RunState.TIMED_OUT.value, RunState.DEAD.value}
P95_MIN_RUNS = 5
"""Fewer finished runs than this say nothing about a p95."""


def findings(facts: Facts, jobs: Mapping[str, Job], policy: Policy, now: datetime) -> list[Finding]:
    """Every finding of the rules `policy` turns on, by key."""
    found: list[Finding] = []
    for name, job in sorted(jobs.items()):
        seen = facts.jobs.get(name)
        if seen is None:
            continue
        for rule in JOB_RULES:
            if _named(rule) in policy.rules:
                found.extend(rule(job, seen, policy, now, name in facts.paused))
    for connection in facts.connections:
        for connection_rule in (connection_reauth, connection_down):
            if _named(connection_rule) in policy.rules:
                found.extend(connection_rule(connection))
    if "trigger-stalled" in policy.rules:
        found.extend(trigger_stalled(trigger) for trigger in facts.triggers)
    return found


def run_dead(
    job: Job, seen: JobFacts, policy: Policy, now: datetime, paused: bool
) -> Iterator[Finding]:
    """The job's newest finished run is dead after its retries (until a later one is not)."""
    if seen.recent and seen.recent[0].state == RunState.DEAD.value:
        run = seen.recent[0]
        yield Finding(
            key=f"run-dead:{job.name}", rule="run-dead",
            subject=f"a run of {job.name} is dead after its retries",
            body=f"Run {run.id} of job {job.name} is dead after {counted(run.attempt, 'attempt')} "
                 f"({_cause(run.error_type, run.error_reason)}), at {_at(run.finished_at)}.",
        )  # fmt: skip


def job_failing(
    job: Job, seen: JobFacts, policy: Policy, now: datetime, paused: bool
) -> Iterator[Finding]:
    """The job's last `failing_after` finished runs all failed."""
    streak = 0
    for run in seen.recent:
        if run.state not in FAILED:
            break
        streak += 1
    if streak >= policy.failing_after:
        newest = seen.recent[0]
        more = " or more" if streak == runs_needed(policy) else ""
        yield Finding(
            key=f"job-failing:{job.name}", rule="job-failing",
            subject=f"job {job.name} is failing",
            body=f"The last {streak}{more} {'run' if streak == 1 and not more else 'runs'} "
                 f"of job {job.name} failed (the alert is at "
                 f"{policy.failing_after}); the newest, run {newest.id}, "
                 f"{newest.state} at {_at(newest.finished_at)} "
                 f"({_cause(newest.error_type, newest.error_reason)}).",
        )  # fmt: skip


def job_silent(
    job: Job, seen: JobFacts, policy: Policy, now: datetime, paused: bool
) -> Iterator[Finding]:
    """A scheduled job without a successful run by its next instant plus the grace (the
    dead man's switch): the instant after the last success, or the first on record."""
    if paused or not job.schedules:
        return
    if seen.last_success is not None:
        after = seen.last_success
    elif seen.first_fire is not None:
        after = seen.first_fire - timedelta(microseconds=1)
    else:
        return
    dues = [d for s in job.schedules if (d := next_fire(s.cron, after, s.zone)) is not None]
    if not dues or now <= min(dues) + policy.grace:
        return
    due = min(dues)
    since = "ever" if seen.last_success is None else f"since {_at(seen.last_success)}"
    yield Finding(
        key=f"job-silent:{job.name}", rule="job-silent",
        subject=f"job {job.name} has not succeeded on schedule",
        body=f"Job {job.name} has had no successful run {since}: the run due at {_at(due)} "
             f"should have succeeded by {_at(due + policy.grace)} (grace "
             f"{format_duration(policy.grace)}).",
    )  # fmt: skip


def job_slow(
    job: Job, seen: JobFacts, policy: Policy, now: datetime, paused: bool
) -> Iterator[Finding]:
    """A light job whose p95 duration over its newest runs nears its timeout."""
    if job.tier is not Tier.LIGHT:
        return
    durations = sorted(r.duration_ms for r in seen.recent[: policy.p95_runs]
                       if r.duration_ms is not None)  # fmt: skip
    if len(durations) < P95_MIN_RUNS:
        return
    p95 = durations[math.ceil(0.95 * len(durations)) - 1] / 1000
    timeout = job.timeout.total_seconds()
    if p95 >= policy.p95_ratio * timeout:
        yield Finding(
            key=f"job-slow:{job.name}", rule="job-slow",
            subject=f"light job {job.name} runs close to its timeout",
            body=f"The p95 duration of job {job.name}'s last {len(durations)} runs is "
                 f"{p95:.3g}s, {p95 / timeout:.0%} of its {timeout:g}s timeout (the alert is "
                 f"at {policy.p95_ratio:.0%}): move it to the heavy tier or give it longer.",
        )  # fmt: skip


JOB_RULES: tuple[Callable[[Job, JobFacts, Policy, datetime, bool], Iterator[Finding]], ...] = (
    run_dead,
    job_failing,
    job_silent,
    job_slow,
)


def connection_reauth(connection: ConnectionFacts) -> Iterator[Finding]:
    """The provider refused the connection's grant: its user must connect again."""
    if connection.state == "needs_reauth":
        yield Finding(
            key=f"connection-reauth:{connection.id}", rule="connection-reauth",
            subject=f"connection {connection.id} ({connection.provider}) needs reauth",
            body=f"The provider refused connection {connection.id}'s grant (provider "
                 f"{connection.provider}, owner {connection.owner}); it has needed its user "
                 f"to connect again since {_at(connection.updated_at)}.",
        )  # fmt: skip


def connection_down(connection: ConnectionFacts) -> Iterator[Finding]:
    """An active connection whose health checks say `down` (after their damping)."""
    if connection.state == "active" and connection.health == "down":
        yield Finding(
            key=f"connection-down:{connection.id}", rule="connection-down",
            subject=f"connection {connection.id} ({connection.provider}) is down",
            body=f"Connection {connection.id} (provider {connection.provider}, owner "
                 f"{connection.owner}) failed {connection.health_failures} health checks in "
                 f"a row; last checked {_at(connection.checked_at)}.",
        )  # fmt: skip


def trigger_stalled(trigger: TriggerFacts) -> Finding:
    """An active automation whose trigger `process-automations` marked stalled (its
    watermark stood still for `[automations] stalled_after`, or its polls kept failing)."""
    return Finding(
        key=f"trigger-stalled:{trigger.name}", rule="trigger-stalled",
        subject=f"the trigger of automation {trigger.name} stalled",
        body=f"Automation {trigger.name}'s trigger ({trigger.trigger}) is active but its "
             f"watermark last advanced {_at(trigger.advanced_at)}; last good poll "
             f"{_at(trigger.last_success_at)}, {trigger.poll_failures} failed polls since.",
    )  # fmt: skip


def runs_needed(policy: Policy) -> int:
    """How many of each job's newest finished runs the rules look at."""
    return max(policy.failing_after, policy.p95_runs)


def _named(rule: Callable[..., Iterator[Finding]]) -> str:
    return rule.__name__.replace("_", "-")


def _cause(error_type: str | None, reason: str | None) -> str:
    return ", ".join(part for part in (error_type, reason) if part) or "no error recorded"


def _at(value: datetime | None) -> str:
    return "never" if value is None else iso_seconds(value)


def usage_quota(usage: UsageReport) -> Iterator[Finding]:
    """Usage at 80% of a free quota or past it (`[usage]`), one alert per quota."""
    for warning in usage.warnings:
        yield Finding(
            key=f"usage-quota:{warning.quota}", rule="usage-quota",
            subject=warning.subject, body=warning.text[:1].upper() + warning.text[1:] + ".",
        )  # fmt: skip
