"""Counts as people write them: "1 run", "2 runs", "1 entry", "3 entries"."""

from __future__ import annotations

IRREGULAR = {"entry": "entries", "refresh": "refreshes", "batch": "batches"}


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, singular for exactly one, with thousands separated."""
    if count == 1:
        return f"1 {noun}"
    return f"{count:,} {IRREGULAR.get(noun, noun + 's')}"
