"""One race harness for every queue contender: the same event loop, the same start signal,
the same drain check, and the time each of them takes, reported beside the rate.

Each contender's worker processes are spawned, connect, and report ready; then one signal
starts them all: the parent closes the write end of a pipe each child watches with the
event loop's own reader (`Gate`), so every loop wakes at once (under a millisecond here),
with no polling interval and no thread. A child also stops by a gate, and a parent that
dies closes both ends by itself, so no child waits forever.

The clock runs from "go" until the database shows no unfinished job, probed every `PROBE_S`.
What that costs is measured, not guessed: `start_s` is the latest child's wake-up after
"go", `drain_s` the time between the last probe that found work and the one that found
none (the end lies somewhere in it). Rounds last long enough to make both small
(`Round.overhead`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any, TypeVar

PROBE_S = 0.02
JOIN_S = 30.0
LOOPS = ("uvloop", "asyncio")
T = TypeVar("T")


def run_on(loop: str, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on `loop`: "uvloop" (as `cronlink worker` and pgqueuer's CLI do) or
    "asyncio" (the standard library's default loop)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


class Gate:
    """A one-shot signal from the parent to any number of spawned children: a pipe whose
    write end only the parent holds; closing it wakes every reader at once (end of file)."""

    def __init__(self, spawn: SpawnContext) -> None:
        self.reader, self._writer = spawn.Pipe(duplex=False)

    def open(self) -> None:
        """Wake every child waiting on this gate (idempotent)."""
        if not self._writer.closed:
            self._writer.close()

    def __getstate__(self) -> dict[str, Connection]:
        return {"reader": self.reader}  # a child never holds the write end

    def __setstate__(self, state: dict[str, Connection]) -> None:
        self.reader = state["reader"]

    def is_open(self) -> bool:
        return self.reader.poll(0)

    async def wait(self) -> None:
        """Return once the gate is open, woken by the running loop's reader."""
        loop = asyncio.get_running_loop()
        opened = loop.create_future()
        fd = self.reader.fileno()
        loop.add_reader(fd, _settle, opened)
        try:
            await opened
        finally:
            loop.remove_reader(fd)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True, slots=True)
class Signals:
    """What a child gets: `ready` to set once connected, `go` and `stop` to wait on, and
    `woke` to stamp (wall clock) when `go` woke it."""

    ready: Event
    go: Gate
    stop: Gate
    woke: Synchronized[float]

    async def started(self) -> bool:
        """Report ready and wait for "go"; False when told to stop first."""
        self.ready.set()
        await self.go.wait()
        self.woke.value = time.time()
        return not self.stop.is_open()


@dataclass(frozen=True, slots=True)
class Round:
    """One timed round: `runs` finished in `elapsed` seconds."""

    runs: int
    elapsed: float
    start_s: float
    drain_s: float

    @property
    def rate(self) -> float:
        return self.runs / self.elapsed

    @property
    def overhead(self) -> float:
        """The start and drain checks' share of the clock (goal: under 1%)."""
        return (self.start_s + self.drain_s) / self.elapsed

    def as_json(self) -> dict[str, float | int]:
        return {
            "runs": self.runs,
            "seconds": round(self.elapsed, 3),
            "runs_per_s": round(self.rate),
            "start_fraction": round(self.start_s / self.elapsed, 5),
            "drain_fraction": round(self.drain_s / self.elapsed, 5),
        }


Child = Callable[[Signals], object]


async def race(
    spawn: SpawnContext, children: Sequence[Child], runs: int, busy: Callable[[], Awaitable[bool]]
) -> Round:
    """Start `children` (each a picklable callable taking its `Signals`) on one "go", time
    them until `busy` says no job is left, then stop them and check they exited 0."""
    go, stop = Gate(spawn), Gate(spawn)
    signals = [Signals(spawn.Event(), go, stop, spawn.Value("d", 0.0)) for _ in children]
    processes: list[BaseProcess] = []
    try:
        for child, own in zip(children, signals, strict=True):
            processes.append(spawn.Process(target=child, args=(own,)))
            processes[-1].start()
        await _watch(lambda: _true(all(s.ready.is_set() for s in signals)), processes)
        began, wall = time.perf_counter(), time.time()
        go.open()
        last_busy = began
        while True:
            probed = time.perf_counter()
            if not await busy():
                break
            last_busy = probed
            _alive(processes)
            await asyncio.sleep(PROBE_S)
        ended = time.perf_counter()
    finally:
        go.open()
        stop.open()
        for stopping in processes:
            # Off the loop: it may serve what a worker's last act needs (an OTLP receiver).
            await asyncio.to_thread(stopping.join, JOIN_S)
            if stopping.is_alive():
                stopping.kill()
                stopping.join()
    codes = [process.exitcode for process in processes]
    if any(codes):
        raise RuntimeError(f"worker processes exited with {codes}")
    start_s = max(s.woke.value for s in signals) - wall
    return Round(runs, ended - began, max(0.0, start_s), ended - last_busy)


async def _true(value: bool) -> bool:
    return value


async def _watch(done: Callable[[], Awaitable[bool]], processes: Sequence[BaseProcess]) -> None:
    """Poll `done` until true; raise if a worker process dies meanwhile."""
    while not await done():
        _alive(processes)
        await asyncio.sleep(PROBE_S)


def _alive(processes: Sequence[BaseProcess]) -> None:
    if not all(process.is_alive() for process in processes):
        raise RuntimeError("a worker process died; its traceback is above")
