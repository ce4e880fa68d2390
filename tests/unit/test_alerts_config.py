"""`[alerts]` in cronlink.toml: read into the settings, refused with file, key and problem,
and an alert URL never quoted back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cronlink.compose import build_app
from cronlink.config import Settings, load_settings
from cronlink.errors import ConfigError
from cronlink.observe.alert_job import WATCH_ALERTS, policy_from
from cronlink.observe.notify import redact

SECRET = "xoxbsecretcanary93dXYZ"
SLACK = f"slack://T1JJ3T3L2/A1BRTD4JD/{SECRET}"


def write(tmp_path: Path, alerts: str) -> Path:
    path = tmp_path / "cronlink.toml"
    path.write_text(f"[alerts]\n{alerts}\n")
    return path


def test_alerts_are_read_and_turn_on_watch_alerts(tmp_path: Path) -> None:
    path = write(tmp_path, f'urls = ["{SLACK}", "json://${{HOOK_HOST}}/x"]\ngrace = "10m"\n'
                           'schedule = "*/2 * * * *"\nrules = ["job-failing"]')  # fmt: skip
    settings = load_settings(path)
    assert settings.alerts is not None
    policy = policy_from(settings.alerts)
    assert (policy.grace, policy.rules, policy.failing_after) == (
        timedelta(minutes=10), frozenset({"job-failing"}), 3
    )  # fmt: skip
    watch = build_app(settings).get(WATCH_ALERTS)
    assert [s.cron.source for s in watch.schedules] == ["*/2 * * * *"]
    assert WATCH_ALERTS not in build_app(Settings()).jobs


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("urls = []", "alerts.urls: List should have at least 1 item"),
        ('urls = ["json://h/x"]\nnope = 1', "alerts.nope: unknown key"),
        ('urls = ["json://h/x"]\np95_ratio = 1.5', "alerts.p95_ratio: Input should be less"),
        ('urls = ["json://h/x"]\ngrace = "soon"', "alerts.grace: 'soon' is not a duration"),
        ('urls = ["json://h/x"]\nrules = ["usage"]', "alerts.rules[0]: Input should be"),
        (f'urls = ["json://h/x", "nosuch://{SECRET}@h"]', "alerts.urls[1]: not a URL apprise"),
        (f'urls = "{SLACK}"', "alerts.urls: Input should be a valid list"),
        (f'urls = [1, "{SLACK}"]', "alerts.urls[0]: Input should be a valid string"),
    ],
)
def test_bad_alerts_name_the_file_the_key_and_the_problem(
    tmp_path: Path, body: str, problem: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(raised.value).startswith(f"{path}: {problem}")
    assert SECRET not in str(raised.value)


def test_a_bad_schedule_names_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'urls = ["json://h/x"]\nschedule = "61 * * * *"')
    with pytest.raises(ConfigError, match=r"cronlink.toml: alerts.schedule: minute field"):
        build_app(load_settings(path))


def test_urls_are_shown_without_their_secrets() -> None:
    assert SECRET not in redact(SLACK)
    assert redact("json://ops:pw-canary@127.0.0.1:8080/hook?x=1") == (
        "json://ops:****@127.0.0.1:8080/hook"
    )
    assert redact("json://${HOOK}/x") == "json://${HOOK}/x"
    assert redact(f"nosuch://{SECRET}@h") == "nosuch://***"
