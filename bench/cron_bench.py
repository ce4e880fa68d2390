"""Cron engine throughput against cronsim and croniter, on the same mix of expressions and zones,
and cronlink's worst case: how long one next-fire search can take.

Prints JSON: for each engine, next-fire computations per second with a parsed expression
reused, and parse+first-fire per second; medians over several rounds. Then `worst_case`:
the slowest and 99th-percentile next-fire search (each the best of three runs, or one run
when it takes a second or more) over adversarial expressions (ones that match only hours
some zone skips, or days that come once in decades) in 24 zones that jump in every way
there is, and random expressions in random zones.
Run: .venv/bin/python bench/cron_bench.py [--worst-only]
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from cronsim import CronSim

from cronlink.cron import next_fire, parse
from cronlink.errors import CronSyntaxError
from machine import stamped

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


ADVERSARIAL = [
    "* * 2 * 3 0#2",  # only the hour the United States skip: never fires there
    "* 2 * 3 0#2",
    "* 2 8-14 3 */7",
    "* * 2 * 3 0L",  # only the hour the European Union skips
    "* 1 * 3 0L",  # London, Dublin
    "* 2 * 10 0#1",  # Sydney, Lord Howe
    "* 0 * 9 0#2",  # Santiago (clocks jump at midnight)
    "* 0 * 3 0#2",  # Havana
    "* 45-59 2 * 9 0L",  # Chatham's 02:45
    "*/7 1-2 * 3 0L",  # Troll's two hours
    "* * 0 30 12 *",  # Apia's skipped day (2011)
    "0 0 29 2 */7",  # February 29th on a Sunday: 40 years apart around 2100
    "0 0 LW * */7",  # the last weekday of a month that is a Sunday: never
    "30 2 * * *",
    "*/30 1 * * *",
]
ZONES = [
    "America/New_York", "America/Chicago", "America/Denver", "America/Toronto",
    "America/Havana", "America/Santiago", "America/Sao_Paulo", "America/St_Johns",
    "Europe/London", "Europe/Dublin", "Europe/Berlin", "Europe/Paris", "Europe/Madrid",
    "Africa/Casablanca", "Asia/Gaza", "Asia/Tehran", "Australia/Sydney",
    "Australia/Lord_Howe", "Pacific/Auckland", "Pacific/Chatham", "Pacific/Apia",
    "Antarctica/Troll", "Asia/Kathmandu", "UTC",
]  # fmt: skip
"""Zones that jump in every way there is: at 00:00, 01:00, 02:00 or 02:45, by 30 minutes,
an hour or two, backwards (Dublin), by a whole day (Apia), with Ramadan (Casablanca, Gaza)."""
STARTS = [datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 11, 2, 5, 30, tzinfo=UTC)]


def _random_expression(rng: random.Random) -> str:
    def pick(values: list[str]) -> str:
        return rng.choice(values)

    second = pick(["", "", "*", "0", "*/15", "59"])
    minute = pick(["*", "0", "*/5", "30", "0-59/7", "45-59"])
    hour = pick(["*", "0", "1", "2", "3", "1-3", "*/6", "23"])
    dom = pick(["*", "*", "L", "LW", "15W", "1", "29", "31", "*/2", "8-14", "*/29"])
    month = pick(["*", "*", "2", "3", "9", "10", "11", "3,11", "*/4"])
    dow = pick(["*", "*", "0", "*/7", "1-5", "0#2", "6#5", "5L", "0L", "1#1", "SAT,SUN"])
    return " ".join(f for f in (second, minute, hour, dom, month, dow) if f)


def worst_case(samples: int = 3000) -> dict[str, object]:
    """Slowest and 99th-percentile next-fire search, adversarial and random cases."""
    zones = sorted(zoneinfo.available_timezones())
    rng = random.Random(19)
    cases = [(text, zone, start) for text in ADVERSARIAL for zone in ZONES for start in STARTS]
    cases += [
        (_random_expression(rng), rng.choice(zones), START + timedelta(days=rng.randrange(3650)))
        for _ in range(samples)
    ]
    timings: list[tuple[float, str, str]] = []
    refused = 0
    for text, zone, start in cases:
        try:
            expr = parse(text)
        except CronSyntaxError:
            refused += 1  # cronlink refuses an expression no day can match
            continue
        tz = ZoneInfo(zone)
        laps: list[float] = []
        while len(laps) < 3 and sum(laps) < 1:  # one lap will do for a search of seconds
            began = time.perf_counter()
            next_fire(expr, start, tz)
            laps.append(time.perf_counter() - began)
        timings.append((min(laps), text, zone))
    timings.sort()
    worst = timings[-1]
    return {
        "searches": len(timings),
        "refused_at_parse": refused,
        "worst_ms": round(worst[0] * 1000, 3),
        "worst": {"expression": worst[1], "zone": worst[2]},
        "p99_ms": round(timings[int(len(timings) * 0.99)][0] * 1000, 3),
        "median_ms": round(timings[len(timings) // 2][0] * 1000, 3),
    }


def main() -> None:
    where = stamped({"benchmark": "cron"})  # the load as the measurement begins
    if "--worst-only" in sys.argv:
        print(json.dumps(where | {"worst_case": worst_case()}, indent=2))
        return
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
            where
            | {
                "expressions": len(MIX),
                "results": result,
                "speedup_vs_cronsim": {key: round(ours[key] / peer[key], 2) for key in keys},
                "worst_case": worst_case(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
