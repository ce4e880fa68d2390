"""The worker: claim runs of one tier, execute them under their limits, heartbeat, complete.

Delivery is at-least-once: a run whose worker dies keeps its lease until it expires, then
the scheduler's reaper queues it again. Completion is fenced by the lease token, so a
worker that lost its lease cannot overwrite the outcome of the attempt that replaced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import traceback
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cronlink.ai.ledger import StoreLedger
from cronlink.clock import Clock, SystemClock, iso_seconds
from cronlink.context import RunContext, RunLog
from cronlink.engine.committer import Committer
from cronlink.engine.http_target import HttpStatusError, ScrubbedClientError
from cronlink.engine.tiers import ChildFailed, HeavyTier, LightTier, MemoryLimitExceeded
from cronlink.errors import AddressRefusedError, UnknownJobError
from cronlink.jobs import new_run
from cronlink.observe import logs, metrics, spend, tracing
from cronlink.plurals import counted
from cronlink.policies.retry import Failure, GiveUp, Retry
from cronlink.records.runs import Reason, RunError, RunState, Spend, Tier, alive_role
from cronlink.scrubbing import Scrubber, configured
from cronlink.storable import escaped
from cronlink.store import ClaimRequest, Outcome

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cronlink.ai.models import Models
    from cronlink.context import AutomationAccess, ConnectionAccess
    from cronlink.jobs import Job
    from cronlink.observe.alert_job import Watch
    from cronlink.records.runs import Run
    from cronlink.store import Store

log = logging.getLogger("cronlink.worker")
ALIVE_EVERY = 30.0
"""Seconds between a worker's records that it is alive (`store.heartbeats`)."""


TRACEBACK_CHARS = 8000
ERROR_CHARS = 300


class Worker:
    def __init__(
        self,
        store: Store,
        jobs: Mapping[str, Job],
        tier: Tier,
        executor: LightTier | HeavyTier,
        *,
        clock: Clock | None = None,
        name: str | None = None,
        concurrency: int | None = None,
        lease: timedelta = timedelta(seconds=30),
        heartbeat: timedelta = timedelta(seconds=10),
        poll: float = 0.5,
        wakeup: asyncio.Event | None = None,
        on_enqueue: Callable[[Tier], None] | None = None,
        claim_batch: int | None = None,
        group_commit: bool = True,
        shutdown_grace: timedelta = timedelta(seconds=30),
        connections: ConnectionAccess | None = None,
        automations: AutomationAccess | None = None,
        alerts: Watch | None = None,
        ai: Models | None = None,
        metered: bool = True,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.tier = tier
        self.executor = executor
        self.clock = clock or SystemClock()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{tier.value}"
        default = 100 if tier is Tier.LIGHT else max(1, os.cpu_count() or 1)
        self.concurrency = concurrency or default
        self.lease = lease
        self.heartbeat = heartbeat
        self.poll = poll
        self.wakeup = wakeup or asyncio.Event()
        self.on_enqueue = on_enqueue
        # Several smaller claims instead of one per `concurrency`: while one group of runs
        # waits on its commit, the others execute (bench/queue_bench.py: +30% at 100).
        self.claim_batch = claim_batch or max(1, self.concurrency // 8)
        self.shutdown_grace = shutdown_grace
        self.connections = connections
        self.automations = automations
        self.alerts = alerts
        self.ai = None if ai is None else ai.keeping(StoreLedger(store, self.clock))
        """The declared chat models, each call admitted and recorded through the store."""
        self.metered = metered
        """Count attempts in the process's metrics and what each spends (off only to measure
        what that costs: bench/metrics_cost_bench.py)."""
        self._scrub = Scrubber([*configured(os.environ), *(ai.keys() if ai else [])])
        """What a run records (result, error, log lines) loses the secrets cronlink is
        given, the chat models' API keys among them."""
        self._active: dict[int, tuple[asyncio.Task[None], Run]] = {}
        self._stopping: dict[int, RunState] = {}
        self._completing: set[int] = set()
        """Runs whose attempt ended and is being recorded: no longer cancellable."""
        self._slot_freed = asyncio.Event()
        self._draining = False
        self._shutting_down = asyncio.Event()
        """Set when the worker starts to stop: long light runs (`ctx.stopping`) wind up."""
        self.committer = Committer(store, self.clock, self._refill, group=group_commit)
        self._alive_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and execute until `stop` is set, then let running attempts finish."""
        if self.metered:
            metrics.watch_worker_memory(self.tier)
        await self.alive()
        beat = asyncio.create_task(self._heartbeat(stop))
        await self.store.subscribe(self.tier, self.wakeup)
        try:
            while not stop.is_set():
                claimed = await self._claim_once()
                if not claimed:
                    await self._idle(stop)
        finally:
            await self._drain()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _claim_once(self) -> int:
        free = self.concurrency - len(self._active)
        if free <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()
            return 1
        try:
            limit = min(free, self.claim_batch)
            runs = await self.store.claim(self.name, self.tier, limit, self.lease, self.clock.now())
        except Exception:
            log.exception("claim failed; retrying")
            return 0
        for run in runs:
            self._start(run)
        return len(runs)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait for a wake-up, the next queued run's `not_before`, or the poll interval."""
        timeout = self.poll
        with contextlib.suppress(Exception):
            due = await self.store.next_due(self.tier)
            now = self.clock.now()
            # A run already due but not claimed waits on its job (overlap `queue`): poll.
            if due is not None and due > now:
                timeout = min(timeout, (due - now).total_seconds())
        waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self.wakeup)]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self.wakeup.clear()

    async def alive(self) -> None:
        """Record that a worker of this tier runs (`?wait=true` answers at once without)."""
        try:
            await self.store.heartbeats.beat(alive_role(self.tier), self.clock.now())
        except Exception:
            log.debug("could not record that the worker is alive", exc_info=True)
        self._alive_at = time.monotonic()

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.heartbeat.total_seconds())
            if time.monotonic() - self._alive_at >= ALIVE_EVERY:
                await self.alive()
            if not self._active:
                continue
            try:
                stop_ids = await self.store.extend_leases(
                    self.name, list(self._active), self.lease, self.clock.now()
                )
            except Exception:
                log.exception("heartbeat failed; leases may expire")
                continue
            for run_id in stop_ids:
                self._stop_run(run_id, RunState.CANCELLED)

    def _stop_run(self, run_id: int, state: RunState) -> None:
        entry = self._active.get(run_id)
        if entry is not None and run_id not in self._stopping and run_id not in self._completing:
            self._stopping[run_id] = state
            entry[0].cancel()

    async def _drain(self) -> None:
        """Stop claiming; let attempts finish within the grace, then hand them back queued."""
        self._draining = True
        self._shutting_down.set()
        if self._active:
            log.info(
                "waiting up to %gs for %s",
                self.shutdown_grace.total_seconds(),
                counted(len(self._active), "running attempt"),
            )
        deadline = time.monotonic() + self.shutdown_grace.total_seconds()
        while self._active:
            tasks = [task for task, _ in self._active.values()]
            left: float | None = deadline - time.monotonic()
            if left is not None and left <= 0:
                for run_id in list(self._active):
                    self._stop_run(run_id, RunState.QUEUED)
                left = None  # now wait for them to record that
            await asyncio.wait(tasks, timeout=left)

    def _start(self, run: Run) -> None:
        if self.metered:
            metrics.attempt_started(run, self.clock.now())
        task = asyncio.create_task(self._execute(run), name=f"cronlink-run-{run.id}")
        self._active[run.id] = (task, run)

    async def _execute(self, run: Run) -> None:
        """Run one attempt, record it, and hand the slot straight to the next claimed run."""
        claimed: list[Run] = []
        try:
            with tracing.attempt(run) as span:
                outcome = await self._timed_attempt(run)
                tracing.ended(span, outcome.state, outcome.error)
                self._completing.add(run.id)
                with tracing.span("cronlink.complete"):
                    claimed = await self.committer.finish(run, outcome)
            _tell(run, outcome)
            if self.metered:
                metrics.attempt_finished(run, outcome.state, outcome.duration_ms)
        except Exception:
            return
        finally:
            self._active.pop(run.id, None)
            self._stopping.pop(run.id, None)
            self._completing.discard(run.id)
            for following in claimed:
                self._start(following)
            if not claimed:
                self._slot_freed.set()

    def _refill(self, slots: int) -> ClaimRequest | None:
        if self._draining:
            return None
        return ClaimRequest(worker=self.name, tier=self.tier, limit=slots, lease=self.lease)

    async def _timed_attempt(self, run: Run) -> Outcome:
        started = time.monotonic()
        logbook = RunLog(run.job, run.id)
        counting = spend.spending() if self.metered else contextlib.nullcontext(Spend())
        with counting as spent, logs.attempt(run.id, run.job):
            outcome = await self._attempt(run, logbook)
        return _recorded(
            dataclasses.replace(
                outcome,
                duration_ms=int((time.monotonic() - started) * 1000),
                logs=tuple(logbook.lines),
                spend=spent,
            ),
            self._scrub,
        )

    async def _attempt(self, run: Run, logbook: RunLog) -> Outcome:
        try:
            job = self.jobs[run.job]
        except KeyError:
            error = UnknownJobError(run.job, [])
            return Outcome(state=RunState.FAILED, error=_error(error, "unknown_job"))
        ctx = RunContext(
            run_id=run.id,
            job=run.job,
            scheduled_for=run.scheduled_for,
            attempt=run.attempt,
            idempotency_key=run.idempotency_key,
            payload=run.payload,
            log=logbook,
            _enqueue=self._enqueue,
            _connections=self.connections,
            _automations=self.automations,
            _alerts=self.alerts,
            models=self.ai,
            clock=self.clock,
            stopping=self._shutting_down,
            egress=self.executor.egress,
        )
        try:
            async with asyncio.timeout(job.timeout.total_seconds()):
                attempt = await self.executor.execute(job, run, ctx)
        except asyncio.CancelledError:
            state = self._stopping.get(run.id)
            if state is None:
                raise
            if state is RunState.QUEUED:  # shutting down: another worker takes it over
                interrupted = RunError(
                    type="Interrupted", message="the worker shut down", reason="shutdown"
                )
                return Outcome(state=state, error=interrupted, retry_at=self.clock.now())
            return Outcome(
                state=state,
                error=RunError(type="Cancelled", message="cancel requested", reason="cancelled"),
            )
        except TimeoutError as error:
            limit = f"exceeded its timeout of {job.timeout.total_seconds():g}s"
            return self._failed(run, job, RunState.TIMED_OUT, error, "timeout", limit)
        except MemoryLimitExceeded as error:
            return self._failed(run, job, RunState.FAILED, error, "memory", retryable=False)
        except Exception as error:
            return self._failed(run, job, RunState.FAILED, error, "exception")
        return Outcome(
            state=RunState.SUCCEEDED, result=attempt.result, peak_memory=attempt.peak_memory
        )

    def _failed(
        self,
        run: Run,
        job: Job,
        state: RunState,
        error: BaseException,
        reason: str,
        message: str | None = None,
        retryable: bool = True,
    ) -> Outcome:
        status = error.status if isinstance(error, HttpStatusError) else None
        failure = Failure(
            type_names=_type_names(error),
            status=status,
            retry_after=error.retry_after if isinstance(error, HttpStatusError) else None,
            retryable=retryable and _retryable(error),
        )
        recorded = _error(error, "http_status" if status else reason, message)
        decision = job.retry.decide(run.attempt, failure, self.clock.now())
        if isinstance(decision, Retry):
            return Outcome(state=RunState.QUEUED, error=recorded, retry_at=decision.at)
        assert isinstance(decision, GiveUp)
        final = RunState.DEAD if decision.spent and run.max_attempts > 1 else state
        return Outcome(state=final, error=recorded)

    async def _enqueue(self, job: str, payload: Any, not_before: datetime | None) -> int:
        target = self.jobs.get(job)
        if target is None:
            raise UnknownJobError(job, [])
        request = new_run(
            target, Reason.ENQUEUE, payload=payload, not_before=not_before,
            traceparent=tracing.traceparent(),
        )  # fmt: skip
        run_id = await self.store.enqueue(request, self.clock.now())
        if self.on_enqueue is not None:
            self.on_enqueue(target.tier)
        return run_id


def _tell(run: Run, outcome: Outcome) -> None:
    """A WARNING for an attempt that failed and will be retried, an ERROR for a run that
    failed for good: the process log says what the runs table says, in every role."""
    error = outcome.error
    if error is None or error.reason in ("shutdown", "cancelled"):
        return
    excerpt = f"{error.type}: {error.message.splitlines()[0] if error.message else ''}"
    excerpt = excerpt if len(excerpt) <= ERROR_CHARS else excerpt[: ERROR_CHARS - 1] + "…"
    with logs.attempt(run.id, run.job):
        if outcome.state is RunState.QUEUED:
            at = iso_seconds(outcome.retry_at) if outcome.retry_at else "now"
            log.warning(
                "run %d of %s: attempt %d of %d failed (%s); retrying at %s",
                run.id, run.job, run.attempt, run.max_attempts, excerpt, at,
            )  # fmt: skip
        else:
            attempts = "attempt" if run.attempt == 1 else "attempts"
            log.error(
                "run %d of %s is %s after %d %s (%s)",
                run.id, run.job, outcome.state, run.attempt, attempts, excerpt,
            )  # fmt: skip


def _recorded(outcome: Outcome, scrub: Scrubber) -> Outcome:
    """The outcome as the store keeps it. The text a handler, a target's answer or an
    exception brought is scrubbed of secrets, and any NUL or lone surrogate in it escaped:
    the store refuses those, and a run whose ending cannot be written would run again."""

    def clean(text: str) -> str:
        return escaped(scrub(text) if scrub else text)

    error = outcome.error
    if error is not None:
        error = dataclasses.replace(
            error, message=clean(error.message), traceback=clean(error.traceback)
        )
    return dataclasses.replace(
        outcome,
        error=error,
        result=None if outcome.result is None else clean(outcome.result),
        logs=tuple((at, level, clean(line)) for at, level, line in outcome.logs),
    )


def _retryable(error: BaseException) -> bool:
    if isinstance(error, HttpStatusError):
        return error.retryable
    # A refused address stays refused until the configuration changes (by name: a heavy
    # run's process reports it as ChildFailed).
    return AddressRefusedError.__name__ not in _type_names(error)


def _type_names(error: BaseException) -> tuple[str, ...]:
    """Class names for `retry_on`: the original's, for errors re-raised on its behalf."""
    if isinstance(error, ChildFailed | ScrubbedClientError):
        return error.original_types
    return tuple(kind.__name__ for kind in type(error).__mro__)


def _error(error: BaseException, reason: str, message: str | None = None) -> RunError:
    if isinstance(error, ChildFailed):
        return RunError(
            type=error.original_types[0],
            message=str(error),
            traceback=error.trace[-TRACEBACK_CHARS:],
            reason=reason,
        )
    return RunError(
        type=_type_names(error)[0],
        message=message or str(error),
        traceback="".join(traceback.format_exception(error))[-TRACEBACK_CHARS:],
        reason=reason,
    )
