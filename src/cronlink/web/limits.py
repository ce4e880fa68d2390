"""Rate limits: a token bucket per key (a client address, a credential), and which
address a request comes from when proxies stand in front.

A bucket holds up to `burst` tokens and refills at `rate` per second; a call takes one,
or is told how long until one is there (the 429's Retry-After). Buckets live in this
process: each `cronlink serve` limits what reaches it.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi import Request

MAX_KEYS = 100_000
"""Buckets kept; the least recently used go first (a flood of addresses cannot grow it)."""


class Limiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, key: str, now: float | None = None) -> float:
        """Take a token for `key`: 0 if there was one, else the seconds until there is."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            waited = 0.0
        else:
            self._buckets[key] = (tokens, now)
            waited = (1 - tokens) / self.rate
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        return waited


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
