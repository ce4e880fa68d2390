"""Cron engine throughput against cronsim and croniter, on the same mix of expressions and zones.

Prints JSON: for each engine, next-fire computations per second with a parsed expression
reused, and parse+first-fire per second; medians over several rounds.
Run: .venv/bin/python bench/cron_bench.py
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter
from cronsim import CronSim

from cronlink.cron import next_fire, parse

MIX = [
    ("* * * * *", "UTC"),
    ("*/5 * * * *", "UTC"),
    ("0 * * * *", "Europe/London"),
    ("0 2 * * *", "America/New_York"),
    ("30 9 * * 1-5", "Europe/Berlin"),
    ("0 0 1 * *", "Asia/Tokyo"),
    ("15 */3 * * *", "Australia/Sydney"),
    ("0 12 * * 0", "UTC"),
    ("0 0 L * *", "America/Chicago"),
    ("0 8 * * 1#2", "Australia/Lord_Howe"),
    ("*/10 9-17 * * mon-fri", "Asia/Kolkata"),
    ("0 0 1 1 *", "UTC"),
]
START = datetime(2025, 1, 1, tzinfo=UTC)
STEPS = 2_000
ROUNDS = 5


def reused_cronlink() -> int:
    for text, zone in MIX:
        tz = ZoneInfo(zone)
        expr = parse(text)
        at: datetime | None = START.astimezone(tz)
        for _ in range(STEPS):
            assert at is not None
            at = next_fire(expr, at, tz)
    return STEPS * len(MIX)


def reused_cronsim() -> int:
    for text, zone in MIX:
        it = CronSim(text, START.astimezone(ZoneInfo(zone)))
        for _ in range(STEPS):
            next(it)
    return STEPS * len(MIX)


def reused_croniter() -> int:
    for text, zone in MIX:
        it = croniter(text, START.astimezone(ZoneInfo(zone)))
        for _ in range(STEPS):
            it.get_next(datetime)
    return STEPS * len(MIX)


def parsed_cronlink() -> int:
    for text, zone in MIX:
        tz = ZoneInfo(zone)
        at = START.astimezone(tz)
        for _ in range(STEPS // 4):
            next_fire(parse(text), at, tz)
    return STEPS // 4 * len(MIX)


def parsed_cronsim() -> int:
    for text, zone in MIX:
        at = START.astimezone(ZoneInfo(zone))
        for _ in range(STEPS // 4):
            next(CronSim(text, at))
    return STEPS // 4 * len(MIX)


def parsed_croniter() -> int:
    for text, zone in MIX:
        at = START.astimezone(ZoneInfo(zone))
        for _ in range(STEPS // 4):
            croniter(text, at).get_next(datetime)
    return STEPS // 4 * len(MIX)


def rate(work: Callable[[], int]) -> float:
    rates = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        done = work()
        rates.append(done / (time.perf_counter() - began))
    return round(statistics.median(rates))


def main() -> None:
    result: dict[str, dict[str, float]] = {}
    for name, reused, parsed in [
        ("cronlink", reused_cronlink, parsed_cronlink),
        ("cronsim", reused_cronsim, parsed_cronsim),
        ("croniter", reused_croniter, parsed_croniter),
    ]:
        result[name] = {"next_per_s": rate(reused), "parse_and_next_per_s": rate(parsed)}
    ours, peer = result["cronlink"], result["cronsim"]
    keys = ("next_per_s", "parse_and_next_per_s")
    print(
        json.dumps(
            {
                "benchmark": "cron",
                "expressions": len(MIX),
                "results": result,
                "speedup_vs_cronsim": {key: round(ours[key] / peer[key], 2) for key in keys},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
