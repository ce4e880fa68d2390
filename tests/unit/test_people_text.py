"""Counts, cut texts and instants as cronlink writes them for people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cronlink.cli.show import cut
from cronlink.clock import iso_seconds
from cronlink.plurals import counted


@pytest.mark.parametrize(
    ("count", "noun", "text"),
    [(0, "run", "0 runs"), (1, "run", "1 run"), (2, "running attempt", "2 running attempts"),
     (1, "refresh", "1 refresh"), (3, "refresh", "3 refreshes"), (1, "entry", "1 entry"),
     (12_345, "invocation", "12,345 invocations")],
)  # fmt: skip
def test_a_count_takes_the_singular_for_one_only(count: int, noun: str, text: str) -> None:
    assert counted(count, noun) == text


def test_a_long_text_is_cut_after_a_whole_word() -> None:
    text = "RefreshError: the token endpoint answered 503 Service Unavailable three times in a row"
    shown = cut(text, 40)
    assert shown == "RefreshError: the token endpoint…"
    assert len(shown) <= 40
    assert text.startswith(shown[:-1])


def test_a_text_without_spaces_is_cut_at_the_limit_and_a_short_one_is_kept() -> None:
    assert cut("x" * 100, 10) == "x" * 9 + "…"
    assert cut("short enough", 80) == "short enough"


def test_instants_are_written_to_the_second_with_their_offset() -> None:
    at = datetime(2026, 3, 29, 1, 30, 5, 123456, tzinfo=UTC)
    assert iso_seconds(at) == "2026-03-29T01:30:05+00:00"
    paris = at.astimezone(timezone(timedelta(hours=2)))
    assert iso_seconds(paris) == "2026-03-29T03:30:05+02:00"
