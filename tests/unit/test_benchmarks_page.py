"""docs/benchmarks.md is rendered from the benches' JSON, and is exactly what the committed
JSON renders: the page cannot drift from the data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
try:
    import render
    import report
finally:
    sys.path.remove(str(ROOT / "bench"))


def _queue(**contenders: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": {
            "cores": 2,
            "cpu": "Test CPU",
            "python": "3.11.7",
            "system": "Linux",
            "loadavg_at_start": [0.25, 0.5, 0.5],
            "measured_at": "2026-01-01 00:00 UTC",
        },
        "command": ".venv/bin/python bench/queue_bench.py --postgres URL",
        "benchmark": "queue",
        "engine": "postgresql",
        "loop": "uvloop",
        "durability": {"fsync": "on", "synchronous_commit": "on", "wal_sync_method": "fdatasync"},
        "contenders": contenders,
    }


def _cell(rate: int, overhead: float = 0.004) -> dict[str, dict[str, Any]]:
    return {"4": {"median_runs_per_s": rate, "max_overhead_fraction": overhead, "rounds": []}}


def test_a_row_carries_the_rivals_figures_machine_and_command() -> None:
    sample = _queue(
        batched_claims_and_group_commit=_cell(20_000),
        pgqueuer=_cell(16_000, overhead=0.02),
        procrastinate=_cell(1_000),
    )
    page = render.render({"queue_postgresql": sample})
    row = next(line for line in page.splitlines() if "batched claims" in line)
    assert "| 20,000 |" in row
    assert "pgqueuer 16,000 (checks 2.0% of the clock) (cronlink 1.25x)" in row
    assert "procrastinate 1,000 (cronlink 20.00x)" in row
    assert "2 cores, load 0.25" in row
    assert "`.venv/bin/python bench/queue_bench.py --postgres URL`" in row
    assert "`fsync=on`, `synchronous_commit=on`" in page
    assert "2026-01-01 00:00 UTC" in page
    assert render.REGENERATE in page


def test_an_unknown_bench_gets_a_row_per_figure() -> None:
    sample = {"benchmark": "sync", "engine": "sqlite", "records_per_s": 81234.5, "rounds": 3}
    page = render.render({"x": sample})
    assert "| sync (sqlite; rounds 3): records_per_s | 81,234.5 | — |" in page


def test_the_page_is_what_the_committed_json_renders() -> None:
    results = report.saved()
    assert {"queue_sqlite", "queue_postgresql", "latency_postgresql"} <= results.keys()
    assert (ROOT / "docs" / "benchmarks.md").read_text() == report.page(results), (
        "run `.venv/bin/python bench/report.py` to render docs/benchmarks.md again"
    )
