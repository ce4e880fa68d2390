"""What a handler receives: `ctx` with the run's identity, payload, a log, the worker's
clock and `enqueue`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from cronlink.clock import Clock, SystemClock
from cronlink.connections.account import Gate
from cronlink.egress import EgressPolicy
from cronlink.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cronlink.ai.models import Models, RunModels
    from cronlink.observe.alert_job import Watch
    from cronlink.records.automations import Work
    from cronlink.records.connections import Link

    Enqueue = Callable[[str, Any, datetime | None], Awaitable[int]]

LOG_LINES_KEPT = 200
LOG_LINE_CHARS = 2000


class RunLog:
    """A per-run log: lines go to the `cronlink.run` logger (which marks them with the run,
    `observe.logs`) and are kept on the run."""

    def __init__(self, job: str, run_id: int) -> None:
        self.lines: list[tuple[datetime, str, str]] = []
        self._logger = logging.getLogger(f"cronlink.run.{job}")

    def _add(self, level: str, message: str, *args: object) -> None:
        text = (message % args if args else message)[:LOG_LINE_CHARS]
        self._logger.log(logging.getLevelName(level.upper()), text)
        if len(self.lines) < LOG_LINES_KEPT:
            self.lines.append((datetime.now(UTC), level, text))

    def debug(self, message: str, *args: object) -> None:
        self._add("debug", message, *args)

    def info(self, message: str, *args: object) -> None:
        self._add("info", message, *args)

    def warning(self, message: str, *args: object) -> None:
        self._add("warning", message, *args)

    def error(self, message: str, *args: object) -> None:
        self._add("error", message, *args)


class ConnectionAccess(Gate, Protocol):
    """What a handler may do with connections (light tier: `Connections` itself; heavy
    tier: the same calls, answered by the worker over the child's pipe): an account's
    calls (`Gate`: credentials, renew after a 401, the 429 pause) and `used`."""

    async def used(self, connection_id: int) -> None:
        """A successful real call went through the connection (it stands in for a probe)."""
        ...

    async def resolve(self, ref: int | str, owner_of: int) -> Link:
        """The connection a step names (an id or a name) among those of the owner of
        connection `owner_of`, if it may be used now (`Connections.resolve`)."""
        ...


class AutomationAccess(Protocol):
    """What processing an automation event needs from the store (light tier: the
    `Automations` service; heavy tier: the same calls over the child's pipe)."""

    async def take(self, automation_id: int, run_id: int) -> Work | None:
        """The event this run holds, or the automation's oldest pending one if it has a
        free slot; None when there is nothing for this run to do."""
        ...

    async def save(
        self,
        event_id: int,
        run_id: int,
        state: str,
        step: int,
        outputs: dict[str, Any],
        error: str | None,
    ) -> bool:
        """Checkpoint (`running`) or finish the event; False if the run no longer holds it."""
        ...

    async def sweep(self) -> dict[str, int]:
        """Start due scheduled automations, settle events whose run ended without them,
        forget old event keys, flag stalled triggers."""
        ...

    async def pending(self, limit: int, run_id: int) -> list[int]:
        """Automations with pending events, or with events `run_id` holds, the longest
        waiting first."""
        ...


@dataclass(kw_only=True, slots=True)
class RunContext:
    """Handed to every handler: `async def handler(ctx) -> result`."""

    run_id: int
    job: str
    scheduled_for: datetime | None
    attempt: int
    idempotency_key: str
    payload: Any
    log: RunLog
    _enqueue: Enqueue = field(repr=False)
    stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set when the worker shuts down: a handler that loops for long should return."""
    _connections: ConnectionAccess | None = field(default=None, repr=False)
    _automations: AutomationAccess | None = field(default=None, repr=False)
    _alerts: Watch | None = field(default=None, repr=False)
    models: Models | None = field(default=None, repr=False)
    """The chat models declared in cronlink.toml (None without any): handlers call them
    through `ctx.ai`, which records each call against this attempt."""
    clock: Clock = field(default_factory=SystemClock, repr=False)
    """The worker's clock: `ctx.clock.now()` is the time the worker claims and records by
    (a test hands the worker a clock of its own; a heavy run's process has the system's)."""
    egress: EgressPolicy = field(default_factory=EgressPolicy, repr=False)
    """What the worker's outbound requests may reach: give it to `new_session` for a
    session of the handler's own."""

    @property
    def connections(self) -> ConnectionAccess:
        """Connections and their credentials: `await ctx.connections.credentials(id)`."""
        if self._connections is None:
            raise ConfigError(
                f"job {self.job!r} has no connections here: they need CRONLINK_SECRET_KEY and "
                "a [connections] section in cronlink.toml"
            )
        return self._connections

    @property
    def automations(self) -> AutomationAccess:
        """The automation events of the built-in automation jobs."""
        if self._automations is None:
            raise ConfigError(
                f"job {self.job!r} has no automations here: they need CRONLINK_SECRET_KEY and "
                "a [connections] section in cronlink.toml"
            )
        return self._automations

    @property
    def alerts(self) -> Watch:
        """The alert rules over the worker's store, which the built-in `watch-alerts` job
        evaluates."""
        if self._alerts is None:
            raise ConfigError(
                f"job {self.job!r} has no alerts here: they need an [alerts] section in "
                "cronlink.toml"
            )
        return self._alerts

    @property
    def ai(self) -> RunModels:
        """The chat models declared in cronlink.toml: `await ctx.ai.complete(model=NAME,
        messages=[...], schema={...})`."""
        if self.models is None:
            raise ConfigError(
                f"job {self.job!r} has no chat models here: declare them as [ai.models.NAME] "
                "in cronlink.toml"
            )
        # Imported here: the models' modules load only in a process whose runs call one.
        from cronlink.ai.ledger import Caller
        from cronlink.ai.models import RunModels

        caller = Caller(job=self.job, run_id=self.run_id, attempt=self.attempt)
        return RunModels(self.models, caller, self.egress)

    async def enqueue(
        self, job: str, payload: Any = None, not_before: datetime | None = None
    ) -> int:
        """Queue a run of another job (light work handing heavy work over); returns its id."""
        return await self._enqueue(job, payload, not_before)
