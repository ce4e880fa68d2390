"""Memory: `cronlink run` idle with 10,000 schedules, RSS of the process and its children.

Starts the real command on a generated cronlink.toml, waits for it to settle, samples RSS.
Prints JSON with the median of the samples. Run: .venv/bin/python bench/memory_bench.py
With `--migrated`, the database is brought to the newest schema first (`cronlink db
upgrade`), as on every start but the first: the figure leaves out migrating a new database.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def config(schedules: int, folder: Path) -> str:
    lines = [f'database_url = "sqlite:///{folder / "bench.db"}"']
    for i in range(schedules):
        lines += [
            "[[jobs]]",
            f'name = "job-{i}"',
            'handler = "cronlink.examples:heartbeat"',
            f'schedule = "{i % 60} {i % 24} * * *"',
        ]
    return "\n".join(lines) + "\n"


def rss(process: psutil.Process) -> int:
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        total += child.memory_info().rss
    return int(total)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=8)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--migrated", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "cronlink.toml").write_text(config(args.schedules, folder))
        if args.migrated:
            command = [sys.executable, "-m", "cronlink", "db", "upgrade"]
            subprocess.run(command, cwd=folder, check=True, capture_output=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "cronlink", "run"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(args.settle)
            assert proc.poll() is None, "cronlink run exited"
            watched = psutil.Process(proc.pid)
            samples = []
            for _ in range(args.samples):
                samples.append(rss(watched))
                time.sleep(1)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    mib = statistics.median(samples) / 2**20
    print(
        json.dumps(
            {
                "benchmark": "memory_idle",
                "schedules": args.schedules,
                "migrated": args.migrated,
                "median_rss_mib": round(mib, 1),
                "goal_mib": 128,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
