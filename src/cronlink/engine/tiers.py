"""Where a run executes: light (asyncio task in the worker) or heavy (a child process).

The heavy tier is the one place work crosses into another process. The parent watches the
child's memory and kills it over its limit; cancelling the attempt (timeout, cancel
request, shutdown) terminates the child, then kills it if it does not exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import multiprocessing
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from cronlink.engine import child, http_target
from cronlink.errors import ConfigError, CronlinkError, carried
from cronlink.http_client import egress_of
from cronlink.observe import spend, tracing
from cronlink.records.runs import Spend

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    import aiohttp

    from cronlink.ai.ledger import Ledger
    from cronlink.context import RunContext
    from cronlink.egress import EgressPolicy
    from cronlink.jobs import Job
    from cronlink.records.runs import Run

RESULT_CHARS = 4000
TERMINATE_GRACE = 3.0
EXIT_GRACE = 0.5
"""How long a child that is done (or was asked to stop) may take to exit by itself."""


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
        self.egress = egress_of(session)

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


PRELOAD = ("cronlink.cli", "cronlink.engine.child", "cronlink.automations.jobs")
"""Every run's process executes the main module again (multiprocessing's rule); what that
imports must already be loaded for it to start fast: `cronlink.cli` is what the `cronlink`
command imports. (Python 3.11's fork server does not honour "__main__" here.)"""


class HeavyTier:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        sample_every: float = 0.05,
        preload: tuple[str, ...] = (),
    ) -> None:
        """`preload`: modules of heavy handlers, imported once by the fork server so that
        each run's process starts from them already loaded (about 7 ms instead of 450 ms
        on a 2-core machine, bench/event_latency_bench.py)."""
        self.session = session
        self.egress = egress_of(session)
        """Handed to each run's process: its sessions reach what the worker's reaches."""
        self.sample_every = sample_every
        self._context = multiprocessing.get_context("forkserver")
        # Only the server's first start reads this; later calls change nothing.
        traced = tracing.PRELOAD if tracing.enabled() else ()
        self._context.set_forkserver_preload([*PRELOAD, *traced, *preload])

    async def execute(self, job: Job, run: Run, ctx: RunContext) -> Attempt:
        if job.target is not None:
            return Attempt(result=await http_target.call(self.session, job.target, run))
        assert job.handler_path is not None
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=child.main,
            args=(_child_run(job, run, self.egress, ctx), theirs),
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
        # A message from the child wakes the loop at once (a step waiting on `take` or
        # `save` must not wait for the next memory sample); memory is sampled between.
        readable = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(pipe.fileno(), readable.set)
        try:
            return await self._serve(process, pipe, job, ctx, readable)
        finally:
            loop.remove_reader(pipe.fileno())

    async def _serve(
        self,
        process: BaseProcess,
        pipe: Connection,
        job: Job,
        ctx: RunContext,
        readable: asyncio.Event,
    ) -> Attempt:
        peak = 0
        assert process.pid is not None  # started
        meter = _Meter(process.pid, spend.current())
        next_sample = 0.0
        while True:
            readable.clear()
            while pipe.poll():
                message = pipe.recv()
                kind = message[0]
                if kind == "log":
                    ctx.log.lines.append(message[1:])
                elif kind == "enqueue":
                    pipe.send(await ctx.enqueue(*message[1:]))
                elif kind == "connections":
                    pipe.send(await _call(ctx.connections, _CONNECTION_CALLS, *message[1:]))
                elif kind == "automations":
                    pipe.send(await _call(ctx.automations, _AUTOMATION_CALLS, *message[1:]))
                elif kind == "ai":
                    pipe.send(await _call(_ledger(ctx), _AI_CALLS, *message[1:]))
                elif kind == "ai-spent":  # one way: the run's process goes on without a reply
                    await _ledger(ctx).record(*message[1:])
                elif kind == "ok":
                    _, result, child_peak, spent = message
                    meter.settle(spent)
                    return Attempt(result=encode_result(result), peak_memory=max(peak, child_peak))
                else:
                    _, type_name, text, trace, _peak, spent = message
                    meter.settle(spent)
                    raise ChildFailed(type_name, text, trace)
            if not process.is_alive() and not pipe.poll():
                raise ChildCrashed(f"the run's process exited with code {process.exitcode}")
            if time.monotonic() >= next_sample:
                next_sample = time.monotonic() + self.sample_every
                peak = max(peak, meter.sample())
                if peak > job.memory_limit:
                    process.kill()
                    raise MemoryLimitExceeded(
                        f"used {peak // 2**20} MiB, over the limit of "
                        f"{job.memory_limit // 2**20} MiB"
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(readable.wait(), next_sample - time.monotonic())


_CONNECTION_CALLS = frozenset({"credentials", "renew", "pause", "paused_until", "used", "resolve"})
_AUTOMATION_CALLS = frozenset({"take", "save", "sweep", "pending"})
_AI_CALLS = frozenset({"admit", "take"})


def _ledger(ctx: RunContext) -> Ledger:
    if ctx.models is None or ctx.models.ledger is None:
        raise ConfigError(f"job {ctx.job!r} has no chat models here")
    return ctx.models.ledger


async def _call(
    service: object, allowed: frozenset[str], method: str, args: tuple[Any, ...]
) -> tuple[Any, ...]:
    """Answer a heavy run's call to a service: ("ok", value) or ("error", *carried)."""
    if method not in allowed:
        return ("error", "CronlinkError", f"no such call {method!r}", {})
    try:
        return ("ok", await getattr(service, method)(*args))
    except CronlinkError as error:
        return ("error", *carried(error))


def _child_run(job: Job, run: Run, egress: EgressPolicy, ctx: RunContext) -> child.ChildRun:
    assert job.handler_path is not None
    models = ctx.models
    return child.ChildRun(
        handler_path=job.handler_path,
        run_id=run.id,
        job=run.job,
        scheduled_for=run.scheduled_for,
        attempt=run.attempt,
        idempotency_key=run.idempotency_key,
        payload=run.payload,
        egress=egress,
        ai=None if models is None else models.carried(),
        traceparent=tracing.traceparent(),
        tracing=tracing.carried(),
    )


class _Meter:
    """Samples a run's process: its memory for the limit, and for usage (when counted) its
    CPU time and memory integrated over time, kept current so that an attempt that is
    killed or times out still has what it spent."""

    def __init__(self, pid: int, spent: Spend | None) -> None:
        self.process: psutil.Process | None = None
        # A run that ends at once may be gone (reaped by the fork server) before it is
        # looked at: its result is in the pipe, and its own count comes with it.
        with contextlib.suppress(psutil.NoSuchProcess):
            self.process = psutil.Process(pid)
        self.spent = spent
        self._last = time.monotonic()

    def sample(self) -> int:
        if self.process is None:
            return 0
        rss = _rss(self.process)
        now = time.monotonic()
        if self.spent is not None:
            self.spent.memory_mib_s = (self.spent.memory_mib_s or 0.0) + rss / 2**20 * (
                now - self._last
            )
            with contextlib.suppress(psutil.Error):
                times = self.process.cpu_times()
                used = times.user + times.system + times.children_user + times.children_system
                self.spent.cpu_ms = max(self.spent.cpu_ms or 0, int(used * 1000))
        self._last = now
        return rss

    def settle(self, spent: tuple[int, int]) -> None:
        """The child's own count at its end: requests, and CPU time including the last
        stretch after the final sample."""
        if self.spent is not None:
            requests, cpu_ms = spent
            self.spent.requests += requests
            self.spent.cpu_ms = max(self.spent.cpu_ms or 0, cpu_ms)


def _rss(process: psutil.Process) -> int:
    try:
        total = process.memory_info().rss
        for kid in process.children(recursive=True):
            total += kid.memory_info().rss
    except psutil.Error:
        return 0
    return int(total)


async def _stop(process: BaseProcess) -> None:
    """Let a child that reported its result exit; terminate one that is still working
    (a timeout, a cancel, a shutdown), then kill it if it does not go."""
    if not await _exited(process, EXIT_GRACE):
        process.terminate()
        if not await _exited(process, TERMINATE_GRACE):
            process.kill()
    process.join(timeout=1)
    process.close()


async def _exited(process: BaseProcess, within: float) -> bool:
    """Wait up to `within` seconds for the process to end, woken by its sentinel."""
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(process.sentinel, ended.set)
    try:
        if process.is_alive():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), within)
    finally:
        loop.remove_reader(process.sentinel)
    return not process.is_alive()
