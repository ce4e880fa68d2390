"""The built-in `report` step: a report rendered from the event and the earlier steps'
outputs (`cronlink.reports`), delivered to each of its destinations.

Each destination that takes the report is checkpointed at once, so a retried attempt, or
the run that takes over a killed one, sends it only to those that did not. The step's
output is the report's summary (size, digest, an excerpt, where it went), not its body.
A template or configuration that cannot work fails the step for good; a destination
that may take it later (5xx, timeouts, network, a channel that did not) is retried.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cronlink.errors import ConfigError, StepError
from cronlink.plurals import counted
from cronlink.reports import delivery, render

if TYPE_CHECKING:
    from cronlink.automations.steps import ReportStep, StepContext

CONFIG_ENV = "CRONLINK_CONFIG"


async def call(step: ReportStep, event: Any, ctx: StepContext) -> dict[str, Any]:
    where = f"step {ctx.step}"
    values = {
        "event": event, "steps": ctx.outputs, "params": ctx.params, "now": ctx.run.clock.now(),
    }  # fmt: skip
    base = config_folder()
    try:
        report = render(step, values, base=base, where=where)
    except ConfigError as error:
        raise StepError(str(error), retryable=False) from None
    done = _resume(ctx)

    async def record(index: int, shown: str) -> None:
        done[index] = shown
        await ctx.checkpoint({"delivered": {str(i): s for i, s in done.items()}})

    shown = await delivery.deliver(
        report, step.deliver, session=ctx.session, values=values, base=base, done=done,
        on_delivered=record, idempotency_key=ctx.idempotency_key, where=where,
    )  # fmt: skip
    ctx.log.info(
        "%s: %d-byte %s report delivered to %s",
        where, len(report.content), report.format, counted(len(shown), "destination"),
    )  # fmt: skip
    return report.summary(shown)


def config_folder() -> Path:
    """Where relative template and file paths start: the folder of cronlink.toml when it
    was named by `CRONLINK_CONFIG`, else the working directory (where it is read from)."""
    named = os.environ.get(CONFIG_ENV)
    return Path(named).parent if named else Path()


def _resume(ctx: StepContext) -> dict[int, str]:
    """The destinations an earlier attempt of this step delivered to, from its checkpoint."""
    saved = ctx.outputs.get(ctx.step)
    checkpoint = saved.get("checkpoint") if isinstance(saved, dict) else None
    delivered = checkpoint.get("delivered") if isinstance(checkpoint, dict) else None
    if not isinstance(delivered, dict):
        return {}
    return {int(i): str(s) for i, s in delivered.items() if str(i).isdigit()}
