"""The attempts tally of `/metrics`: Prometheus' histogram rules (a bucket counts what is
at most its bound, cumulatively; +Inf counts all) over a plain-dict tally."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY

from cronlink.observe import metrics
from cronlink.records.runs import Overlap, Reason, Run, RunState, Tier


def run(job: str) -> Run:
    now = datetime.now(UTC)
    return Run(
        id=1, job=job, tier=Tier.HEAVY, reason=Reason.API, state=RunState.RUNNING,
        payload=None, scheduled_for=None, enqueued_at=now, not_before=now, attempt=1,
        max_attempts=3, overlap=Overlap.SKIP, idempotency_key="k",
    )  # fmt: skip


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_buckets_are_cumulative_and_bounds_inclusive() -> None:
    job = "tally-test"
    for ms in (5, 6, 100, 4_000_000):  # 5 ms sits on a bound; 4,000 s is past every bound
        metrics.attempt_finished(run(job), RunState.SUCCEEDED, ms)
    metrics.attempt_finished(run(job), RunState.QUEUED, None)  # a retry without a duration

    def bucket(le: str) -> float | None:
        return sample("cronlink_run_duration_seconds_bucket", job=job, tier="heavy", le=le)

    assert bucket("0.005") == 1
    assert bucket("0.01") == 2
    assert bucket("0.1") == 3
    assert bucket("3600.0") == 3
    assert bucket("+Inf") == 4
    assert sample("cronlink_run_duration_seconds_count", job=job, tier="heavy") == 4
    assert sample("cronlink_run_duration_seconds_sum", job=job, tier="heavy") == 4000.111
    ended = "cronlink_attempts_total"
    assert sample(ended, job=job, tier="heavy", state="succeeded") == 4
    assert sample(ended, job=job, tier="heavy", state="retrying") == 1
