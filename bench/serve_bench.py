"""`POST /cron/{job}` under load: `cronlink serve` in its own process (uvicorn, one
worker), a load generator in another (aiohttp, C connections on loopback). Each request
is authenticated, queues a run and is audited. Reports requests/s and latency
percentiles; with `--flood`, as many callers with a wrong secret hammer the service at
the same time and the figures are the valid callers'. With `--slow-clients`, 127.0.0.1
holds 2,000 sockets that sent half a request head and 2,000 idle keep-alive ones, each
reopened about a second (`--reopen-after`) after the service closes it, while the valid
callers come from 127.0.0.2 and a few more ask `GET /healthz` (figures `healthz_*`).

Run: .venv/bin/python bench/serve_bench.py [--seconds S] [--concurrency C] [--flood]
     [--slow-clients [--reopen-after S]] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from queue_bench import fresh_database

SECRET = "bench-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
WHOLE_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
HELD = 2000


async def load(
    url: str, secret: str, seconds: float, concurrency: int, *, path: str = "/cron/ok",
    source: str = "127.0.0.1",
) -> tuple[list[float], int]:  # fmt: skip
    """The latencies of the answers `secret` should get, and how many others it got."""
    latencies: list[float] = []
    others = 0
    ends = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {secret}"}
    method, expected = ("POST", 202) if path.startswith("/cron/") else ("GET", 200)
    connector = aiohttp.TCPConnector(limit=concurrency, local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http:

        async def caller() -> None:
            nonlocal others
            while time.perf_counter() < ends:
                began = time.perf_counter()
                async with http.request(method, f"{url}{path}", headers=headers) as answer:
                    await answer.read()
                if secret != SECRET or answer.status == expected:
                    latencies.append(time.perf_counter() - began)
                else:
                    others += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies, others


async def hold(port: int, reopen_after: float) -> None:
    """`HELD` slow-head and `HELD` idle sockets from 127.0.0.1, each sending its head and
    then nothing, reopened about `reopen_after` seconds after the service closes it (give
    or take half: a slowloris tool does not reconnect all at once); until killed."""

    async def one(head: bytes) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(1)
                continue
            writer.write(head)
            with contextlib.suppress(OSError):
                await reader.read()
            writer.transport.abort()
            await asyncio.sleep(reopen_after * random.uniform(0.5, 1.5))

    await asyncio.gather(*(one(head) for head in (SLOW_HEAD, WHOLE_HEAD) for _ in range(HELD)))


def percentiles(
    prefix: str, answers: tuple[list[float], int], seconds: float
) -> dict[str, float | None]:
    """Figures of the expected answers; `refused`: how many got another status."""
    ordered = sorted(answers[0])
    return {
        f"{prefix}requests": len(ordered), f"{prefix}requests_per_s": round(len(ordered) / seconds),
        f"{prefix}p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        f"{prefix}p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1)
        if ordered else None,
        f"{prefix}refused": answers[1],
    }  # fmt: skip


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"{url}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the service did not start")


async def measure(url: str, args: argparse.Namespace) -> dict[str, float | None]:
    await wait_ready(url)
    # The held sockets push idle ones of 127.0.0.1 out: measured callers come from elsewhere.
    source = "127.0.0.2" if args.slow_clients else "127.0.0.1"
    await load(url, SECRET, 2, args.concurrency, source=source)  # warm up
    runs = [load(url, SECRET, args.seconds, args.concurrency, source=source)]
    if args.flood:
        runs.append(load(url, "wrong-" + SECRET, args.seconds, args.concurrency))
    if args.slow_clients:
        runs.append(load(url, SECRET, args.seconds, 4, path="/healthz", source=source))
    results = await asyncio.gather(*runs)
    figures = percentiles("", results[0], args.seconds)
    if args.slow_clients:
        figures |= percentiles("healthz_", results[-1], args.seconds)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--flood", action="store_true", help="wrong-secret callers at once")
    held = f"{HELD:,} slow-head and {HELD:,} idle sockets held from 127.0.0.1"
    parser.add_argument("--slow-clients", action="store_true", help=held)
    parser.add_argument("--reopen-after", type=float, default=1.0,
                        help="seconds before a held socket closed is reopened")  # fmt: skip
    parser.add_argument("--postgres", help="a PostgreSQL URL; the run uses a fresh schema")
    parser.add_argument("--hold", type=int, help=argparse.SUPPRESS)  # the holder process
    args = parser.parse_args()
    if args.hold:  # 4,000 sockets need more open files than the usual soft limit
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        asyncio.run(hold(args.hold, args.reopen_after))
        return
    with fresh_database(args.postgres) as database:
        (Path(os.environ.get("TMPDIR", "/tmp")) / "cronlink-serve-bench.toml").write_text(
            '[[jobs]]\nname = "ok"\nhandler = "cronlink.examples:heartbeat"\n'
            # The load comes from one address: lift the per-address and per-credential
            # rates, which are what a flood from one client would meet.
            "[serve]\naddress_rate = 1e9\naddress_burst = 1000000000\n"
            "credential_rate = 1e9\ncredential_burst = 1000000000\n"
        )
        config = Path(os.environ.get("TMPDIR", "/tmp")) / "cronlink-serve-bench.toml"
        env = {**os.environ, "CRON_SECRET": SECRET, "PYTHONPATH": str(ROOT / "src")}
        server = subprocess.Popen(
            [sys.executable, "-m", "cronlink", "serve", "--port", str(args.port),
             "--database-url", database, "--config", str(config)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # The held sockets come from their own process: their churn costs this one nothing.
        holder = subprocess.Popen(
            [sys.executable, __file__, "--hold", str(args.port),
             "--reopen-after", str(args.reopen_after)]
        ) if args.slow_clients else None  # fmt: skip
        try:
            result = asyncio.run(measure(f"http://127.0.0.1:{args.port}", args))
        finally:
            for process in (holder, server):
                if process is not None:
                    process.terminate()
                    process.wait(30)
    print(json.dumps({
        "benchmark": "serve", "engine": "postgresql" if args.postgres else "sqlite",
        "concurrency": args.concurrency, "flood_of_wrong_secrets": args.flood,
        "slow_clients": 2 * HELD if args.slow_clients else 0,
        **({"reopen_after_s": args.reopen_after} if args.slow_clients else {}), **result,
        "goal_requests_per_s": 2000, "goal_p99_ms": 50,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
