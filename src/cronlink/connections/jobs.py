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

from cronlink.connections.service import Connections
from cronlink.errors import ConnectionUnusableError, RefreshError

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
    ctx.log.info("queued %d refreshes (%d due, %d idle)", len(ids), len(due), len(idle))
    return {"due": len(due), "idle": len(idle)}


async def refresh_connection(ctx: RunContext) -> dict[str, Any]:
    """Refresh one connection (payload `connection_id`, optional `force`).

    A failed refresh has already been recorded and its retry queued by the service (with
    backoff, or never for a revoked grant): this run ends `succeeded` with the outcome in
    its result rather than being retried a second way.
    """
    payload = ctx.payload or {}
    connection_id = int(payload["connection_id"])
    try:
        force = bool(payload.get("force"))
        after = await _service(ctx).refresh(connection_id, force=force)
    except (RefreshError, ConnectionUnusableError) as error:
        ctx.log.warning("connection %d not refreshed: %s", connection_id, error)
        return {"connection_id": connection_id, "refreshed": False, "error": str(error)}
    return {"connection_id": connection_id, "refreshed": True, "version": after.version}


async def check_health(ctx: RunContext) -> dict[str, int]:
    """Probe every active connection (not those used successfully just now)."""
    counts = await _service(ctx).check_all()
    ctx.log.info(
        "probed %d connections (%d skipped as recently used), %d changed health",
        counts["probed"], counts["passive"], counts["changed"],
    )  # fmt: skip
    return counts


def _service(ctx: RunContext) -> Connections:
    """The whole service: the built-in jobs are light, so they run beside it."""
    service = ctx.connections
    assert isinstance(service, Connections), "the connection jobs run on the light tier"
    return service
