"""Which sockets `cronlink serve` keeps, so that slow or idle clients cannot crowd out the
others (the ASGI app only sees a request once its headers are whole: too late for this):

- a request's head (request line and headers) must arrive whole within `header_timeout`
  of the socket opening, or of the first byte of a later request on it: else 408, closed;
- one client address (an IPv6 /64) holds at most `per_address` sockets, the service at
  most `total`. A newcomer over either bound pushes out the oldest socket within that
  bound that is between requests (idle, or its head still arriving); when every one is in
  the middle of a request, the newcomer gets 503 and is closed. So one address cannot
  hold more than its share, and a well-behaved client is served even from a crowded one;
- sockets from `trusted` networks (a reverse proxy carries many clients on its own
  address) are bounded by `total` only: the proxy bounds each client.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from collections.abc import Iterable

    from cronlink.egress import Network


def _closing(status: str, error: str, *headers: str) -> bytes:
    """A whole response, written straight to the socket (no request reached the app)."""
    body = f'{{"error": "{error}"}}'
    lines = [f"HTTP/1.1 {status}", "content-type: application/json", *headers,
             f"content-length: {len(body)}", "connection: close", "", body]  # fmt: skip
    return "\r\n".join(lines).encode()


_TIMED_OUT = _closing("408 Request Timeout", "header_timeout")
_TOO_MANY = _closing("503 Service Unavailable", "too_many_sockets", "retry-after: 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class SocketLimits:
    header_timeout: float
    total: int
    per_address: int
    trusted: tuple[Network, ...] = ()


class Held(Protocol):
    """A socket as `Sockets` sees it."""

    @property
    def idle(self) -> bool:
        """Between requests: no request whose head is whole is being answered."""

    def push_out(self) -> None:
        """Close it to make room."""


class Sockets:
    """The open sockets, oldest first: all of them and each address's."""

    def __init__(self, limits: SocketLimits) -> None:
        self.limits = limits
        self._all: dict[Held, str | None] = {}
        self._by_address: dict[str, dict[Held, None]] = {}
        # Parsing an address costs more than the rest of `admit`; clients come back.
        self._key = functools.lru_cache(maxsize=4096)(self._key_of)

    def __len__(self) -> int:
        return len(self._all)

    def admit(self, socket: Held, peer: str | None) -> bool:
        """Take in `socket` from `peer` (its IP address), pushing out idle ones to make room;
        False when there is no room (it is not taken in)."""
        key = self._key(peer)
        mine = self._by_address.get(key, {}) if key is not None else {}
        if len(mine) >= self.limits.per_address and not self._push_out_one(mine):
            return False
        if len(self._all) >= self.limits.total and not self._push_out_one(self._all):
            return False
        self._all[socket] = key
        if key is not None:
            self._by_address.setdefault(key, {})[socket] = None
        return True

    def release(self, socket: Held) -> None:
        """Forget `socket` (closed); a second call does nothing."""
        if socket not in self._all:
            return
        key = self._all.pop(socket)
        if key is None:
            return
        mine = self._by_address[key]
        del mine[socket]
        if not mine:
            del self._by_address[key]

    def _push_out_one(self, among: Iterable[Held]) -> bool:
        for socket in among:
            if socket.idle:
                self.release(socket)
                socket.push_out()
                return True
        return False

    def _key_of(self, peer: str | None) -> str | None:
        """The address a bound applies to: None for a trusted proxy's (bounded by the
        total only). An IPv6 client usually owns a whole /64."""
        try:
            ip = ipaddress.ip_address(peer or "")
        except ValueError:
            return "unknown"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.limits.trusted):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) held by `sockets`; `guarded` binds them."""

    sockets: ClassVar[Sockets]
    _deadline: asyncio.TimerHandle | None = None
    _admitted = False

    @property
    def idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def push_out(self) -> None:
        self._disarm()
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admitted = self.sockets.admit(self, self.client[0] if self.client else None)
        if not self._admitted:
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._admitted:
            self.sockets.release(self)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.sockets.limits.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # A head stalled behind a request still being answered (pipelined) gets no 408 of
        # its own: it would land in the middle of that answer.
        if self.idle:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def guarded(sockets: Sockets) -> type[GuardedHttp]:
    """The protocol class for uvicorn's `Config(http=…)`, its sockets held by `sockets`."""
    namespace: dict[str, Any] = {"sockets": sockets}
    return type("GuardedHttp", (GuardedHttp,), namespace)
