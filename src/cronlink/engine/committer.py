"""Group commit for a worker's completions.

Attempts that end while a commit is in flight are recorded together in the next one, and
that transaction also claims a run for every slot it frees. Under light load every
completion is its own transaction (nothing waits); under a burst, transactions, thread
hops and lock round trips are shared by many runs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cronlink.store import ClaimRequest, Done

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.clock import Clock
    from cronlink.records.runs import Run
    from cronlink.store import Outcome, Store

log = logging.getLogger("cronlink.worker")


@dataclass(slots=True)
class _Waiting:
    done: Done
    future: asyncio.Future[list[Run]] = field(default_factory=asyncio.Future)


class Committer:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        claim: Callable[[int], ClaimRequest | None],
        *,
        group: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.claim = claim
        """How to refill `n` freed slots (None while draining)."""
        self.group = group
        self._queue: list[_Waiting] = []
        self._flushing = False

    async def finish(self, run: Run, outcome: Outcome) -> list[Run]:
        """Record `run`'s attempt; returns the runs claimed to take its slot."""
        assert run.lease_token is not None
        waiting = _Waiting(done=Done(run_id=run.id, lease_token=run.lease_token, outcome=outcome))
        if not self.group:
            await self._commit([waiting])
            return await waiting.future
        self._queue.append(waiting)
        if not self._flushing:
            self._flushing = True
            asyncio.create_task(self._flush())  # noqa: RUF006 - it resolves every waiter
        return await waiting.future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)
        finally:
            self._flushing = False

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            result = await self.store.complete(
                [w.done for w in batch], self.clock.now(), self.claim(len(batch))
            )
        except Exception as error:
            log.exception(
                "could not record %d finished attempts; their leases will expire", len(batch)
            )
            for waiting in batch:
                if not waiting.future.done():  # its task may have been cancelled meanwhile
                    waiting.future.set_exception(error)
            return
        claimed = list(result.claimed)
        for waiting, held in zip(batch, result.held, strict=True):
            if not held:
                log.warning(
                    "run %d lost its lease before completing; outcome discarded",
                    waiting.done.run_id,
                )
            share, claimed = claimed[:1], claimed[1:]
            if not waiting.future.done():
                waiting.future.set_result(share)
            elif share:
                log.warning("run %d was claimed for a slot that went away; its lease will expire",
                            share[0].id)  # fmt: skip
