"""Progress bars for long commands (rich), on stderr and only on a terminal: a command
whose output is read by a program, or piped to a file, shows none."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from cronlink.progress import silent

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.progress import TaskID

    from cronlink.progress import Progress as Advance


@contextmanager
def bars() -> Iterator[Advance]:
    """A `Progress` drawn as one bar per task while the block runs, or `silent` when
    stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield silent
        return
    shown = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    )  # fmt: skip
    tasks: dict[str, TaskID] = {}

    def advance(task: str, done: int, total: int | None) -> None:
        if task not in tasks:
            tasks[task] = shown.add_task(task, total=total)
        shown.update(tasks[task], completed=done, total=total)

    with shown:
        yield advance
