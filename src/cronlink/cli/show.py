"""Rendering runs for people (rich) and scripts (JSON)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from cronlink.cli.options import print_json, run_async
from cronlink.clock import iso_seconds
from cronlink.runtime import open_store

if TYPE_CHECKING:
    from datetime import datetime

    from cronlink.config import Settings
    from cronlink.records.ai_calls import AiCall
    from cronlink.records.runs import Run

console = Console(width=None if Console().is_terminal else 160)


def run_dict(run: Run) -> dict[str, Any]:
    data = dataclasses.asdict(run)
    data.pop("lease_token")
    return data


def cut(text: str, limit: int = 80) -> str:
    """`text` in at most `limit` characters: cut after a whole word, marked with "…"."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip(" ,;:(") + "…"


def when(value: datetime | None) -> str:
    return "" if value is None else iso_seconds(value)


def show_run(settings: Settings, run_id: int, as_json: bool) -> None:
    async def fetch() -> tuple[Run, list[tuple[datetime, int, str, str]], list[AiCall]]:
        store = await open_store(settings)
        try:
            run = await store.get_run(run_id)
            return run, await store.run_logs(run_id), await store.ai.of_run(run_id)
        finally:
            await store.close()

    run, logs, calls = run_async(fetch())
    if as_json:
        print_json({
            **run_dict(run), "logs": [list(line) for line in logs],
            "ai_calls": [dataclasses.asdict(c) | {"at": when(c.at)} for c in calls],
        })  # fmt: skip
        return
    table = Table(show_header=False, title=f"run {run.id}")
    for label, value in [
        ("job", run.job),
        ("state", run.state.value),
        ("reason", run.reason.value),
        ("tier", run.tier.value),
        ("attempt", f"{run.attempt} of {run.max_attempts}"),
        ("scheduled for", when(run.scheduled_for)),
        ("enqueued", when(run.enqueued_at)),
        ("started", when(run.started_at)),
        ("finished", when(run.finished_at)),
        ("duration", "" if run.duration_ms is None else f"{run.duration_ms} ms"),
        ("peak memory", "" if run.peak_memory is None else f"{run.peak_memory // 2**20} MiB"),
        ("worker", run.worker or ""),
        ("idempotency key", run.idempotency_key),
        ("result", run.result or ""),
    ]:
        table.add_row(label, value)
    if run.error is not None:
        table.add_row("error", f"{run.error.type}: {run.error.message} [{run.error.reason}]")
    console.print(table)
    if run.error is not None and run.error.traceback:
        click.echo(run.error.traceback)
    if calls:
        console.print(_calls_table(calls))
    for at, attempt, level, text in logs:
        click.echo(f"{when(at)} #{attempt} {level:7} {text}")


def _calls_table(calls: list[AiCall]) -> Table:
    """A run's calls to chat models, attempt by attempt."""
    table = Table("attempt", "model", "at", "answered", "requests", "input tokens",
                  "output tokens", "cost $", title="calls to chat models")  # fmt: skip
    for c in calls:
        table.add_row(str(c.attempt), c.model, when(c.at), "yes" if c.answered else "no",
                      str(c.requests), f"{c.input_tokens:,}", f"{c.output_tokens:,}",
                      f"{c.cost_usd:,.6f}")  # fmt: skip
    return table
