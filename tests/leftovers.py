"""No process outlives the test that started it.

Every process the suite starts inherits `MARK` in its environment, and so do their children
and the orphans a killed parent leaves (they are re-parented to init, out of reach of a walk
down the process tree, but keep their environment). What carries this session's mark when
a test ends, and was not there when it began, was left behind by that test.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

MARK = "CRONLINK_TEST_SESSION"
GRACE = 5.0
"""Seconds a process gets to finish exiting after its test ends (a SIGTERM just sent)."""

_SHARED = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")
"""Python's own helpers, started once on first use and kept for the whole session."""

_SESSION = uuid.uuid4().hex
_STARTED = time.time() - 1
os.environ[MARK] = _SESSION


def marked() -> dict[int, psutil.Process]:
    """Live processes of this session, by pid (pytest's own excepted)."""
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter(["create_time"]):
        if process.pid == os.getpid() or process.info["create_time"] < _STARTED:
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(MARK) != _SESSION or _is_shared(process):
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found[process.pid] = process
    return found


@contextmanager
def owned(what: str) -> Iterator[None]:
    """Fail `what` if a process it started is still running after it, killing the rest."""
    before = marked()
    yield
    left = [p for pid, p in marked().items() if pid not in before and not _owned(p, before)]
    if not left:
        return
    _, alive = psutil.wait_procs(left, timeout=GRACE)
    if not alive:
        return
    named = [_describe(process) for process in alive]
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=GRACE)
    pytest.fail(f"{what} left {len(named)} process(es) running (now killed): {named}")


def _owned(process: psutil.Process, owners: dict[int, psutil.Process]) -> bool:
    """Started by a process that was already running (a browser's new tab), whose own
    owner answers for it."""
    try:
        return any(parent.pid in owners for parent in process.parents())
    except psutil.NoSuchProcess:
        return False


def _is_shared(process: psutil.Process) -> bool:
    command = " ".join(process.cmdline())
    return any(name in command for name in _SHARED) or "/postgresql/" in process.exe()


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid}: {' '.join(process.cmdline())[:200]}"
    except psutil.Error:
        return str(process.pid)
