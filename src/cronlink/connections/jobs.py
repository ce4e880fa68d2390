"""The built-in connection jobs, added to the app by a `[connections]` section:
`refresh-tokens`, `refresh-connection` and `check-health` (every 5 minutes).

`refresh-tokens` (hourly) is the safety net: it queues a `refresh-connection` run for every
connection that is due and every refresh token left idle too long; each connection's own
`refresh-connection` run, queued at its `refresh_due_at`, is what keeps short-lived tokens
valid. Queuing instead of refreshing inline keeps the sweep short however many connections
there are, and spreads the refreshes over the light workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cronlink.clock import iso_seconds
from cronlink.connections.service import Connections
from cronlink.errors import ConnectionUnusableError, RefreshError
from cronlink.plurals import counted

if TYPE_CHECKING:
    from cronlink.context import RunContext

REFRESH_TOKENS = "refresh-tokens"
REFRESH_CONNECTION = "refresh-connection"
CHECK_HEALTH = "check-health"
SWEEP_BATCH = 1000


async def refresh_tokens(ctx: RunContext) -> dict[str, int]:
    """Queue a refresh for each connection that is due or idle (one run per connection)."""
    due, idle = await _service(ctx).sweep()
    ids = sorted(set(due) | set(idle))
    for connection_id in ids:
        force = connection_id in idle and connection_id not in due
        await ctx.enqueue(REFRESH_CONNECTION, {"connection_id": connection_id, "force": force})
    ctx.log.info("queued %s (%d due, %d idle)", counted(len(ids), "refresh"), len(due), len(idle))
    return {"due": len(due), "idle": len(idle)}


async def refresh_connection(ctx: RunContext) -> dict[str, Any]:
    """Refresh one connection (payload `connection_id`; `version`: the tokens it was queued
    for, refreshed unless someone has since; `force`: refresh whatever the time).

    Such a run always ends with the chain going on: it refreshed (and the save queued the
    next run), found newer tokens (whoever stored them queued it), or failed and the
    service queued its retry (with backoff, at a pause's end, or never for a revoked
    grant). `next` in its result says when. It ends `succeeded` with the outcome in its
    result rather than being retried a second way.
    """
    payload = ctx.payload or {}
    connection_id = int(payload["connection_id"])
    queued_for = payload.get("version")
    service = _service(ctx)
    # The sweep's runs name no version: they are judged on the tokens as they are now.
    before = int(queued_for) if queued_for else (await service.get(connection_id)).version
    outcome: dict[str, Any] = {"connection_id": connection_id}
    try:
        after = await service.refresh(
            connection_id, force=bool(payload.get("force")),
            expected_version=None if queued_for is None else before,
        )  # fmt: skip
    except (RefreshError, ConnectionUnusableError) as error:
        ctx.log.warning("connection %d not refreshed: %s", connection_id, error)
        outcome["error"] = str(error)
        after = await service.get(connection_id)
    due = after.refresh_due_at
    return outcome | {
        "refreshed": after.version > before,
        "version": after.version,
        "next": iso_seconds(due) if due else None,
    }


async def check_health(ctx: RunContext) -> dict[str, int]:
    """Probe every active connection (not those used successfully just now)."""
    counts = await _service(ctx).check_all()
    ctx.log.info(
        "probed %d of %s (%d used successfully within the passive window, %d paused by "
        "their provider), %d changed health",
        counts["probed"], counted(counts["active"], "active connection"), counts["passive"],
        counts["paused"], counts["changed"],
    )  # fmt: skip
    return counts


def _service(ctx: RunContext) -> Connections:
    """The whole service: the built-in jobs are light, so they run beside it."""
    service = ctx.connections
    assert isinstance(service, Connections), "the connection jobs run on the light tier"
    return service
