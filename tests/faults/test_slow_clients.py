"""Slow and idle clients cannot take `cronlink serve` from the others: the real service on
loopback (SQLite), 2,000 sockets that sent half a request head and 2,000 idle keep-alive
ones held from 127.0.0.1, while well-behaved clients call from 127.0.0.2 and from the
crowded address itself. Every address in 127.0.0.0/8 is this machine's on Linux."""

from __future__ import annotations

import asyncio
import json
import re
import resource
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiohttp
import pytest

from tests.faults.processes import Role

pytestmark = pytest.mark.slow

SECRET = "slow-clients-secret-0123456789"
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
WHOLE_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
HELD = 2000
PER_ADDRESS = 100
PATIENCE = 30  # seconds: a bound on waiting, far above what any answer needs


@pytest.fixture(autouse=True)
def open_files() -> Iterator[None]:
    """Room for the 4,000 sockets this process holds (a usual soft limit is 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * HELD if hard == resource.RLIM_INFINITY else min(3 * HELD, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@asynccontextmanager
async def serving(folder: Path, header_timeout: str) -> AsyncIterator[str]:
    """`cronlink serve` on a free port of 127.0.0.1; its base URL."""
    config = folder / "cronlink.toml"
    config.write_text(
        '[[jobs]]\nname = "ok"\nhandler = "cronlink.examples:heartbeat"\n'
        f'[serve]\nheader_timeout = "{header_timeout}"\n'
        f"max_sockets_per_address = {PER_ADDRESS}\n"
        # What is under test is sockets, not request rates.
        "address_rate = 1e9\naddress_burst = 1000000000\n"
    )
    role = Role(  # reads ./cronlink.toml
        ("serve", "--port", "0"), cwd=folder,
        env={"CRON_SECRET": SECRET, "DATABASE_URL": f"sqlite:///{folder / 'cronlink.db'}"},
    )  # fmt: skip
    role.start()
    try:
        yield await _url_of(role)
    finally:
        assert role.stop() == 0, role.output()


async def _url_of(role: Role) -> str:
    async with asyncio.timeout(PATIENCE):
        while not (found := re.search(r"serving on (http://[\d.:]+)", role.output())):
            assert role.alive(), role.output()
            await asyncio.sleep(0.05)
    return found[1]


class Held:
    """A socket that sent `head` and then nothing; what the service sent back once it
    closed the socket."""

    def __init__(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.head = head
        self.writer = writer
        self.received = asyncio.ensure_future(self._until_closed(reader))

    @classmethod
    async def open(cls, url: str, head: bytes, source: str = "127.0.0.1") -> Held:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        writer.write(head)
        return cls(head, reader, writer)

    @staticmethod
    async def _until_closed(reader: asyncio.StreamReader) -> bytes:
        received = b""
        with suppress(ConnectionError):  # a reset after the answer: it was closed all the same
            while chunk := await reader.read(65536):
                received += chunk
        return received

    @property
    def closed(self) -> bool:
        return self.received.done()

    def abort(self) -> None:
        self.received.cancel()
        self.writer.transport.abort()


@asynccontextmanager
async def crowd(url: str) -> AsyncIterator[list[Held]]:
    """2,000 slow-head and 2,000 idle keep-alive sockets from 127.0.0.1, all closed after."""
    held: list[Held] = []

    async def one(head: bytes) -> None:
        with suppress(ConnectionError):  # pushed out before it was accepted
            held.append(await Held.open(url, head))

    try:
        async with asyncio.timeout(PATIENCE):
            await asyncio.gather(*(one(h) for h in (SLOW_HEAD, WHOLE_HEAD) for _ in range(HELD)))
        yield held
    finally:
        for socket in held:
            socket.abort()
        await asyncio.gather(*(s.received for s in held), return_exceptions=True)


async def answer(url: str, method: str, path: str, source: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {SECRET}"}
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    timeout = aiohttp.ClientTimeout(total=PATIENCE)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        http.request(method, url + path, headers=headers) as reply,
    ):
        return reply.status, await reply.text()


async def test_a_crowd_from_one_address_leaves_room_for_everyone(tmp_path: Path) -> None:
    async with serving(tmp_path, header_timeout="10m") as url, crowd(url) as held:
        for source in ("127.0.0.2", "127.0.0.1"):
            status, _ = await answer(url, "GET", "/healthz", source)
            assert status == 200, source
            status, body = await answer(url, "POST", "/cron/ok", source)
            assert status == 202, (source, body)
        # The header bound is far away: only the per-address bound closes slow sockets,
        # without an answer or with 503 (idle ones also meet the keep-alive timeout).
        slow = [s for s in held if s.head == SLOW_HEAD]
        still_open = {s.received for s in slow}
        async with asyncio.timeout(PATIENCE):
            while len(still_open) > PER_ADDRESS:
                _, still_open = await asyncio.wait(still_open, return_when=asyncio.FIRST_COMPLETED)
        answers = {s.received.result().partition(b"\r\n")[0] for s in slow if s.closed}
        assert answers <= {b"", b"HTTP/1.1 503 Service Unavailable"}


async def test_a_request_head_not_whole_in_time_closes_its_socket(tmp_path: Path) -> None:
    async with serving(tmp_path, header_timeout="2s") as url:
        silent = await Held.open(url, SLOW_HEAD, source="127.0.0.3")
        trickling = await Held.open(url, SLOW_HEAD, source="127.0.0.3")
        second = await Held.open(url, WHOLE_HEAD + b"GET /healthz HTTP/1.1\r\n", "127.0.0.3")
        try:
            async with asyncio.timeout(PATIENCE):
                while not trickling.closed:  # a byte every half second: never whole
                    trickling.writer.write(b"a")
                    await asyncio.sleep(0.5)
                replies = await asyncio.gather(silent.received, trickling.received)
                first_and_then = await second.received
            for reply in replies:
                line, _, body = reply.partition(b"\r\n")
                assert line == b"HTTP/1.1 408 Request Timeout"
                assert json.loads(body.rpartition(b"\r\n\r\n")[2]) == {"error": "header_timeout"}
            # A keep-alive socket: its first request was answered, its second head was not
            # whole in time.
            assert first_and_then.startswith(b"HTTP/1.1 200 OK")
            assert first_and_then.count(b"HTTP/1.1 408 Request Timeout") == 1
            status, _ = await answer(url, "GET", "/healthz", "127.0.0.3")
            assert status == 200
        finally:
            for socket in (silent, trickling, second):
                socket.abort()
