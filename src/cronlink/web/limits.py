"""Rate limits: a token bucket per key (a client address, a credential), and which
address a request comes from when proxies stand in front.

A bucket holds up to `burst` tokens and refills at `rate` per second; a call takes one,
or is told how long until one is there (the 429's Retry-After). With a store, buckets live
in the database (`store/rate_buckets.py`), so every `cronlink serve` on it, and one
started again, draws on the same bucket. This process takes up to `batch` tokens at a
time from the shared bucket and spends them without a database call; what it holds
lapses once the bucket would be full again, and a restarted process holds nothing, so
a fleet admits at most `batch - 1` calls per process beyond the limit, and is exact when
`batch` is 1 (bursts under 16). It keeps a copy of each bucket,
which can only be fuller than the shared one, and refuses on its own what that copy
refuses: a flood over its rate costs no database call.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi import Request

    from cronlink.store import Store

MAX_KEYS = 100_000
"""Buckets kept here; the least recently used go first (a flood of addresses cannot grow it)."""
FORGET_EVERY = 60.0
"""Seconds between two sweeps of the shared buckets that are full again."""
BATCH_SHARE = 8
"""A process takes at most burst / `BATCH_SHARE` tokens at a time from a shared bucket: what
one holds, and the others cannot have, is less than an eighth of the burst."""
_SLACK = 1e-9
"""Rounding: a call that fits exactly fits."""


class Limiter:
    """A rate limit named `name` (`address`, `credential`, `login`): its keys' buckets are
    `name:key` in `store`, or in this process alone without one."""

    def __init__(self, rate: float, burst: int, store: Store | None = None, name: str = "") -> None:
        self.interval = 1.0 / rate
        self.span = burst * self.interval
        """How far from full a bucket may get: `burst` calls' worth."""
        self.batch = max(1, burst // BATCH_SHARE)
        """Tokens asked of the shared bucket at a time."""
        self._store = store
        self._name = name
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """Per key: when its bucket would be full again, as far as this process knows, and
        how many tokens taken from the shared bucket are still to spend."""
        self._taking: dict[str, asyncio.Event] = {}
        """Keys whose tokens are being taken from the store: their other calls wait, so that
        one process holds one batch of a bucket at a time."""
        self._forgotten_at = 0.0

    async def wait(self, key: str, now: float | None = None) -> float:
        """Take a token for `key`: 0 if there was one, else the seconds until there is."""
        now = time.time() if now is None else now
        while (taking := self._taking.get(key)) is not None:
            await taking.wait()
        limit = self.span + _SLACK
        tat, held = self._buckets.pop(key, (now, 0))
        if tat <= now:
            held = 0  # the bucket is full again: tokens held would come on top of a burst
        start = max(min(tat, now + limit), now)  # a clock set back costs one interval
        if held:
            taken, held = True, held - 1
        elif start + self.interval - now > limit:
            taken, tat = False, start
        elif self._store is None:
            taken, tat = True, start + self.interval
        else:
            granted, tat = await self._take(key, limit, now)
            taken, held = granted > 0, max(granted - 1, 0)
        self._buckets[key] = (tat, held)
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        return 0.0 if taken else max(tat, now) + self.interval - now - self.span

    async def _take(self, key: str, limit: float, now: float) -> tuple[int, float]:
        assert self._store is not None
        taking = self._taking[key] = asyncio.Event()
        try:
            await self._forget(now)
            return await self._store.take_tokens(
                f"{self._name}:{key}", self.batch, self.interval, limit, now
            )
        finally:
            del self._taking[key]
            taking.set()

    async def _forget(self, now: float) -> None:
        if self._store is not None and now - self._forgotten_at >= FORGET_EVERY:
            self._forgotten_at = now
            await self._store.forget_buckets(now)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class Clients:
    """The caller's address: the peer's, unless the peer is a trusted proxy, in which case
    the nearest address in `X-Forwarded-For` that is not one (a client can prepend any
    address it likes; only what trusted proxies appended counts)."""

    def __init__(self, trusted: Sequence[str]) -> None:
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in trusted]

    def address(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        if not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop[:100]
        return peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)
