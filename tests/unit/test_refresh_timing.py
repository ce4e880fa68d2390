"""When a connection's refresh is due, when its token counts as expired, and how long a
failed refresh waits: pure functions of the stored connection and the time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from cronlink.connections.tokens import due, expired, retry_in
from cronlink.errors import RefreshError
from cronlink.records.connections import Connection, ConnectionState, Health

NOON = datetime(2030, 5, 1, 12, tzinfo=UTC)
CONNECTION = Connection(
    id=1, provider="sandbox", owner="o", state=ConnectionState.ACTIVE, health=Health.HEALTHY,
    scopes="", version=3, expires_at=NOON + timedelta(seconds=20),
    refresh_due_at=NOON + timedelta(seconds=10), refreshed_at=NOON, refresh_failures=0,
    last_error=None, health_failures=0, health_successes=0, checked_at=None, latency_ms=None,
    used_at=None, created_at=NOON, updated_at=NOON,
)  # fmt: skip


def test_due_is_the_stored_instant_not_one_recomputed() -> None:
    # The tokens were stored 300 ms after the instant their refresh was computed from: the
    # run queued for that instant finds the refresh due all the same.
    stored_late = dataclasses.replace(CONNECTION, refreshed_at=NOON + timedelta(seconds=0.3))
    assert due(stored_late, NOON + timedelta(seconds=10))
    assert not due(stored_late, NOON + timedelta(seconds=9.99))


def test_an_expired_token_without_a_scheduled_refresh_is_due() -> None:
    assert due(dataclasses.replace(CONNECTION, refresh_due_at=None), NOON + timedelta(seconds=19))


@pytest.mark.parametrize(
    ("life", "at", "is_expired"),
    [
        (3600, 3594, False),
        (3600, 3595, True),  # five seconds ahead: a request sent now may arrive too late
        (4, 2.9, False),  # a 4 s token is not "expired" at birth: a quarter of its life
        (4, 3, True),
    ],
)
def test_expired_leaves_a_margin_bounded_by_the_tokens_life(
    life: float, at: float, is_expired: bool
) -> None:
    short = dataclasses.replace(CONNECTION, expires_at=NOON + timedelta(seconds=life))
    assert expired(short, NOON + timedelta(seconds=at)) is is_expired


def test_the_first_retries_come_within_a_grace_window() -> None:
    # An answer lost on its way may have rotated the token: a provider's grace window for
    # the old one (often 10 s) runs from then, however the retries that follow fare.
    failed = RefreshError("no answer", kind="transient")
    waits = [retry_in(failed, failures).total_seconds() for failures in range(4) for _ in range(50)]
    assert all(1 <= wait <= 2 for wait in waits)  # four retries inside 8 s
    assert len({round(w, 3) for w in waits}) > 10  # jittered: not every connection at once


def test_then_failures_back_off_and_honour_retry_after() -> None:
    failed = RefreshError("HTTP 503", kind="transient")
    assert timedelta(seconds=5) <= retry_in(failed, 4) <= timedelta(seconds=5.5)
    assert timedelta(seconds=40) <= retry_in(failed, 7) <= timedelta(seconds=44)
    assert retry_in(failed, 40) <= timedelta(seconds=3960)
    slow = RefreshError("HTTP 503", kind="transient", retry_after=600)
    assert retry_in(slow, 0) == timedelta(seconds=600)
