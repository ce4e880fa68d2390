"""Every path that queues a run writes the same row for the same `NewRun`: the Core
statement, each engine's plain SQL for the API and for firing (`store.run_insert`)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from cronlink.records.audit import AuditEntry
from cronlink.records.runs import NewRun, Overlap, Reason, Run, Tier
from cronlink.store import Store, Tick
from cronlink.store.run_insert import BOUND, FIXED, NAMES, raw_values, values

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RUN = NewRun(
    job="j", tier=Tier.HEAVY, reason=Reason.SCHEDULE, payload={"é": [1, None]},
    scheduled_for=NOW, not_before=NOW + timedelta(seconds=5), max_attempts=3,
    overlap=Overlap.QUEUE,
)  # fmt: skip


def _line(run_id: int, deduplicated: bool) -> AuditEntry:
    return AuditEntry(at=NOW, actor="t", action="cron.run", target="j", client="c", outcome="ok")


def _row(run: Run) -> dict[str, object]:
    found = dataclasses.asdict(run)
    for varies in ("id", "idempotency_key", "scheduled_for", "not_before"):
        found.pop(varies)
    return found


async def test_every_path_writes_the_same_run(store: Store) -> None:
    fired = await store.record_ticks([Tick(run=RUN)], [], NOW)
    enqueued = await store.enqueue(dataclasses.replace(RUN, scheduled_for=None), NOW)
    audited, _ = await store.audit.enqueue(
        dataclasses.replace(RUN, scheduled_for=None, not_before=None), NOW, _line
    )
    runs = [await store.get_run(i) for i in (fired[RUN.job, NOW], enqueued, audited)]
    assert [_row(r) for r in runs[1:]] == [_row(runs[0])] * 2
    assert [r.not_before for r in runs] == [RUN.not_before, RUN.not_before, NOW]
    assert [r.scheduled_for for r in runs] == [NOW, None, None]


def test_a_new_runs_values_are_its_columns() -> None:
    assert sorted(values(RUN, NOW)) == sorted(NAMES)
    assert sorted(raw_values(RUN, 0)) == sorted(BOUND) == sorted(set(NAMES) - set(FIXED))
