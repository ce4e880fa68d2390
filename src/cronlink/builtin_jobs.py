"""The jobs cronlink brings: those that keep connections usable and run automations
(on with `[connections]`), and `watch-alerts` (on with `[alerts]`) with the `Watch` it
runs, which the roles build over their store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronlink.config_models import AutomationsModel
from cronlink.jobs import build_job

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cronlink.config import Settings
    from cronlink.config_models import ConnectionsModel
    from cronlink.jobs import Job
    from cronlink.observe.alert_job import Watch
    from cronlink.store import Store


def connection_jobs(
    model: ConnectionsModel, automations: AutomationsModel | None = None
) -> list[Job]:
    """The built-in jobs that keep connections usable (`cronlink.connections.jobs`) and
    run automations (`cronlink.automations.jobs`)."""
    # Imported here: defers the connection and automation domains (authlib, cryptography),
    # which only a deployment with [connections] loads.
    from cronlink.automations import jobs as automation_jobs
    from cronlink.connections import jobs

    polling = automations or AutomationsModel()
    return [
        build_job(
            name=jobs.REFRESH_TOKENS, handler=jobs.refresh_tokens,
            handler_path="cronlink.connections.jobs:refresh_tokens",
            schedules=[model.refresh_schedule], tier="light", timeout="5m", max_attempts=3,
            description="queue a refresh for every connection due or idle (the safety net)",
        ),
        build_job(
            name=jobs.REFRESH_CONNECTION, handler=jobs.refresh_connection,
            handler_path="cronlink.connections.jobs:refresh_connection",
            # Retried promptly when its worker dies: a refresh cut off after the provider
            # rotated the token must be retried inside the provider's grace window, and a
            # retry of one that did finish finds newer tokens and does nothing.
            schedules=[], tier="light", timeout="2m", max_attempts=5, min_backoff="500ms",
            max_backoff="2s", overlap="allow",
            description="refresh one connection's tokens (queued at its refresh_due_at)",
        ),
        build_job(
            name=jobs.CHECK_HEALTH, handler=jobs.check_health,
            handler_path="cronlink.connections.jobs:check_health",
            schedules=[model.health_schedule], tier="light", timeout="4m", max_attempts=1,
            description="probe every active connection; health with damping",
        ),
        build_job(
            name=automation_jobs.POLL_TRIGGERS, handler=automation_jobs.poll_triggers,
            handler_path="cronlink.automations.jobs:poll_triggers",
            schedules=[polling.poll_schedule], tier="light", timeout="70s", max_attempts=1,
            overlap="allow",
            description="poll automations' triggers as they fall due; new events start runs",
        ),
        build_job(
            name=automation_jobs.PROCESS_AUTOMATION, handler=automation_jobs.process_automation,
            handler_path="cronlink.automations.jobs:process_automation",
            schedules=[], tier="heavy", max_attempts=3, retry_on=["ChildCrashed"],
            overlap="allow", description="run an automation's steps on its new events",
        ),
        build_job(
            name=automation_jobs.PROCESS_AUTOMATIONS,
            handler=automation_jobs.process_automations,
            handler_path="cronlink.automations.jobs:process_automations",
            schedules=[polling.process_schedule], tier="heavy", max_attempts=3,
            retry_on=["ChildCrashed"],
            description="scheduled automations, stranded events, old keys, pending work",
        ),
    ]  # fmt: skip


def alert_job(settings: Settings) -> Job:
    """`watch-alerts`: every run evaluates through the `Watch` of `alert_watch`."""
    # Imported here: defers the alert rules, which only [alerts] loads.
    from cronlink.observe.alert_job import WATCH_ALERTS, watch_alerts

    assert settings.alerts is not None
    return build_job(
        name=WATCH_ALERTS, handler=watch_alerts,
        handler_path="cronlink.observe.alert_job:watch_alerts",
        schedules=[settings.alerts.schedule], tier="light",
        timeout="4m", max_attempts=1,  # within the lease of the messages it sends
        description="evaluate the alert rules; send what started firing and what recovered",
    )  # fmt: skip


def alert_watch(settings: Settings, store: Store, jobs: Mapping[str, Job]) -> Watch | None:
    """What `watch-alerts` runs (`ctx.alerts`): the rules over `jobs` (the app's, read at
    each run: jobs added later count), on the store the role already holds; None without
    `[alerts]`."""
    if settings.alerts is None:
        return None
    # Imported here: defers the alert rules and apprise, which only [alerts] loads.
    from cronlink.observe.alert_job import Watch

    return Watch(settings.alerts, settings.usage, jobs, store, settings.ai.budgets)
