"""How long work tells how far it has got: a `Progress` is called as it advances; the
command line shows it as a bar on a terminal, and nothing elsewhere."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, task: str, done: int, total: int | None) -> None:
        """`task` (what is being done, for people) is at `done` of `total` (None: unknown)."""
        ...


def silent(task: str, done: int, total: int | None) -> None:
    """The progress of work nobody watches."""
