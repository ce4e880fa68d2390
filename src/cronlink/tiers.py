"""Where a run executes: light (asyncio task in the worker) or heavy (a child process).

The heavy tier is the one place work crosses into another process. The parent watches the
child's memory and kills it over its limit; cancelling the attempt (timeout, cancel
request, shutdown) terminates the child, then kills it if it does not exit.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import multiprocessing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from cronlink import child, http_target
from cronlink.errors import CronlinkError, RefreshError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    import aiohttp

    from cronlink.context import RunContext
    from cronlink.jobs import Job
    from cronlink.records import Run

RESULT_CHARS = 4000
TERMINATE_GRACE = 3.0


class MemoryLimitExceeded(CronlinkError):
    """The run's process went over its memory limit and was killed."""


class ChildCrashed(CronlinkError):
    """The run's process exited without reporting a result."""


class ChildFailed(CronlinkError):
    """The handler raised in the child process."""

    def __init__(self, type_name: str, message: str, trace: str) -> None:
        self.original_types = (type_name,)
        self.trace = trace
        super().__init__(message)


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempt:
    result: str | None = None
    peak_memory: int | None = None


def encode_result(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:RESULT_CHARS]


class LightTier:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def execute(self, job: Job, run: Run, ctx: RunContext) -> Attempt:
        if job.target is not None:
            return Attempt(result=await http_target.call(self.session, job.target, run))
        assert job.handler is not None
        if inspect.iscoroutinefunction(job.handler):
            value = await job.handler(ctx)
        else:
            # A blocking handler must not stall the loop that runs every other light run.
            value = await asyncio.to_thread(job.handler, ctx)
            if inspect.isawaitable(value):
                value = await value
        return Attempt(result=encode_result(value))


class HeavyTier:
    def __init__(self, session: aiohttp.ClientSession, sample_every: float = 0.05) -> None:
        self.session = session
        self.sample_every = sample_every
        self._context = multiprocessing.get_context("forkserver")

    async def execute(self, job: Job, run: Run, ctx: RunContext) -> Attempt:
        if job.target is not None:
            return Attempt(result=await http_target.call(self.session, job.target, run))
        assert job.handler_path is not None
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=child.main,
            args=(_child_run(job, run), theirs),
            name=f"cronlink-heavy-{run.id}",
            daemon=True,
        )
        process.start()
        theirs.close()
        try:
            return await self._watch(process, ours, job, ctx)
        finally:
            await _stop(process)
            ours.close()

    async def _watch(
        self, process: BaseProcess, pipe: Connection, job: Job, ctx: RunContext
    ) -> Attempt:
        try:
            return await self._converse(process, pipe, job, ctx)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            # The child died while the worker was answering it, or it had half-written a
            # message: the same as dying between messages.
            raise ChildCrashed(f"the run's process exited with code {process.exitcode}") from None

    async def _converse(
        self, process: BaseProcess, pipe: Connection, job: Job, ctx: RunContext
    ) -> Attempt:
        peak = 0
        watched = psutil.Process(process.pid)
        while True:
            while pipe.poll():
                message = pipe.recv()
                kind = message[0]
                if kind == "log":
                    ctx.log.lines.append(message[1:])
                elif kind == "enqueue":
                    pipe.send(await ctx.enqueue(*message[1:]))
                elif kind in ("credentials", "used"):
                    pipe.send(await _connection_call(ctx, kind, message[1]))
                elif kind == "automations":
                    pipe.send(await _automation_call(ctx, message[1], message[2]))
                elif kind == "ok":
                    return Attempt(
                        result=encode_result(message[1]), peak_memory=max(peak, message[2])
                    )
                else:
                    _, type_name, text, trace, _peak = message
                    raise ChildFailed(type_name, text, trace)
            if not process.is_alive() and not pipe.poll():
                raise ChildCrashed(f"the run's process exited with code {process.exitcode}")
            peak = max(peak, _rss(watched))
            if peak > job.memory_limit:
                process.kill()
                raise MemoryLimitExceeded(
                    f"used {peak // 2**20} MiB, over the limit of {job.memory_limit // 2**20} MiB"
                )
            await asyncio.sleep(self.sample_every)


async def _connection_call(ctx: RunContext, kind: str, connection_id: int) -> tuple[Any, ...]:
    """Answer a heavy run's connection call: ("ok", …) or ("error", kind, message)."""
    try:
        if kind == "used":
            await ctx.connections.used(connection_id)
            return ("ok",)
        creds = await ctx.connections.credentials(connection_id)
    except RefreshError as error:
        return ("error", error.kind, str(error))
    except CronlinkError as error:
        return ("error", type(error).__name__, str(error))
    return ("ok", creds.provider, creds.access_token, creds.expires_at)


_AUTOMATION_CALLS = frozenset({"take", "save", "throttle", "throttled_for", "sweep", "pending"})


async def _automation_call(ctx: RunContext, method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Answer a heavy run's automation call: ("ok", value) or ("error", kind, message)."""
    if method not in _AUTOMATION_CALLS:
        return ("error", "CronlinkError", f"no automation call {method!r}")
    try:
        return ("ok", await getattr(ctx.automations, method)(*args))
    except CronlinkError as error:
        return ("error", type(error).__name__, str(error))


def _child_run(job: Job, run: Run) -> child.ChildRun:
    assert job.handler_path is not None
    return child.ChildRun(
        handler_path=job.handler_path,
        run_id=run.id,
        job=run.job,
        scheduled_for=run.scheduled_for,
        attempt=run.attempt,
        idempotency_key=run.idempotency_key,
        payload=run.payload,
    )


def _rss(process: psutil.Process) -> int:
    try:
        total = process.memory_info().rss
        for kid in process.children(recursive=True):
            total += kid.memory_info().rss
    except psutil.Error:
        return 0
    return int(total)


async def _stop(process: BaseProcess) -> None:
    if process.is_alive():
        process.terminate()
        for _ in range(int(TERMINATE_GRACE / 0.05)):
            if not process.is_alive():
                break
            await asyncio.sleep(0.05)
        else:
            process.kill()
    process.join(timeout=1)
    process.close()
