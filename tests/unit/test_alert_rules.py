"""The alert rules over hand-made facts, at fixed instants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cronlink.jobs import build_job
from cronlink.observe.alert_rules import findings
from cronlink.records.alerts import (
    ConnectionFacts,
    Facts,
    JobFacts,
    Policy,
    RecentRun,
    TriggerFacts,
)
from cronlink.records.runs import Tier

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ALL = Policy(rules=frozenset({"run-dead", "job-failing", "job-silent", "connection-reauth",
                              "connection-down", "trigger-stalled", "job-slow"}))  # fmt: skip
HOURLY = build_job(name="sync", schedules=["0 * * * *"], timeout="10s")
JOBS = {"sync": HOURLY}


def run(i: int, state: str, ms: int | None = 100, error: str | None = None) -> RecentRun:
    return RecentRun(id=i, state=state, finished_at=T0, duration_ms=ms, attempt=3,
                     error_type=error, error_reason="exception" if error else None)  # fmt: skip


def keys(facts: Facts, now: datetime = T0, policy: Policy = ALL) -> list[str]:
    return [f.key for f in findings(facts, JOBS, policy, now)]


def job(*recent: RecentRun, **kw: object) -> Facts:
    seen = JobFacts(job="sync", recent=recent, last_success=T0, **kw)  # type: ignore[arg-type]
    return Facts(jobs={"sync": seen})


def test_failing_fires_at_the_threshold_and_a_success_breaks_the_streak() -> None:
    assert keys(job(run(3, "failed"), run(2, "timed_out"), run(1, "succeeded"))) == []
    three = job(run(4, "failed"), run(3, "failed"), run(2, "timed_out"), run(1, "succeeded"))
    [found] = findings(three, JOBS, ALL, T0)
    assert found.key == "job-failing:sync"
    assert "last 3 runs" in found.body
    assert "run 4" in found.body
    broken = job(run(5, "succeeded"), run(4, "failed"), run(3, "failed"), run(2, "failed"))
    assert keys(broken) == []


def test_a_dead_newest_run_fires_with_its_cause_but_not_its_message() -> None:
    [found] = findings(job(run(7, "dead", error="Boom"), run(6, "succeeded")), JOBS, ALL, T0)
    assert found.key == "run-dead:sync"
    assert "Run 7" in found.body
    assert "Boom, exception" in found.body
    assert keys(job(run(8, "succeeded"), run(7, "dead"))) == []


def test_the_dead_mans_switch_waits_for_the_next_instant_plus_the_grace() -> None:
    last = T0 + timedelta(seconds=5)  # the 12:00 run succeeded; 13:00 is the next instant
    facts = Facts(jobs={"sync": JobFacts(job="sync", last_success=last)})
    assert keys(facts, T0 + timedelta(hours=1, minutes=5)) == []
    [found] = findings(facts, JOBS, ALL, T0 + timedelta(hours=1, minutes=5, seconds=1))
    assert found.key == "job-silent:sync"
    assert "2025-03-01T13:00:00+00:00" in found.body
    assert "13:05:00" in found.body
    assert keys(Facts(jobs={"sync": JobFacts(job="sync", last_success=last)},
                      paused=frozenset({"sync"})), T0 + timedelta(hours=3)) == []  # fmt: skip


def test_a_job_that_never_succeeded_is_watched_from_its_first_instant() -> None:
    facts = Facts(jobs={"sync": JobFacts(job="sync", first_fire=T0)})
    assert keys(facts, T0 + timedelta(minutes=5)) == []
    assert keys(facts, T0 + timedelta(minutes=6)) == ["job-silent:sync"]
    assert keys(Facts(jobs={"sync": JobFacts(job="sync")}), T0 + timedelta(days=9)) == []


def test_slow_fires_when_the_p95_reaches_the_share_of_the_timeout() -> None:
    fast = [run(i, "succeeded", ms=1000) for i in range(19)]
    assert keys(job(run(20, "succeeded", ms=9000), *fast)) == []  # 1 in 20 is the p95's 5%
    slow = job(run(21, "succeeded", ms=9000), run(20, "timed_out", ms=10_000), *fast)
    [found] = findings(slow, JOBS, ALL, T0)
    assert found.key == "job-slow:sync"
    assert "9s, 90% of its 10s timeout" in found.body
    heavy = {"sync": replace(HOURLY, tier=Tier.HEAVY)}
    assert findings(slow, heavy, ALL, T0) == []
    assert keys(job(*[run(i, "succeeded", ms=9500) for i in range(4)])) == []  # too few


def test_connections_and_triggers() -> None:
    def connection(i: int, state: str, health: str) -> ConnectionFacts:
        return ConnectionFacts(id=i, provider="xero", owner="ann", state=state, health=health,
                               health_failures=4, checked_at=T0, updated_at=T0)  # fmt: skip

    facts = Facts(
        connections=(connection(1, "needs_reauth", "down"), connection(2, "active", "down")),
        triggers=(TriggerFacts(name="leads", trigger="new_contact", advanced_at=T0,
                               last_success_at=None, poll_failures=2),),
    )  # fmt: skip
    found = findings(facts, JOBS, ALL, T0)
    assert [f.key for f in found] == [
        "connection-reauth:1", "connection-down:2", "trigger-stalled:leads"
    ]  # fmt: skip
    assert "4 health checks" in found[1].body
    assert "2 failed polls" in found[2].body
    only = Policy(rules=frozenset({"connection-down"}))
    assert keys(facts, policy=only) == ["connection-down:2"]
