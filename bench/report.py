"""Run the benchmarks and render docs/benchmarks.md from what they print.

    .venv/bin/python bench/report.py                 # render the page from bench/results/
    .venv/bin/python bench/report.py --run --postgres URL   # measure everything, then render
    .venv/bin/python bench/report.py --run --quick --only queue_sqlite,cron   # a few, short

`--run` runs each bench as its own process, from the repository's root, and saves the
JSON it prints as bench/results/NAME.json, with the machine, the command and how long it
took (a bench that does not say them itself gets them here). Without `--postgres`, the
benches that need PostgreSQL are left out and their saved JSON kept. `--check` renders
without writing and fails if the page on disk differs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machine import command, machine
from render import render

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
PG = "--postgres"


@dataclass(frozen=True, slots=True)
class Bench:
    """One saved result: `script` run with `args` (or `quick` under `--quick`); `PG` in
    them stands for the PostgreSQL URL."""

    name: str
    script: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()

    def argv(self, quick: bool, postgres: str | None) -> list[str] | None:
        args = list(self.quick if quick else self.args)
        if PG in args:
            if postgres is None:
                return None
            args.insert(args.index(PG) + 1, postgres)
        return [f"bench/{self.script}", *args]


QUEUE_QUICK = ("--runs", "500", "--seconds", "1", "--rounds", "1", "--workers", "1,2")
BENCHES = (
    Bench("cron", "cron_bench.py"),
    Bench("queue_sqlite", "queue_bench.py", (), QUEUE_QUICK),
    Bench("queue_postgresql", "queue_bench.py", (PG,), (*QUEUE_QUICK, PG)),
    Bench("latency_postgresql", "latency_bench.py", (PG,), ("--seconds", "3", "--rounds", "1", PG)),
    Bench("scheduler_sqlite", "scheduler_bench.py", (), ("--schedules", "10000", "--rounds", "1")),
    Bench(
        "scheduler_postgresql",
        "scheduler_bench.py",
        (PG,),
        ("--schedules", "10000", "--rounds", "1", PG),
    ),
    Bench("firing_delay", "firing_delay_bench.py", (), ("--jobs", "200", "--seconds", "5")),
    Bench("memory", "memory_bench.py", (), ("--samples", "1", "--settle", "3")),
    Bench("refresh_sqlite", "refresh_bench.py", (), ("--connections", "1000", "--rounds", "1")),
    Bench("health_sqlite", "health_bench.py", (), ("--connections", "500", "--rounds", "1")),
    Bench(
        "poll_sqlite",
        "poll_bench.py",
        (),
        ("--automations", "5000", "--connections", "100", "--seconds", "15"),
    ),
    Bench("event_latency", "event_latency_bench.py", (), ("--seconds", "10")),
    Bench("serve_sqlite", "serve_bench.py", (), ("--seconds", "5")),
    Bench("serve_postgresql", "serve_bench.py", (PG,), ("--seconds", "5", PG)),
    Bench("dashboard_sqlite", "dashboard_bench.py", (), ("--runs", "20000", "--requests", "20")),
    Bench(
        "metrics_cost",
        "metrics_cost_bench.py",
        ("--in-process",),
        ("--in-process", "--runs", "2000", "--rounds", "1"),
    ),
    Bench("sync", "sync_bench.py", (), ("--records", "2000", "--rounds", "1")),
)


def run(bench: Bench, argv: list[str], quick: bool) -> dict[str, Any] | None:
    """Run one bench and return its JSON, stamped with where, how and how long (None, with
    its error shown, if it failed: the others still run)."""
    stamp = machine()  # the load before this bench starts, not after the previous one
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode:
        print(f"{bench.name} failed ({done.returncode}):\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    result = parse(done.stdout)
    result.setdefault("machine", stamp)
    result.setdefault("command", command(argv))
    result["duration_s"] = round(time.monotonic() - began, 1)
    result["quick"] = quick and bench.quick != bench.args
    return result


def parse(stdout: str) -> dict[str, Any]:
    """The JSON object a bench prints (lines before it, if any, are progress)."""
    start = 0 if stdout.startswith("{") else stdout.index("\n{") + 1
    value, _ = json.JSONDecoder().raw_decode(stdout[start:])
    assert isinstance(value, dict)
    return value


def saved() -> dict[str, dict[str, Any]]:
    """Every saved result, by name, in the order of `BENCHES` (then any other, by name)."""
    order = {bench.name: n for n, bench in enumerate(BENCHES)}
    paths = sorted(RESULTS.glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.stem))
    return {path.stem: json.loads(path.read_text()) for path in paths}


def page(results: dict[str, dict[str, Any]]) -> str:
    """The page for `results`, with the total time their runs took."""
    minutes = sum(float(r.get("duration_s", 0)) for r in results.values()) / 60
    return render(results, minutes if minutes else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="measure before rendering")
    parser.add_argument("--quick", action="store_true", help="short settings, rough figures")
    parser.add_argument(PG, help="a PostgreSQL URL, for the benches that need one")
    parser.add_argument(
        "--only", help="comma-separated names: " + ", ".join(b.name for b in BENCHES)
    )
    parser.add_argument("--check", action="store_true", help="fail if the page is not current")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {b.name for b in BENCHES}
    unknown = wanted - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    failed = []
    if args.run:
        RESULTS.mkdir(exist_ok=True)
        for bench in BENCHES:
            argv = bench.argv(args.quick, args.postgres)
            if bench.name in wanted and argv is not None:
                print(f"{bench.name}: {' '.join(argv)}", file=sys.stderr, flush=True)
                result = run(bench, argv, args.quick)
                if result is None:
                    failed.append(bench.name)
                    continue
                (RESULTS / f"{bench.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = page(saved())
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            raise SystemExit(f"{PAGE.relative_to(ROOT)} is not what {RESULTS.name}/ renders")
        return
    PAGE.write_text(text)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (their saved results, if any, are kept)")


if __name__ == "__main__":
    main()
