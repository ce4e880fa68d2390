"""What an attempt spends, for usage and cost: outbound requests through cronlink's HTTP
client, and for heavy runs the CPU time and memory-seconds of their process.

The worker opens a `Spend` around each attempt; the requests made anywhere inside it (the
handler, tasks it starts, an HTTP target, a step calling a provider) find it through a
context variable, so light runs sharing one session are still told apart.
"""

from __future__ import annotations

from contextvars import ContextVar
from types import SimpleNamespace

import aiohttp

from cronlink.records.runs import Spend

_current: ContextVar[Spend | None] = ContextVar("cronlink_spend", default=None)


class spending:
    """Count what the code run inside spends. A class, not a generator: it is entered for
    every attempt, and costs a third as much."""

    __slots__ = ("_spend", "_token")

    def __enter__(self) -> Spend:
        self._spend = Spend()
        self._token = _current.set(self._spend)
        return self._spend

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


def current() -> Spend | None:
    """The attempt's `Spend`, when called inside one."""
    return _current.get()


async def _request_started(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: object
) -> None:
    spend = _current.get()
    if spend is not None:
        spend.requests += 1


def request_counter() -> aiohttp.TraceConfig:
    """Counts each request a session makes against the attempt making it."""
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_request_started)
    return trace
