"""Overlap as a pure policy: what a due run does about its job's other running runs
(`skip`, `queue`, `allow`, `replace`), judged when the run is claimed, at its instant: the
scheduler may fire ahead of time, and the previous run may finish before then."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from cronlink.records.runs import Overlap, Reason

if TYPE_CHECKING:
    from cronlink.records.runs import Run


class Due(Enum):
    """What a claimed run does about its job's other running runs (its overlap policy)."""

    START = "start"
    WAIT = "wait"
    """Put it back: `queue` waits for the running one."""
    SKIP = "skip"
    """Cancel it and record the instant `skipped_overlap`."""
    REPLACE = "replace"
    """Start it and ask the running ones to cancel."""


def for_an_instant(run: Run) -> bool:
    """Whether `run` stands for a scheduled instant, to which the job's overlap policy
    applies: fired by a scheduler, or asked for by an external one that names the instant
    (`POST /cron/{job}` with a schedule-time header, as Cloud Scheduler and the exported
    Worker and CronJobs send). Other manual and API runs just run."""
    return run.reason is Reason.SCHEDULE or (
        run.reason is Reason.API and run.scheduled_for is not None
    )


def overlap_matters(run: Run) -> bool:
    """Whether `run`'s job's running runs can change anything: if not, skip looking."""
    if run.overlap is Overlap.QUEUE:
        return True
    return run.overlap is not Overlap.ALLOW and for_an_instant(run)


def when_due(run: Run, running: list[int]) -> Due:
    """Apply `run`'s overlap policy, given the ids of its job's other running runs."""
    if not running or run.overlap is Overlap.ALLOW:
        return Due.START
    if run.overlap is Overlap.QUEUE:
        return Due.WAIT
    if not for_an_instant(run):
        return Due.START
    return Due.REPLACE if run.overlap is Overlap.REPLACE else Due.SKIP


def skip_message(run: Run, running: list[int]) -> str:
    return f"run {running[0]} of {run.job} was still running at this instant"
