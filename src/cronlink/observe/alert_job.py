"""The built-in `watch-alerts` job (every minute), added to the app by an `[alerts]`
section: evaluate the alert rules over the app's jobs and send what is owed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cronlink.jobs import build_job
from cronlink.observe.alert_model import Policy
from cronlink.observe.alerts import Evaluation, evaluate
from cronlink.observe.usage import UsageReport, measured
from cronlink.store import store_for

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cronlink.config_models import AlertsModel, UsageModel
    from cronlink.context import RunContext
    from cronlink.jobs import Job
    from cronlink.store import Store

WATCH_ALERTS = "watch-alerts"
USAGE_EVERY = timedelta(minutes=10)


def policy_from(model: AlertsModel) -> Policy:
    return Policy(
        rules=frozenset(model.rules),
        failing_after=model.failing_after,
        grace=model.grace,
        p95_ratio=model.p95_ratio,
        p95_runs=model.p95_runs,
        max_messages=model.max_messages,
        window=model.window,
        repeat=model.repeat,
        label=model.label,
    )


class Watch:
    """One evaluation of the alert rules over `jobs` and what it sends: what the
    `watch-alerts` job does every minute, and `cronlink alerts check` once."""

    def __init__(self, model: AlertsModel, quotas: UsageModel, jobs: Mapping[str, Job]) -> None:
        # Imported here: defers apprise and its ~100 plugins, which only [alerts] needs
        # (every command line reads the settings).
        from cronlink.observe.notify import Notifier

        self.jobs = jobs
        self.quotas = quotas
        self.policy = policy_from(model)
        self.notifier = Notifier(model.urls)
        # The month's usage is a scan of the month's runs: read every USAGE_EVERY, not every
        # minute. The alert's finding is kept in between, so it does not flap.
        self._usage: tuple[datetime, UsageReport] | None = None

    async def once(self, store: Store, now: datetime) -> Evaluation:
        if "usage-quota" in self.policy.rules and (
            self._usage is None or now - self._usage[0] > USAGE_EVERY
        ):
            self._usage = (now, await measured(store, self.jobs, self.quotas, now))
        usage = self._usage[1] if self._usage else None
        return await evaluate(store, self.jobs, self.policy, self.notifier, now, usage)


def watch_alerts_job(
    model: AlertsModel, quotas: UsageModel, database_url: str, jobs: Mapping[str, Job]
) -> Job:
    """The job, watching `jobs` (the app's, read at each run: jobs added later count)."""
    watch = Watch(model, quotas, jobs)

    async def watch_alerts(ctx: RunContext) -> dict[str, int]:
        # A store of its own: handlers are not handed the worker's, and one short-lived
        # connection a minute costs little.
        store = store_for(database_url)
        await store.open(migrate=False)
        try:
            done = await watch.once(store, datetime.now(UTC))
        finally:
            await store.close()
        ctx.log.info(
            "%d findings; %d started, %d recovered; %d messages sent, %d alerts summarised, "
            "%d messages held", done.findings, len(done.started), len(done.resolved),
            done.delivery.sent, done.delivery.summarised, done.delivery.held,
        )  # fmt: skip
        return {"findings": done.findings, "started": len(done.started),
                "resolved": len(done.resolved), "sent": done.delivery.sent}  # fmt: skip

    return build_job(
        name=WATCH_ALERTS, handler=watch_alerts, schedules=[model.schedule], tier="light",
        timeout="4m", max_attempts=1,  # within the lease of the messages it sends
        description="evaluate the alert rules; send what started firing and what recovered",
    )  # fmt: skip
