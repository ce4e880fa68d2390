"""docs/benchmarks.md from the benchmarks' JSON: one row per measure, each with its rivals'
figures from the same run, the machine it ran on and the command that made it.

Pure text from data (no clock, no file access), so the page can be checked against the
committed JSON: the same JSON always renders the same page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

Result = Mapping[str, Any]
Row = tuple[str, str, str]
"""What is measured, cronlink's figure, the rivals' figures in the same run."""

REGENERATE = (
    ".venv/bin/python bench/report.py --run --postgres postgresql://postgres@127.0.0.1:5432/test"
)
RENDER = ".venv/bin/python bench/report.py"
MODES = {
    "one_run_per_transaction": "one run per transaction",
    "batched_claims_and_group_commit": "batched claims + group commit",
}
RIVALS = ("pgqueuer", "procrastinate")
DURABILITY = {
    "sqlite": "SQLite in WAL mode with `synchronous=NORMAL`: a commit is written to the WAL "
    "but not fsynced; the WAL is synced at checkpoints. A crash of the process loses nothing "
    "committed; a power loss may roll back the last commits (the file stays consistent).",
    "postgresql": "PostgreSQL with `fsync=on` and `synchronous_commit=on`: each commit waits "
    "until its WAL is flushed to disk, for cronlink and both rivals alike (their tables are "
    "checked to be logged, not `UNLOGGED`). Batched completions share one flush.",
}
COSTS = (
    ("cronlink, one run per transaction", "a run is one row updated in place: one `UPDATE` "
     "claims it, and one transaction marks it done and claims the next (one statement each)"),
    ("cronlink, batched claims + group commit", "the same row: one `UPDATE` claims up to "
     "100 runs; completions that end together are marked done by one `UPDATE` in one "
     "transaction, which claims as many runs as it frees"),
    ("pgqueuer", "one statement claims up to 50 jobs and logs them as picked; one statement "
     "per buffer flush deletes the finished jobs and inserts a log row for each (delete + log)"),
    ("procrastinate", "one statement claims one job, a second statement finishes it (two "
     "statements a job); triggers add an event row at each change of state"),
)  # fmt: skip


def render(results: Mapping[str, Result], minutes: float | None = None) -> str:
    """The page for `results` (file stem → JSON, in the page's order); `minutes`: how long
    the run took."""
    rows = [(stem, row) for stem, result in results.items() for row in _rows(result)]
    lines = [
        "# Benchmarks",
        "",
        f"Generated from `bench/results/*.json` by `{RENDER}`; do not edit by hand.",
        "To measure everything again and regenerate this page (install `.[test,bench]`):",
        "",
        "```sh",
        REGENERATE,
        "```",
        "",
        *_duration(minutes),
        *_quick(results),
        "Each row's figures come from one run of one bench: the rivals' ran right after",
        "cronlink's, on the same machine and database server. Compare figures within a row, not",
        "across rows: the machines and their load differ (the load average when the run began",
        "is in each row; on 2 cores, a load above 2 means other work shared the machine).",
        "",
        "| measure | cronlink | rivals, same run | machine | command |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {measure} | {ours} | {theirs} | {_machine(results[stem])} | {_command(results[stem])} |"
        for stem, (measure, ours, theirs) in rows
    ]
    lines += ["", *_terms(results), "", "## Runs", ""]
    for stem, result in results.items():
        lines += _run(stem, result)
    return "\n".join(lines).rstrip() + "\n"


def _duration(minutes: float | None) -> list[str]:
    if minutes is None:
        return []
    return [f"The runs behind this page took {minutes:.0f} minutes in all.", ""]


def _quick(results: Mapping[str, Result]) -> list[str]:
    quick = [stem for stem, result in results.items() if result.get("quick")]
    if not quick:
        return []
    return [
        f"**Rough figures:** {len(quick)} of these {len(results)} runs used short settings "
        "(`--quick`), which prove that the benches work, not how fast cronlink is (see each "
        "run's settings and load under Runs).",
        "",
    ]


def _rows(result: Result) -> Iterator[Row]:
    yield from ROWS.get(str(result.get("benchmark")), _generic_rows)(result)


def _queue_rows(result: Result) -> Iterator[Row]:
    engine = "SQLite" if result["engine"] == "sqlite" else "PostgreSQL"
    table: Mapping[str, Mapping[str, Any]] = result["contenders"]
    for mode, label in MODES.items():
        for workers, cell in table.get(mode, {}).items():
            ours = cell["median_runs_per_s"]
            rivals = []
            for rival in RIVALS:
                theirs = table.get(rival, {}).get(workers)
                if theirs is not None:
                    n = theirs["median_runs_per_s"]
                    rivals.append(f"{rival} {n:,}{_overhead(theirs)} (cronlink {ours / n:.2f}x)")
            measure = f"{engine} queue, no-op runs/s, {label}, {workers} worker"
            measure += "s" if workers != "1" else ""
            yield measure, f"{ours:,}{_overhead(cell)}", "; ".join(rivals) or "—"


def _overhead(cell: Mapping[str, Any]) -> str:
    """Flag a figure whose start and drain checks took 1% of its clock or more."""
    share = float(cell["max_overhead_fraction"])
    return f" (checks {share:.1%} of the clock)" if share >= 0.01 else ""


def _latency_rows(result: Result) -> Iterator[Row]:
    rate = result["rate_per_s"]
    rounds = result["achieved_rate_per_s_each_round"]
    reached = ", ".join(f"{r:,.0f}" for r in rounds)
    offered = f"{rate:,}/s offered (reached {reached}/s"
    offered += ": short of it, so not the named load)" if min(rounds) < 0.99 * rate else ")"
    for key, what in (
        ("median_round_ms", "enqueue → handler's first line"),
        ("median_round_to_claim_ms", "enqueue → claim sent (`started_at`)"),
    ):
        ms = result[key]
        yield (
            f"PostgreSQL latency, {what}, {offered}",
            f"p50 {ms['p50']:g} ms, p99 {ms['p99']:g} ms",
            "—",
        )


def _cron_rows(result: Result) -> Iterator[Row]:
    figures: Mapping[str, Mapping[str, float]] = result.get("results", {})
    ours = figures.get("cronlink", {})
    for key, what in (("next_per_s", "parsed once"), ("parse_and_next_per_s", "parse + next")):
        if key in ours:
            rivals = "; ".join(
                f"{name} {their[key]:,.0f} (cronlink {ours[key] / their[key]:.1f}x)"
                for name, their in figures.items()
                if name != "cronlink"
            )
            yield f"next fire times/s, {what}", f"{ours[key]:,.0f}", rivals or "—"
    worst = result.get("worst_case")
    if worst:
        case = worst["worst"]
        yield (
            f"slowest next-fire search of {worst['searches']:,} (worst / p99)",
            f"{worst['worst_ms']:g} / {worst['p99_ms']:g} ms "
            f"(`{case['expression']}` in {case['zone']})",
            "—",
        )


META = {"benchmark", "machine", "command", "engine", "durability", "duration_s", "quick"}


def _generic_rows(result: Result) -> Iterator[Row]:
    """One row per figure of a JSON this page has no special reading for; its settings and
    goals (the other leaves) go in each row's description."""
    leaves = list(_leaves({k: v for k, v in result.items() if k not in META}))
    measures = [(path, value) for path, value in leaves if _is_measure(path)]
    settings = [f"{path} {_figure(value)}" for path, value in leaves if not _is_measure(path)]
    name = str(result.get("benchmark", "?"))
    context = [str(result["engine"])] if "engine" in result else []
    name += f" ({'; '.join(context + settings)})" if context or settings else ""
    for path, value in measures:
        yield f"{name}: {path}", _figure(value), "—"


MEASURES = (
    "median", "p50", "p95", "p99", "p100", "max", "min", "per_s", "_ms", "seconds", "percent",
    "mib", "rss", "cost", "worst", "earliest", "ratio", "speedup", "overhead", "cores",
    "lost", "failed",
)  # fmt: skip


def _is_measure(path: str) -> bool:
    return not path.startswith("goal") and any(hint in path for hint in MEASURES)


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _leaves(inner, f"{path}.{key}" if path else str(key))
    else:
        yield path, value


def _figure(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value).replace("|", "\\|")
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"


def _machine(result: Result) -> str:
    machine = result.get("machine", {})
    load = machine.get("loadavg_at_start", ["?"])[0]
    return f"{machine.get('cores', '?')} cores, load {load}"


def _command(result: Result) -> str:
    return f"`{result.get('command', '?')}`"


def _terms(results: Mapping[str, Result]) -> list[str]:
    queues = [r for r in results.values() if r.get("benchmark") == "queue"]
    lines = [
        "## How the queue contenders are compared",
        "",
        "Every contender runs through `bench/race.py`: its worker processes connect and report",
        "ready, then one signal starts them all (the parent closes a pipe each worker's event",
        "loop watches: no polling interval), on the same event loop "
        f"({', '.join(sorted({str(r.get('loop')) for r in queues})) or 'uvloop'}). "
        "The clock stops when",
        "the database shows no unfinished job. A sizing round (not counted) makes each counted",
        "round last long enough that the start and the drain checks stay under 1% of its clock;",
        "a figure where they did not is marked with their share.",
        "",
        "What one run costs each contender:",
        "",
        "| contender | per run |",
        "|---|---|",
        *(f"| {who} | {what} |" for who, what in COSTS),
        "",
        "Durability, as each run read it through cronlink's connection:",
        "",
    ]
    engines = sorted({str(r["engine"]): r for r in queues if "durability" in r}.items())
    for engine, result in engines:
        settings = ", ".join(f"`{k}={v}`" for k, v in result["durability"].items())
        lines += [f"- {settings}. {DURABILITY.get(engine, '')}".rstrip()]
    return lines


def _run(stem: str, result: Result) -> list[str]:
    machine = result.get("machine", {})
    load = ", ".join(str(x) for x in machine.get("loadavg_at_start", []))
    quick = " Short settings (`--quick`): proves the bench works, figures are rough." * bool(
        result.get("quick")
    )
    took = f", took {result['duration_s']:.0f} s" if "duration_s" in result else ""
    return [
        f"### {stem}",
        "",
        f"`{result.get('command', '?')}`: {machine.get('measured_at', '?')}{took}, on "
        f"{machine.get('cores', '?')} cores ({machine.get('cpu', '?')}), Python "
        f"{machine.get('python', '?')}, {machine.get('system', '?')}; load average at start "
        f"{load}.{quick}",
        "",
    ]


ROWS: dict[str, Callable[[Result], Iterator[Row]]] = {
    "queue": _queue_rows,
    "enqueue_to_start_latency": _latency_rows,
    "cron": _cron_rows,
}
