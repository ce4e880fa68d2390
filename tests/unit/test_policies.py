"""Pure policies: retry decisions, misfire plans, overlap judgements, durations."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from cronlink.durations import format_duration, parse_duration
from cronlink.policies.misfire import Misfire, plan
from cronlink.policies.overlap import Due, when_due
from cronlink.policies.retry import Failure, GiveUp, Retry, RetryPolicy
from cronlink.records.runs import Overlap, Reason, Run, RunState, Tier

NOW = datetime(2025, 1, 1, tzinfo=UTC)
BOOM = Failure(type_names=("ValueError", "Exception"))


def test_backoff_grows_with_full_jitter_within_bounds() -> None:
    policy = RetryPolicy(
        max_attempts=10, min_backoff=timedelta(seconds=1), max_backoff=timedelta(seconds=60)
    )
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (5, 16), (8, 60), (9, 60)]:
        delays = []
        for _ in range(200):
            decision = policy.decide(attempt, BOOM, NOW, rng)
            assert isinstance(decision, Retry)
            delays.append((decision.at - NOW).total_seconds())
        assert min(delays) >= 1
        assert max(delays) <= ceiling
        if ceiling > 2:
            assert max(delays) - min(delays) > (ceiling - 1) / 2  # spread: full jitter


def test_gives_up_when_attempts_are_spent() -> None:
    assert RetryPolicy(max_attempts=2).decide(2, BOOM, NOW) == GiveUp(spent=True)


def test_retry_on_filters_by_type_and_status() -> None:
    policy = RetryPolicy(max_attempts=5, retry_on=("TimeoutError", 503))
    assert policy.decide(1, BOOM, NOW) == GiveUp(spent=False)
    assert isinstance(policy.decide(1, Failure(type_names=("TimeoutError",)), NOW), Retry)
    assert isinstance(policy.decide(1, Failure(type_names=("HTTPStatus",), status=503), NOW), Retry)
    assert policy.decide(1, Failure(type_names=("HTTPStatus",), status=500), NOW) == GiveUp(
        spent=False
    )


def test_not_retryable_failures_are_never_retried() -> None:
    failure = Failure(type_names=("MemoryLimit",), retryable=False)
    assert RetryPolicy(max_attempts=5).decide(1, failure, NOW) == GiveUp(spent=False)


def test_retry_after_is_honoured() -> None:
    failure = Failure(type_names=("HTTPStatus",), status=429, retry_after=timedelta(seconds=120))
    decision = RetryPolicy(max_attempts=3).decide(1, failure, NOW)
    assert isinstance(decision, Retry)
    assert decision.at >= NOW + timedelta(seconds=120)


def instants(n: int, step: timedelta = timedelta(minutes=1)) -> list[datetime]:
    return [NOW - step * (n - 1 - i) for i in range(n)]


def test_misfire_latest_runs_one() -> None:
    planned = plan(instants(5), NOW, Misfire.LATEST, timedelta(hours=1))
    assert [missed for _, missed in planned] == [True, True, True, True, False]


def test_misfire_all_within_grace() -> None:
    planned = plan(instants(5), NOW, Misfire.ALL, timedelta(minutes=2))
    assert [missed for _, missed in planned] == [True, True, False, False, False]


def test_misfire_skip_only_on_time() -> None:
    assert plan(instants(3), NOW, Misfire.SKIP, timedelta(hours=1))[-1][1] is False
    late = plan(instants(3), NOW + timedelta(minutes=5), Misfire.SKIP, timedelta(hours=1))
    assert all(missed for _, missed in late)


def test_latest_beyond_grace_is_missed() -> None:
    planned = plan(instants(2), NOW + timedelta(hours=2), Misfire.LATEST, timedelta(hours=1))
    assert all(missed for _, missed in planned)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5), (45, 45)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["30x", "", "h", "1h 3", "-5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(minutes=60)) == "1h"
    assert format_duration(timedelta(seconds=90)) == "90s"


def _due_run(overlap: Overlap, reason: Reason, scheduled: bool = True) -> Run:
    return Run(
        id=2, job="j", tier=Tier.LIGHT, reason=reason, state=RunState.QUEUED, payload=None,
        scheduled_for=NOW if scheduled else None, enqueued_at=NOW, not_before=NOW, attempt=1,
        max_attempts=1, overlap=overlap, idempotency_key="k",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("overlap", "reason", "scheduled", "due"),
    [
        (Overlap.ALLOW, Reason.SCHEDULE, True, Due.START),
        (Overlap.QUEUE, Reason.MANUAL, False, Due.WAIT),
        (Overlap.SKIP, Reason.SCHEDULE, True, Due.SKIP),
        (Overlap.SKIP, Reason.API, True, Due.SKIP),  # an external scheduler naming its instant
        (Overlap.SKIP, Reason.API, False, Due.START),
        (Overlap.SKIP, Reason.MANUAL, False, Due.START),
        (Overlap.REPLACE, Reason.SCHEDULE, True, Due.REPLACE),
        (Overlap.REPLACE, Reason.ENQUEUE, False, Due.START),
    ],
)
def test_overlap_judges_a_due_run_against_its_jobs_running_ones(
    overlap: Overlap, reason: Reason, scheduled: bool, due: Due
) -> None:
    run = _due_run(overlap, reason, scheduled)
    assert when_due(run, [1]) is due
    assert when_due(run, []) is Due.START  # nothing running: every policy starts it
