"""What becomes of a due instant: the rule every engine applies inside its transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronlink.records import Fate

if TYPE_CHECKING:
    from cronlink.store.base import Tick


class FateBook:
    """Decides tick fates from the paused jobs and the jobs with a queued or running run,
    as read in the same transaction, and keeps the latter up to date as runs start."""

    def __init__(self, paused: set[str], active: set[str]) -> None:
        self.paused = paused
        self.active = active

    def decide(self, tick: Tick) -> Fate:
        job = tick.run.job
        if tick.missed:
            return Fate.MISSED
        if job in self.paused:
            return Fate.SKIPPED_PAUSED
        if job in self.active and tick.overlap == "skip":
            return Fate.SKIPPED_OVERLAP
        return Fate.RUN

    def replaces(self, tick: Tick) -> bool:
        """True when starting this tick's run must first cancel the job's active runs."""
        return tick.run.job in self.active and tick.overlap == "replace"

    def started(self, tick: Tick) -> None:
        self.active.add(tick.run.job)
