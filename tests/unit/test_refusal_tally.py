"""A flood of refusals folds into a few audit lines per minute that keep the exact counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cronlink.audit import MAX_GROUPS, RefusalTally
from cronlink.records.audit import AuditEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


SUMMARY = re.compile(
    r"(?P<total>[\d,]+) refused calls in \d+ s \((?P<kinds>[^)]*)\) to (?P<distinct>\d+\+?) "
    r"distinct targets, first: (?P<first>.*)"
)


def summed(detail: str) -> tuple[int, dict[str, int], str]:
    """(calls, calls by outcome, distinct targets) of a summary line's detail."""
    found = SUMMARY.fullmatch(detail)
    assert found is not None, detail
    kinds = dict(kind.rsplit(" ", 1) for kind in found["kinds"].split(", "))
    counts = {outcome: int(n.replace(",", "")) for outcome, n in kinds.items()}
    return int(found["total"].replace(",", "")), counts, found["distinct"]


def test_fifty_thousand_refusals_at_distinct_paths_are_a_few_lines_a_minute() -> None:
    tally = RefusalTally(every=60.0)
    lines: list[AuditEntry] = []
    sent = {"denied": 0, "limited": 0}
    for n in range(50_000):
        now = n * 0.0036  # three minutes
        outcome = "denied" if n % 7 == 0 else "limited"
        sent[outcome] += 1
        lines += tally.add("203.0.113.9", "cron.run", f"job-{n}", outcome, now, T0)
        lines += tally.due(now, T0 + timedelta(seconds=now))  # the service's timer
    lines += tally.drain(180.0, T0 + timedelta(minutes=3))
    assert len(lines) <= 5  # the first at once, then one a minute
    assert (lines[0].target, lines[0].outcome, lines[0].detail) == ("job-0", "denied", "")
    counted = {"denied": 1, "limited": 0}
    for line in lines[1:]:
        total, counts, distinct = summed(line.detail)
        assert total == sum(counts.values())
        assert distinct == "100+"
        for outcome, n in counts.items():
            counted[outcome] += n
    assert counted == sent


def test_a_rate_limited_refusal_is_never_a_line_of_its_own() -> None:
    tally = RefusalTally(every=60.0)
    assert tally.add("a", "api", "GET /api/v1/jobs", "limited", 0.0, T0) == []
    assert len(tally.add("a", "api", "GET /api/v1/runs", "denied", 1.0, T0)) == 1
    assert tally.due(59.0, T0) == []
    [line] = tally.due(60.0, T0)
    assert summed(line.detail) == (1, {"limited": 1}, "1")
    assert (line.outcome, line.target) == ("limited", "GET /api/v1/jobs")
    assert tally.due(121.0, T0) == []  # a quiet window: the group is forgotten
    assert tally.next_due() is None
    assert len(tally.add("a", "api", "x", "denied", 130.0, T0)) == 1  # quiet again


def test_clients_and_actions_are_counted_apart_and_their_number_is_bounded() -> None:
    tally = RefusalTally(every=60.0)
    tally.add("10.0.0.0", "cron.run", "t", "denied", 0.0, T0)
    tally.add("10.0.0.0", "cron.run", "t", "denied", 0.0, T0)  # counted
    firsts = [tally.add(f"10.0.{n // 256}.{n % 256}", "cron.tick", "t", "denied", 1.0, T0)
              for n in range(MAX_GROUPS + 1)]  # fmt: skip
    assert [len(lines) for lines in firsts[:-1]] == [1] * MAX_GROUPS
    # One group too many: the oldest, with its count, is summed up early to make room.
    made_room, first = firsts[-1]
    assert (made_room.action, summed(made_room.detail)[0]) == ("cron.run", 1)
    assert first.action == "cron.tick"
    assert tally.drain(2.0, T0) == []  # nothing else was counted
