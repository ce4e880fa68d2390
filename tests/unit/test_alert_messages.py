"""The messages alerts owe: firing, reminder, recovery, and the summary past the cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cronlink.observe.alerts import SUMMARY_LINES, message, summary, window_start
from cronlink.records.alerts import Alert, AlertState, Owed, Policy

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(rules=frozenset(), label="prod", max_messages=5)


def alert(key: str = "job-failing:a", **kw: object) -> Alert:
    values: dict[str, object] = {
        "key": key, "rule": "job-failing", "subject": "job a is failing", "body": "figures",
        "state": AlertState.FIRING, "since": T0, "resolved_at": None, "notified_at": None,
        "owed": Owed.FIRING,
    }  # fmt: skip
    values.update(kw)
    return Alert(**values)  # type: ignore[arg-type]


def test_firing_then_a_reminder_then_the_recovery() -> None:
    first = message(alert(), POLICY)
    assert (first.title, first.kind) == ("[prod] FIRING: job a is failing", "failure")
    assert first.body == "figures\n\nAlert job-failing:a, firing since 2025-03-01T12:00:00+00:00."
    again = message(alert(notified_at=T0 + timedelta(minutes=1)), POLICY)
    assert again.title == "[prod] still firing: job a is failing"
    cleared = alert(state=AlertState.RESOLVED, owed=Owed.RECOVERED,
                    resolved_at=T0 + timedelta(minutes=90, seconds=7))  # fmt: skip
    done = message(cleared, POLICY)
    assert (done.title, done.kind) == ("[prod] resolved: job a is failing", "success")
    assert "cleared at 2025-03-01T13:30:07+00:00 (after 1h30m7s)" in done.body


def test_a_summary_names_the_alerts_up_to_a_bound() -> None:
    many = [alert(f"connection-down:{i}") for i in range(SUMMARY_LINES + 3)]
    told = summary(many, POLICY)
    assert told.title == f"[prod] {SUMMARY_LINES + 3} more alerts (at most 5 messages per 1h)"
    lines = told.body.splitlines()
    assert lines[0] == "- FIRING connection-down:0: job a is failing"
    assert lines[SUMMARY_LINES] == "- and 3 more"


def test_windows_are_aligned_on_the_clock() -> None:
    assert window_start(T0 + timedelta(minutes=59), timedelta(hours=1)) == T0
    assert window_start(T0 + timedelta(minutes=61), timedelta(hours=1)) == T0 + timedelta(hours=1)
