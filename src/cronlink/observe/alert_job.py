"""The built-in `watch-alerts` job (every minute), added to the app by an `[alerts]`
section: evaluate the alert rules over the app's jobs and send what is owed.

The job evaluates through `ctx.alerts`, a `Watch` the roles build over the store they
already hold; `cronlink alerts check` builds one over its own store and calls the same
`Watch.once`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cronlink.observe.alerts import Evaluation, evaluate
from cronlink.observe.usage import UsageReport, measured
from cronlink.records.alerts import Policy

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
    """The alert rules over `jobs` (read at each evaluation: jobs added later count) and
    the store that holds their runs: what `watch-alerts` evaluates every minute, and
    `cronlink alerts check` once."""

    def __init__(
        self,
        model: AlertsModel,
        quotas: UsageModel,
        jobs: Mapping[str, Job],
        store: Store,
        budgets: Mapping[str, float | None] | None = None,
    ) -> None:
        # Imported here: defers apprise and its ~100 plugins, which only [alerts] needs
        # (every command line reads the settings).
        from cronlink.observe.notify import Notifier

        self.jobs = jobs
        self.quotas = quotas
        self.budgets = dict(budgets or {})
        self.store = store
        self.policy = policy_from(model)
        self.notifier = Notifier(model.urls)
        # The month's usage is a scan of the month's runs: read every USAGE_EVERY, not every
        # minute. The alert's finding is kept in between, so it does not flap.
        self._usage: tuple[datetime, UsageReport] | None = None

    async def once(self, now: datetime) -> Evaluation:
        """Evaluate the rules at `now`, record what started and recovered, send what is owed."""
        if "usage-quota" in self.policy.rules and (
            self._usage is None or now - self._usage[0] > USAGE_EVERY
        ):
            self._usage = (
                now,
                await measured(self.store, self.jobs, self.quotas, now, budgets=self.budgets),
            )
        usage = self._usage[1] if self._usage else None
        return await evaluate(self.store, self.jobs, self.policy, self.notifier, now, usage)


def summary_line(done: Evaluation) -> str:
    """What one evaluation did, as the job's log and `cronlink alerts check` say it."""
    return (
        f"{done.findings} findings; {len(done.started)} started, {len(done.resolved)} "
        f"recovered; {done.delivery.sent} messages sent, {done.delivery.summarised} alerts "
        f"summarised, {done.delivery.held} messages held"
    )


async def watch_alerts(ctx: RunContext) -> dict[str, int]:
    """The `watch-alerts` handler: one evaluation by the worker's `Watch`, at the worker's
    time."""
    done = await ctx.alerts.once(ctx.clock.now())
    ctx.log.info("%s", summary_line(done))
    return {"findings": done.findings, "started": len(done.started),
            "resolved": len(done.resolved), "sent": done.delivery.sent}  # fmt: skip
