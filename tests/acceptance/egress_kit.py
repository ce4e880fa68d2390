"""For the SSRF guard's tests: a resolver that answers from a table (no name leaves the
process) and a tripwire on every socket connect and name lookup, so that a test fails if
anything is dialled or looked up outside 127.0.0.0/8."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_address
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from cronlink.context import RunContext
from cronlink.http_client import new_session

HOME = IPv4Network("127.0.0.0/8")


class TableResolver(AbstractResolver):
    """Answers from `table`: a name to its addresses (space-separated), or to a list of
    answers given to successive lookups, the last one repeated (a rebinding name)."""

    def __init__(self, table: Mapping[str, str | list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        entry = self.table[host]
        answers = [entry] if isinstance(entry, str) else entry
        answer = answers[min(self.lookups.count(host), len(answers) - 1)]
        self.lookups.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                proto=0,
                flags=socket.AI_NUMERICHOST,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
            )
            for address in answer.split()
        ]

    async def close(self) -> None:
        pass


@dataclass
class Tripwire:
    connects: list[tuple[str, int]] = field(default_factory=list)
    """Every TCP connect attempted while the test ran (host, port)."""
    crossed: list[str] = field(default_factory=list)
    """What went for outside 127.0.0.0/8: must stay empty."""

    def check(self, host: str, what: str) -> None:
        bare = host.partition("%")[0]
        try:
            home = ip_address(bare) in HOME
        except ValueError:
            home = bare == "localhost"
        if not home:
            self.crossed.append(f"{what} {host}")
            raise AssertionError(f"tripwire: {what} {host} (outside 127.0.0.0/8)")


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tripwire]:
    """Fails the test at any connect or lookup outside 127.0.0.0/8, where it happens and
    again at the end (in case the code under test swallowed the first failure)."""
    wire = Tripwire()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple):
            wire.connects.append((str(address[0]), int(address[1])))
            wire.check(str(address[0]), "connect to")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if isinstance(address, tuple):
            wire.connects.append((str(address[0]), int(address[1])))
            wire.check(str(address[0]), "connect to")
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            wire.check(host.decode() if isinstance(host, bytes) else str(host), "look up")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield wire
    assert wire.crossed == []


@asynccontextmanager
async def serving(routes: list[web.RouteDef]) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 with `routes`; yields its base URL."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def egress_seen(ctx: RunContext) -> dict[str, Any]:
    """A job handler (light or heavy) that reports the policy its run was given."""
    return {
        "allow_private": ctx.egress.allow_private,
        "networks": [str(network) for network in ctx.egress.networks],
    }


def arm_tripwire(event: Any, ctx: Any) -> str:
    """An automation `call` step: from here on, this process (a heavy run's) cannot connect
    outside 127.0.0.0/8; a step that tries fails with the tripwire's AssertionError."""
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple):
            Tripwire().check(str(address[0]), "connect to")
        real_connect(sock, address)

    socket.socket.connect = connect  # type: ignore[method-assign, assignment]
    return "armed"


async def fetch_private(ctx: RunContext) -> int:
    """A heavy job handler calling a private address with a session of its own."""
    arm_tripwire(None, None)
    async with new_session(ctx.egress) as session, session.get("http://10.9.8.7/") as response:
        return response.status
