"""The dashboard with a million runs stored: render time of the overview, a job page, a
job page deep in its history and a run page, over N requests each, through a real server
(uvicorn on 127.0.0.1, a logged-in session) on SQLite or PostgreSQL.

The runs belong to 8 jobs and are spread evenly over the last 30 days (so the overview's
24-hour window holds about 1/30 of them); durations vary, some runs failed, a few are dead.
They are written by one INSERT … SELECT over a generated series, in the database itself.
On PostgreSQL the table is then vacuumed and analyzed, as autovacuum leaves it after a bulk
load; SQLite is measured as cronlink leaves it (no ANALYZE).

Run: .venv/bin/python bench/dashboard_bench.py [--runs N] [--requests N] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import psycopg
from sqlalchemy import Connection, text

from cronlink import App, RunContext, control
from cronlink.records.api_tokens import Scope
from cronlink.store import Store, store_for
from cronlink.store.schema import to_micros
from cronlink.web.server import serving
from queue_bench import fresh_database

JOBS = 8
SPREAD = timedelta(days=30)
GOAL_P95_MS = 200

app = App()


async def _noop(ctx: RunContext) -> None:
    return None


for n in range(JOBS):
    app.job(f"*/{n + 1} * * * *", name=f"job-{n}")(_noop)

_SERIES = {
    "sqlite": "WITH RECURSIVE series(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM series "
    "WHERE i < :runs)",
    "postgresql": "WITH series(i) AS (SELECT generate_series(1, CAST(:runs AS BIGINT)))",
}
_INSERT = """
INSERT INTO runs (job, tier, reason, state, enqueued_at, not_before, attempt, max_attempts,
                  overlap, cancel_requested, started_at, finished_at, duration_ms)
SELECT 'job-' || (i % {jobs}), 'light', 'schedule',
       CASE WHEN i % 997 = 0 THEN 'dead' WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
       :start + i * :step, :start + i * :step, 1, 3, 'skip', :no,
       :start + i * :step + 1000, :start + i * :step + 1000 + ((i * 7919) % 5000) * 1000,
       (i * 7919) % 5000 + 10
FROM series
"""


async def fill(store: Store, runs: int) -> float:
    """Store `runs` finished runs; seconds taken."""
    began = time.perf_counter()
    now = datetime.now(UTC)
    start = to_micros(now - SPREAD)
    step = to_micros(now) - start
    params = {"runs": runs, "start": start, "step": step // runs, "no": False}

    def work(c: Connection) -> None:
        c.execute(text(_SERIES[c.dialect.name] + _INSERT.format(jobs=JOBS)), params)

    await store.transact(work, write=True)
    return time.perf_counter() - began


def settle(postgres: str | None) -> None:
    if postgres is not None:
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute("VACUUM ANALYZE runs")


async def timings(http: aiohttp.ClientSession, url: str, requests: int) -> dict[str, float]:
    spent = []
    for _ in range(requests + 3):  # the first few warm caches and are left out
        began = time.perf_counter()
        async with http.get(url, allow_redirects=False) as answer:
            await answer.read()
            assert answer.status == 200, answer.status
        spent.append((time.perf_counter() - began) * 1000)
    ordered = sorted(spent[3:])
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def measure(store: Store, requests: int) -> dict[str, dict[str, float]]:
    _, secret = await control.create_token(store, "bench", Scope.READ, None, datetime.now(UTC))
    async with (
        serving(store, app, "127.0.0.1", 0) as url,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        async with http.get(url + "/dashboard/login") as page:
            found = re.search(r'name="nonce" value="([^"]+)"', await page.text())
            assert found is not None
        form = {"nonce": found[1], "token": secret}
        async with http.post(url + "/dashboard/login", data=form) as answer:
            assert answer.status == 200, answer.status
        middle = (await store.last_runs(["job-3"]))["job-3"].id // 2
        pages = {
            "overview": "/dashboard",
            "job": "/dashboard/jobs/job-3",
            "job_deep_page": f"/dashboard/jobs/job-3?before_id={middle}",
            "run": f"/dashboard/runs/{middle}",
        }
        return {name: await timings(http, url + path, requests) for name, path in pages.items()}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--postgres", help="a PostgreSQL URL; the run uses a fresh schema")
    args = parser.parse_args()
    with fresh_database(args.postgres) as database:
        store = store_for(database)
        await store.open()
        try:
            seconds = await fill(store, args.runs)
            settle(database if args.postgres else None)
            result = await measure(store, args.requests)
        finally:
            await store.close()
    worst = max(r["p95_ms"] for r in result.values())
    print(json.dumps({
        "benchmark": "dashboard", "engine": "postgresql" if args.postgres else "sqlite",
        "runs": args.runs, "fill_seconds": round(seconds, 1), "requests": args.requests,
        **result, "worst_p95_ms": worst, "goal_p95_ms": GOAL_P95_MS,
        "met": worst <= GOAL_P95_MS,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
