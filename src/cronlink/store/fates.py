"""What becomes of a due instant when it is fired: the rule every engine applies inside its
transaction (what a claimed run does about its job's running ones: `policies.overlap`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronlink.records.runs import Fate

if TYPE_CHECKING:
    from cronlink.store.base import Tick


def fire_fate(tick: Tick, paused: set[str]) -> Fate:
    """The fate of a due instant when it is fired, given the paused jobs read in the same
    transaction. Overlap is not decided here but when the run is claimed, at its instant:
    the scheduler may fire ahead of time, and the previous run may finish before then."""
    if tick.missed:
        return Fate.MISSED
    if tick.run.job in paused:
        return Fate.SKIPPED_PAUSED
    return Fate.RUN
