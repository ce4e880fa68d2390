"""The heavy tier's child process: import the handler, run it, report back over a pipe.

Runs in a process started with `forkserver`, so no database connection or thread of the
parent is ever inherited.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import json
import os
import resource
import signal
import sys
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cronlink import errors
from cronlink.connections import SECRET_KEY_ENV
from cronlink.context import RunContext, RunLog
from cronlink.egress import EgressPolicy
from cronlink.loading import resolve
from cronlink.observe import spend, tracing
from cronlink.records.connections import Credentials, Link
from cronlink.records.runs import Spend

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from cronlink.ai.ledger import Caller, Pace, Spent
    from cronlink.ai.models import Models
    from cronlink.ai.records import ChatModel
    from cronlink.records.automations import Work


PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class ChildRun:
    """What a child needs to know about its run (picklable)."""

    handler_path: str
    run_id: int
    job: str
    scheduled_for: datetime | None
    attempt: int
    idempotency_key: str
    payload: Any
    egress: EgressPolicy
    """The worker's: the run's own sessions reach no more than the worker's do."""
    ai: Models | None = None
    """The worker's chat models, with the values of the variables their keys name."""
    traceparent: str | None = None
    """The attempt's span, which this process's spans continue."""
    tracing: dict[str, str] | None = None
    """The worker's `OTEL_*` variables when it traces (None: it does not)."""


class _PipeLog(RunLog):
    def __init__(self, job: str, run_id: int, pipe: Connection) -> None:
        super().__init__(job, run_id)
        self._pipe = pipe

    def _add(self, level: str, message: str, *args: object) -> None:
        text = message % args if args else message
        self._pipe.send(("log", datetime.now(UTC), level, text))


def main(run: ChildRun, pipe: Connection) -> None:
    # The handler is user code: it gets credentials through the worker, never the key.
    os.environ.pop(SECRET_KEY_ENV, None)
    _die_with_parent()

    async def enqueue(job: str, payload: Any, not_before: datetime | None) -> int:
        pipe.send(("enqueue", job, payload, not_before))
        reply = pipe.recv()
        return int(reply)

    ctx = RunContext(
        _connections=_PipeConnections(pipe),
        _automations=_PipeAutomations(pipe),
        models=None if run.ai is None else run.ai.keeping(_PipeLedger(pipe)),
        run_id=run.run_id,
        job=run.job,
        scheduled_for=run.scheduled_for,
        attempt=run.attempt,
        idempotency_key=run.idempotency_key,
        payload=run.payload,
        log=_PipeLog(run.job, run.run_id, pipe),
        _enqueue=enqueue,
        egress=run.egress,
    )
    if run.tracing is not None:
        os.environ.update(run.tracing)
        tracing.start()
    with spend.spending() as spent:
        try:
            with tracing.span("cronlink.handler", _described(run), parent=run.traceparent):
                result = _handled(run, ctx)
            report: tuple[Any, ...] = ("ok", _encode(result), _peak_rss(), _spent(spent))
        except BaseException as error:
            failed = type(error).__name__, str(error), traceback.format_exc()
            report = ("error", *failed, _peak_rss(), _spent(spent))
        pipe.send(report)
    # After the report, in the time the worker gives the process to exit (EXIT_GRACE): a
    # collector slow or down loses these spans but never delays or fails the run.
    tracing.stop()


def _handled(run: ChildRun, ctx: RunContext) -> Any:
    handler = resolve(run.handler_path)
    result = handler(ctx)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


def _described(run: ChildRun) -> dict[str, Any]:
    return {"cronlink.job": run.job, "cronlink.run_id": run.run_id, "process.pid": os.getpid()}


def _die_with_parent() -> None:
    """Be killed when the fork server (our parent) exits, which it does when its worker
    dies: a run whose worker was killed must not go on beside the retry that replaces it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent was gone before the signal was armed
            os._exit(1)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _encode(result: Any) -> str | None:
    return None if result is None else json.dumps(result, default=str)


def _spent(spent: Spend) -> tuple[int, int]:
    """Requests made and CPU milliseconds used by this process and its children."""
    used = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF),
                      resource.getrusage(resource.RUSAGE_CHILDREN))
    )  # fmt: skip
    return spent.requests, int(used * 1000)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _PipeConnections:
    """`ctx.connections` in a heavy run: each call is answered by the worker, which holds
    the store and the key (the child never sees either)."""

    def __init__(self, pipe: Connection) -> None:
        self._pipe = pipe

    async def credentials(self, connection_id: int) -> Credentials:
        found: Credentials = self._ask("credentials", connection_id)
        return found

    async def renew(self, connection_id: int, version: int) -> Credentials:
        found: Credentials = self._ask("renew", connection_id, version)
        return found

    async def pause(self, connection_id: int, seconds: float) -> datetime:
        until: datetime = self._ask("pause", connection_id, seconds)
        return until

    async def paused_until(self, connection_id: int) -> datetime | None:
        until: datetime | None = self._ask("paused_until", connection_id)
        return until

    async def used(self, connection_id: int) -> None:
        self._ask("used", connection_id)

    async def resolve(self, ref: int | str, owner_of: int) -> Link:
        found: Link = self._ask("resolve", ref, owner_of)
        return found

    def _ask(self, method: str, *args: Any) -> Any:
        self._pipe.send(("connections", method, args))
        reply: tuple[Any, ...] = self._pipe.recv()
        if reply[0] == "ok":
            return reply[1]
        raise errors.rebuilt(*reply[1:])


class _PipeLedger:
    """The ledger of a heavy run's calls to chat models: the worker admits each (a budget
    is checked in its store), paces its requests (answering how long to wait, so that
    this process's other calls go on meanwhile) and records what it cost, without a
    reply to wait for."""

    def __init__(self, pipe: Connection) -> None:
        self._pipe = pipe

    async def admit(self, model: ChatModel) -> None:
        self._pipe.send(("ai", "admit", (model,)))
        reply: tuple[Any, ...] = self._pipe.recv()
        if reply[0] != "ok":
            raise errors.rebuilt(*reply[1:])

    async def take(self, model: ChatModel, owed: Pace) -> Pace:
        self._pipe.send(("ai", "take", (model, owed)))
        reply: tuple[Any, ...] = self._pipe.recv()
        if reply[0] != "ok":
            raise errors.rebuilt(*reply[1:])
        taken: Pace = reply[1]
        return taken

    async def record(self, model: str, caller: Caller, spent: Spent) -> None:
        self._pipe.send(("ai-spent", model, caller, spent))


class _PipeAutomations:
    """`ctx.automations` in a heavy run, answered by the worker, which holds the store."""

    def __init__(self, pipe: Connection) -> None:
        self._pipe = pipe

    async def take(self, automation_id: int, run_id: int) -> Work | None:
        found: Work | None = self._ask("take", automation_id, run_id)
        return found

    async def save(
        self,
        event_id: int,
        run_id: int,
        state: str,
        step: int,
        outputs: dict[str, Any],
        error: str | None,
    ) -> bool:
        return bool(self._ask("save", event_id, run_id, state, step, outputs, error))

    async def sweep(self) -> dict[str, int]:
        return dict(self._ask("sweep"))

    async def pending(self, limit: int, run_id: int) -> list[int]:
        return list(self._ask("pending", limit, run_id))

    def _ask(self, method: str, *args: Any) -> Any:
        self._pipe.send(("automations", method, args))
        reply: tuple[Any, ...] = self._pipe.recv()
        if reply[0] == "ok":
            return reply[1]
        raise errors.rebuilt(*reply[1:])
