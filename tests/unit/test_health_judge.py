from __future__ import annotations

from cronlink.connections.health import Judged, Policy, Probe, judge
from cronlink.records.connections import Health

OK = Probe(ok=True, status=200, latency_ms=5, detail="HTTP 200")
THROTTLED = Probe(ok=True, status=429, latency_ms=5, detail="throttled")
FAIL = Probe(ok=False, status=503, latency_ms=5, detail="HTTP 503")
REFUSED = Probe(ok=False, auth=True, status=401, latency_ms=5, detail="token refused")
POLICY = Policy(down_after=3, up_after=2)


def walk(start: Health, probes: list[Probe]) -> list[Health]:
    health, failures, successes, seen = start, 0, 0, []
    for probe in probes:
        judged = judge(health, failures, successes, probe, POLICY)
        health, failures, successes = judged.health, judged.failures, judged.successes
        seen.append(health)
    return seen


def test_it_takes_three_failures_to_go_down_and_two_successes_to_come_back() -> None:
    assert walk(Health.HEALTHY, [FAIL, FAIL, FAIL, OK, FAIL, OK, OK]) == [
        Health.DEGRADED, Health.DEGRADED, Health.DOWN, Health.DOWN, Health.DOWN, Health.DOWN,
        Health.HEALTHY,
    ]  # fmt: skip


def test_one_success_ends_a_degraded_spell_and_429_counts_as_reachable() -> None:
    assert walk(Health.UNKNOWN, [OK, FAIL, THROTTLED, FAIL, FAIL]) == [
        Health.HEALTHY, Health.DEGRADED, Health.HEALTHY, Health.DEGRADED, Health.DEGRADED,
    ]  # fmt: skip


def test_a_refused_token_is_auth_failed_at_once_and_stays_until_it_recovers() -> None:
    assert walk(Health.HEALTHY, [REFUSED, FAIL, OK, OK]) == [
        Health.AUTH_FAILED, Health.AUTH_FAILED, Health.AUTH_FAILED, Health.HEALTHY,
    ]  # fmt: skip


def test_streaks_are_counted() -> None:
    assert judge(Health.DEGRADED, 1, 0, FAIL, POLICY) == Judged(
        health=Health.DEGRADED, failures=2, successes=0
    )
    assert judge(Health.DOWN, 5, 0, OK, POLICY) == Judged(
        health=Health.DOWN, failures=0, successes=1
    )
