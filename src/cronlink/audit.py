"""The tally that folds a flood of refusals into a few audit records (`AuditEntry`, in
`records/audit.py`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from cronlink.records.audit import AuditEntry

SUMMARY_EVERY = 60.0
"""Seconds of refusals one summary line of a client and action counts."""
SAMPLE = 3
"""Targets a summary names (the first distinct ones)."""
DISTINCT_CAP = 100
"""Distinct targets counted exactly; past it, a summary says "100+"."""
MAX_GROUPS = 1_000
"""Clients and actions counted at once; past it, the oldest is summed up early."""
LIMITED = "limited"


@dataclass(kw_only=True, slots=True)
class _Group:
    actor: str
    client: str
    action: str
    ends: float
    announced: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)
    sample: list[str] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    def count(self, target: str, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if len(self.seen) < DISTINCT_CAP and hash(target) not in self.seen:
            self.seen.add(hash(target))
            if len(self.sample) < SAMPLE:
                self.sample.append(target[:100])

    def summary(self, at: datetime, seconds: float) -> AuditEntry:
        total = self.outcomes.total()
        kinds = ", ".join(f"{outcome} {n:,}" for outcome, n in sorted(self.outcomes.items()))
        distinct = f"{DISTINCT_CAP}+" if len(self.seen) >= DISTINCT_CAP else f"{len(self.seen)}"
        [outcome] = self.outcomes if len(self.outcomes) == 1 else ["refused"]
        return AuditEntry(
            at=at, actor=self.actor, action=self.action, target=self.sample[0],
            client=self.client, outcome=outcome,
            detail=f"{total:,} refused calls in {seconds:.0f} s ({kinds}) to {distinct} "
            f"distinct targets, first: {', '.join(self.sample)}",
        )  # fmt: skip


class RefusalTally:
    """Refused calls folded per actor, client and action, so that a flood costs a few lines, not
    a line each, whatever targets it names: the first refusal of a quiet client and action
    is a line at once (a rate-limited one never is); the rest are counted, exactly, and
    summed up in one line per `every` seconds, naming the first few distinct targets. Time
    is the caller's (a monotonic clock for windows, `at` for the lines)."""

    def __init__(self, every: float = SUMMARY_EVERY) -> None:
        self.every = every
        self._groups: dict[tuple[str, str, str], _Group] = {}
        """In the order their windows end."""

    def add(
        self, client: str, action: str, target: str, outcome: str, now: float, at: datetime,
        actor: str = "anonymous",
    ) -> list[AuditEntry]:  # fmt: skip
        """Count one refusal: the lines to write now (its own, if it is one, and the
        summaries that are due)."""
        lines = self.due(now, at)
        key = (actor, client, action)
        group = self._groups.get(key)
        if group is None:
            group = _Group(actor=actor, client=client, action=action, ends=now + self.every)
            self._groups[key] = group
        if not group.announced and outcome != LIMITED:
            group.announced = True
            lines.append(AuditEntry(
                at=at, actor=actor, action=action, target=target, client=client, outcome=outcome
            ))  # fmt: skip
        else:
            group.count(target, outcome)
        return lines

    def due(self, now: float, at: datetime) -> list[AuditEntry]:
        """Summaries of the windows that ended by `now`, and of the oldest ones when more
        than `MAX_GROUPS` are open."""
        lines = []
        while self._groups:
            key, group = next(iter(self._groups.items()))
            crowded = len(self._groups) > MAX_GROUPS
            if group.ends > now and not crowded:
                break
            del self._groups[key]
            if group.outcomes:
                lines.append(group.summary(at, self._seconds(group, now)))
                if not crowded:  # still busy: the next window counts from the start
                    self._groups[key] = _Group(
                        actor=group.actor, client=group.client, action=group.action,
                        ends=now + self.every, announced=True,
                    )  # fmt: skip
        return lines

    def next_due(self) -> float | None:
        """When the first window ends (monotonic), if any is open."""
        return next(iter(self._groups.values())).ends if self._groups else None

    def drain(self, now: float, at: datetime) -> list[AuditEntry]:
        """Every count not yet written, summed up now (at shutdown)."""
        groups, self._groups = self._groups, {}
        return [g.summary(at, self._seconds(g, now)) for g in groups.values() if g.outcomes]

    def _seconds(self, group: _Group, now: float) -> float:
        return max(0.0, min(self.every, now - (group.ends - self.every)))
