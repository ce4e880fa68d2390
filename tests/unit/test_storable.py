"""What both engines can keep and give back: the one rule the edge and the store share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cronlink.clock import utc_instant
from cronlink.errors import UnstorableError
from cronlink.storable import escaped, flaw, json_flaw, to_json


@pytest.mark.parametrize(
    ("text", "problem", "shown"),
    [("plain", None, "plain"), ("é \u2028 \U0001f600", None, "é \u2028 \U0001f600"),
     ("a\x00b", "a NUL character", "a\\u0000b"), ("\ud800x", "a lone surrogate", "\\ud800x"),
     ("x\udfff", "a lone surrogate", "x\\udfff")],
)  # fmt: skip
def test_flaws_are_named_and_escaped(text: str, problem: str | None, shown: str) -> None:
    assert flaw(text) == problem
    assert escaped(text) == shown
    assert flaw(escaped(text)) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [({"a": [1, {"b": "x\x00"}]}, ".a[1].b holds a NUL character"),
     ({"k\ud800": 1}, "a key of the object holds a lone surrogate"),
     ([float("nan")], "[0] is not finite"), (2**63, "a number is out of range"),
     (-(2**63) - 1, "a number is out of range"), ({"t": {1, 2}}, ".t is not JSON")],
)  # fmt: skip
def test_json_that_would_not_round_trip_is_named(value: Any, problem: str) -> None:
    assert json_flaw(value) == problem
    with pytest.raises(UnstorableError, match="cannot store JSON"):
        to_json(value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2026-01-01T00:00:00", "has no time zone offset"), ("2026-01-01", "has no time zone"),
     ("9999-12-31T23:59:59-23:59", "is out of range once in UTC"),
     ("0001-01-01T00:00:00+01:00", "is out of range once in UTC"),
     ("tomorrow", "is not an ISO 8601 instant"), ("1767225600", "is not an ISO 8601 instant")],
)  # fmt: skip
def test_an_instant_needs_an_offset_and_a_place_in_utc(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        utc_instant(text)


def test_an_instant_with_an_offset_is_read_as_utc() -> None:
    assert utc_instant(" 2026-01-01T05:30:00+05:30 ") == datetime(2026, 1, 1, tzinfo=UTC)
    assert utc_instant("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
