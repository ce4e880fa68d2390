"""`POST /cron/{job}` under load: `cronlink serve` in its own process (uvicorn, one
worker), a load generator in another (aiohttp, C connections on loopback). Each request
is authenticated, queues a run and is audited. Reports requests/s and latency
percentiles; with `--flood`, as many callers with a wrong secret hammer the service at
the same time and the figures are the valid callers'.

Run: .venv/bin/python bench/serve_bench.py [--seconds S] [--concurrency C] [--flood]
     [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from queue_bench import fresh_database

SECRET = "bench-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


async def load(url: str, secret: str, seconds: float, concurrency: int) -> list[float]:
    latencies: list[float] = []
    ends = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {secret}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def caller() -> None:
            while time.perf_counter() < ends:
                began = time.perf_counter()
                async with http.post(f"{url}/cron/ok", headers=headers) as answer:
                    await answer.read()
                    if secret == SECRET:
                        assert answer.status == 202, answer.status
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies


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


async def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    await wait_ready(url)
    await load(url, SECRET, 2, args.concurrency)  # warm up
    runs = [load(url, SECRET, args.seconds, args.concurrency)]
    if args.flood:
        runs.append(load(url, "wrong-" + SECRET, args.seconds, args.concurrency))
    valid = (await asyncio.gather(*runs))[0]
    ordered = sorted(valid)
    return {
        "requests": len(valid), "requests_per_s": round(len(valid) / args.seconds),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--flood", action="store_true", help="wrong-secret callers at once")
    parser.add_argument("--postgres", help="a PostgreSQL URL; the run uses a fresh schema")
    args = parser.parse_args()
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
        try:
            result = asyncio.run(measure(f"http://127.0.0.1:{args.port}", args))
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps({
        "benchmark": "serve", "engine": "postgresql" if args.postgres else "sqlite",
        "concurrency": args.concurrency, "flood_of_wrong_secrets": args.flood, **result,
        "goal_requests_per_s": 2000, "goal_p99_ms": 50,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
