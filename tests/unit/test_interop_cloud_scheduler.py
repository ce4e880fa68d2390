"""Cloud Scheduler import and export: the example export, secrets, notes, a round trip
through the gcloud script, and fire times checked against a brute-force matcher."""

from __future__ import annotations

import calendar
import json
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cronlink.compose import build_app
from cronlink.config import Settings
from cronlink.config_models import JobModel
from cronlink.cron import next_fire, parse
from cronlink.durations import parse_duration
from cronlink.errors import ConfigError
from cronlink.interop.carry import SECRET_HEADER, Binding, Imported
from cronlink.interop.cloud_scheduler import export_jobs, import_jobs
from cronlink.jobs import Job

EXAMPLE = Path(__file__).parents[2] / "examples" / "migration" / "cloud-scheduler.yaml"
LEAKED = ("s3cr3t-example", "ak_live_example123")


def example() -> Imported:
    return import_jobs(EXAMPLE.read_text(), str(EXAMPLE), None)


def by_name(imported: Imported) -> dict[str, dict[str, Any]]:
    return {job["name"]: job for job in imported.jobs}


def as_jobs(tables: list[dict[str, Any]]) -> list[Job]:
    """The tables as cronlink.toml's loader turns them into jobs."""
    models = tuple(JobModel.model_validate(table) for table in tables)
    return list(build_app(Settings(jobs=models)).jobs.values())


def test_example_jobs_read_as_cronlink_tables() -> None:
    jobs = by_name(example())
    assert list(jobs) == ["process-automations", "nightly-report", "sync-crm-contacts"]
    assert jobs["process-automations"] == {
        "name": "process-automations",
        "target": {
            "url": "https://jobs.example.com/cron/process-automations",
            "method": "POST",
            "headers": {"Authorization": SECRET_HEADER, "Content-Type": "application/json"},
            "body": '{"batch": 500, "source": "cloud-scheduler"}',
        },
        "schedule": "*/15 * * * *",
        "timezone": "UTC",
        "tier": "heavy",
        "timeout": "30m",
        "max_attempts": 4,
        "min_backoff": "10s",
        "max_backoff": "5m",
        "retry_on": [],
        "overlap": "skip",
    }
    report = jobs["nightly-report"]
    assert report["target"]["method"] == "GET"
    assert report["target"]["headers"] == {"Authorization": SECRET_HEADER}
    assert (report["schedule"], report["timezone"]) == ("30 2 * * 1-5", "America/New_York")
    assert (report["max_attempts"], report["min_backoff"], report["max_backoff"]) == (
        1,
        "5s",
        "1h",
    )
    assert (report["tier"], report["timeout"]) == ("heavy", "10m")
    assert report["description"] == "Daily usage report for the sales team"
    crm = jobs["sync-crm-contacts"]
    assert crm["target"]["headers"] == {
        "Content-Type": "application/json",
        "X-Api-Key": "${X_API_KEY}",
    }
    assert (crm["schedule"], crm["tier"], crm["timeout"], crm["max_attempts"]) == (
        "0 8 1,15 * 7",
        "light",
        "30s",
        2,
    )


def test_secrets_are_never_copied() -> None:
    imported = example()
    written = json.dumps([imported.jobs, imported.left_out])
    assert not any(secret in written for secret in LEAKED)
    notes = "\n".join(imported.left_out)
    assert "header Authorization: the literal secret was not copied; set CRON_SECRET" in notes
    assert "header X-Api-Key: the literal secret was not copied; set X_API_KEY" in notes


def test_secret_query_parameters_are_scrubbed_too() -> None:
    uri = "https://e.com/hook?team=7&api_key=abc123&x=1"
    job = {"name": "n", "schedule": "0 * * * *", "httpTarget": {"uri": uri}}
    imported = import_jobs(json.dumps(job), "jobs.json", None)
    assert imported.jobs[0]["target"]["url"] == "https://e.com/hook?team=7&api_key=${API_KEY}&x=1"
    assert imported.left_out == [
        "job n url api_key: the literal secret was not copied; set API_KEY to it"
    ]


def test_what_is_not_carried_is_listed() -> None:
    notes = example().left_out
    by_topic = {note.split(":")[0]: note for note in notes}
    assert "Pub/Sub" in by_topic["job warm-cache"]
    assert "`Bearer ${CRON_SECRET}`" in by_topic["job nightly-report oidcToken"]
    assert "cronlink pause sync-crm-contacts" in by_topic["job sync-crm-contacts state"]
    assert "job sync-crm-contacts maxRetryDuration" in by_topic
    assert "job process-automations maxDoublings 5" in by_topic
    # Output-only fields and Google's own headers go without a word.
    assert not [n for n in notes if any(w in n for w in ("User-Agent", "status", "Time"))]


def test_a_named_handler_takes_every_target() -> None:
    binding = Binding(handler="app.cron:{name}")
    imported = import_jobs(EXAMPLE.read_text(), "x.yaml", binding)
    handlers = {job["name"]: job["handler"] for job in imported.jobs}
    assert handlers["warm-cache"] == "app.cron:warm_cache"
    assert handlers["process-automations"] == "app.cron:process_automations"
    assert not any("target" in job for job in imported.jobs)


@pytest.mark.parametrize("shape", ["object", "list", "rest"])
def test_json_exports_read_too(shape: str) -> None:
    job = {
        "name": "projects/p/locations/l/jobs/ping",
        "schedule": "0 * * * *",
        "httpTarget": {"uri": "https://example.com/ping", "httpMethod": "GET"},
    }
    document = {"object": job, "list": [job], "rest": {"jobs": [job], "nextPageToken": "x"}}
    imported = import_jobs(json.dumps(document[shape]), "jobs.json", None)
    [table] = imported.jobs
    assert (table["name"], table["target"]["method"], table["timeout"]) == ("ping", "GET", "3m")
    assert (table["max_attempts"], table["min_backoff"], table["max_backoff"]) == (1, "5s", "1h")
    assert imported.left_out == []


def test_not_yaml_names_the_file_and_quotes_none_of_it() -> None:
    with pytest.raises(ConfigError, match=r"^jobs\.yaml: neither YAML nor JSON \(line 2"):
        import_jobs("name: x\n  schedule: [unclosed\n", "jobs.yaml", None)
    broken = "httpTarget:\n  headers:\n    Authorization: Bearer s3cr3t-example: x\n"
    with pytest.raises(ConfigError) as raised:
        import_jobs(broken, "jobs.yaml", None)
    assert (
        str(raised.value)
        == "jobs.yaml: neither YAML nor JSON (line 3: mapping values are not allowed here)"
    )


def test_legacy_schedule_and_bad_jobs_are_left_out_alone() -> None:
    good = {"name": "ok", "schedule": "* * * * *", "httpTarget": {"uri": "https://e.com"}}
    legacy = good | {"name": "legacy", "schedule": "every 5 minutes"}
    zone = good | {"name": "zone", "timeZone": "Mars/Olympus"}
    body = good | {"name": "binary", "httpTarget": {"uri": "https://e.com", "body": "/w=="}}
    imported = import_jobs(json.dumps([legacy, zone, good, body]), "jobs.json", None)
    assert [job["name"] for job in imported.jobs] == ["ok", "binary"]
    assert "body" not in imported.jobs[1]["target"]
    assert imported.left_out == [
        "job legacy: 'every 5 minutes': the legacy English syntax is not cron; rewrite it as cron",
        "job zone: unknown time zone 'Mars/Olympus'",
        "job binary body: not UTF-8 text, which a cronlink body must be",
    ]


def gcloud_commands(script: str) -> dict[str, dict[str, str]]:
    """Each `gcloud scheduler jobs create http NAME --flag=value …` as NAME → flags."""
    commands: dict[str, dict[str, str]] = {}
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        if words[:5] == ["gcloud", "scheduler", "jobs", "create", "http"]:
            flags = dict(word.removeprefix("--").split("=", 1) for word in words[6:])
            commands[words[5]] = flags
    return commands


def test_round_trip_through_the_gcloud_script() -> None:
    imported = example()
    exported = export_jobs(as_jobs(imported.jobs), "https://cron.example.com")
    commands = gcloud_commands(exported.text)
    assert set(commands) == set(by_name(imported))
    for name, table in by_name(imported).items():
        flags = commands[name]
        zone = "UTC" if flags["time-zone"] == "Etc/UTC" else flags["time-zone"]
        assert zone == table["timezone"]
        assert meaning(flags["schedule"]) == meaning(table["schedule"])  # 7 may be written 0
        assert int(flags["max-retry-attempts"]) == table["max_attempts"] - 1
        for flag, key in [("min-backoff", "min_backoff"), ("max-backoff", "max_backoff"),
                          ("attempt-deadline", "timeout")]:  # fmt: skip
            assert parse_duration(flags[flag]) == parse_duration(table[key])
        assert flags["uri"] == f"https://cron.example.com/cron/{name}"
        assert flags["headers"] == "Authorization=Bearer ${CRON_SECRET}"
        assert (flags["location"], flags["project"]) == ("${LOCATION}", "${PROJECT_ID}")
    assert exported.text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail\n" in exported.text
    assert (
        'CRON_SECRET="$(gcloud secrets versions access latest --secret=cron-secret'
        ' --project="${PROJECT_ID}")"'
    ) in exported.text
    assert not any(secret in exported.text for secret in LEAKED)
    uses = [line.strip() for line in exported.text.splitlines() if "CRON_SECRET" in line]
    assert uses[0].startswith('CRON_SECRET="$(gcloud secrets versions access latest ')
    assert uses[1].startswith('CRON_SECRET="${CRON_SECRET%%,*}"')
    assert all(u.startswith('--headers="Authorization=Bearer ${CRON_SECRET}"') for u in uses[2:])
    # Cloud Scheduler names each call's instant: cronlink applies the overlap policy to it.
    assert exported.left_out == []


def test_export_keeps_to_cloud_schedulers_limits() -> None:
    table = {
        "name": "big.job",
        "target": {"url": "https://example.com/big"},
        "schedules": ["0 3 * * *", "0 1 L * *"],
        "timezone": "Europe/Paris",
        "timeout": "2h",
        "max_attempts": 10,
        "jitter": "30s",
        "overlap": "queue",
    }
    exported = export_jobs(as_jobs([table]), "${APP_URL}", project="acme", location="eu-west1")
    commands = gcloud_commands(exported.text)
    assert list(commands) == ["big-job-1"]  # Google's ids have no dots; the L day is refused
    flags = commands["big-job-1"]
    assert (flags["attempt-deadline"], flags["max-retry-attempts"]) == ("1800s", "5")
    assert (flags["project"], flags["location"], flags["time-zone"]) == (
        "acme",
        "eu-west1",
        "Europe/Paris",
    )
    assert '--uri="${APP_URL}/cron/big.job"' in exported.text
    assert exported.left_out == [
        "job big.job: 9 retries (Cloud Scheduler makes 5)",
        "job big.job: timeout 2h (Cloud Scheduler waits 30m for its call)",
        "job big.job: jitter (Cloud Scheduler calls on the minute)",
        "job big.job (0 1 L * *): Cloud Scheduler has no L, W or # (in L *); keep it on cronlink",
    ]


def test_literal_values_are_quoted_and_variables_expand() -> None:
    table = {"name": "q", "target": {"url": "https://e.com"}, "schedule": "0 0 * * *"}
    script = export_jobs(as_jobs([table]), "https://e.com/a b", location='it\'s "${L}"').text
    assert "--uri='https://e.com/a b/cron/q'" in script
    assert '--location="it\'s \\"${L}\\""' in script
    assert gcloud_commands(script)["q"]["location"] == 'it\'s "${L}"'


# -- fire times, against a matcher that knows nothing of cronlink.cron ---------------------

DAYS = {name.upper(): i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}


def field_values(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    def number(token: str) -> int:
        return names[token] if token in names else int(token)

    values: set[int] = set()
    for item in text.upper().split(","):
        span, _, step = item.partition("/")
        if span == "*":
            first, last = low, high
        else:
            first_text, _, last_text = span.partition("-")
            first = number(first_text)
            last = number(last_text) if last_text else (high if step else first)
        values.update(range(first, last + 1, int(step or 1)))
    return values


FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, MONTHS),
    (0, 7, DAYS),
)
Meaning = tuple[list[set[int]], bool]


def meaning(expression: str) -> Meaning:
    """Vixie cron: each field's values, 0 or 7 being Sunday, and whether a day matching
    either day field fires (both are restricted: neither starts with `*`)."""
    texts = expression.split()
    values = [field_values(text, *limits) for text, limits in zip(texts, FIELDS, strict=True)]
    values[4] = {day % 7 for day in values[4]}
    return values, not texts[2].startswith("*") and not texts[4].startswith("*")


def matches(rule: Meaning, wall: datetime) -> bool:
    (minutes, hours, doms, months, weekdays), either = rule
    by_dom, by_dow = wall.day in doms, (wall.weekday() + 1) % 7 in weekdays
    return (
        wall.minute in minutes
        and wall.hour in hours
        and wall.month in months
        and ((by_dom or by_dow) if either else (by_dom and by_dow))
    )


# After New York's spring change: in the window checked, a wall minute is one instant.
START = datetime(2025, 3, 10, 12, 7, tzinfo=UTC)


@pytest.mark.parametrize("name", ["process-automations", "nightly-report", "sync-crm-contacts"])
def test_fire_times_match_a_brute_force_matcher(name: str) -> None:
    table = by_name(example())[name]
    zone, rule = ZoneInfo(table["timezone"]), meaning(table["schedule"])
    expected: list[datetime] = []
    instant = START.replace(second=0) + timedelta(minutes=1)
    while len(expected) < 50:
        if matches(rule, instant.astimezone(zone)):
            expected.append(instant)
        instant += timedelta(minutes=1)
    expr, after, got = parse(table["schedule"]), START, []
    for _ in range(50):
        fired = next_fire(expr, after, zone)
        assert fired is not None
        got.append(fired)
        after = fired
    assert got == expected
    assert len({fire.astimezone(zone).utcoffset() for fire in expected}) == 1


def test_job_text_is_never_expanded_by_the_script_and_ids_never_collide() -> None:
    target = {"url": "http://x"}
    jobs = as_jobs([
        {"name": "a.b", "target": target, "schedule": "0 * * * *",
         "description": "costs ${AMOUNT}; see ${CRON_SECRET}"},
        {"name": "a-b", "target": target, "schedule": "0 * * * *"},
    ])  # fmt: skip
    exported = export_jobs(jobs, "https://cron.example.com/")
    [command] = gcloud_commands(exported.text).values()
    assert command["description"] == "costs ${AMOUNT}; see ${CRON_SECRET}"  # literal, quoted
    assert "'costs ${AMOUNT}; see ${CRON_SECRET}'" in exported.text
    assert command["uri"] == "https://cron.example.com/cron/a.b"
    assert exported.left_out == ["job a-b: its Cloud Scheduler id a-b is taken"]


def test_passwords_cookies_and_other_schemes_are_scrubbed_too() -> None:
    job = {
        "name": "projects/p/locations/l/jobs/basic",
        "schedule": "0 * * * *",
        "httpTarget": {
            "uri": "https://ops:hunter2-pw@jobs.example.com/run?sig=abc123&page=2",
            "headers": {"Authorization": "Basic b3BzOmh1bnRlcjI=", "Cookie": "sid=zzz999"},
            "body": "eyJ0b2tlbiI6ICJ0LTk5OSJ9",  # {"token": "t-999"}
        },
    }
    imported = import_jobs(json.dumps(job), "jobs.json", None)
    [table] = imported.jobs
    target = table["target"]
    assert target["url"] == (
        "https://ops:${TARGET_PASSWORD}@jobs.example.com/run?sig=${SIG}&page=2"
    )
    assert target["headers"] == {"Authorization": "Basic ${AUTHORIZATION}", "Cookie": "${COOKIE}"}
    everything = json.dumps([imported.jobs, imported.left_out])
    for secret in ("hunter2-pw", "abc123", "b3BzOmh1bnRlcjI=", "zzz999"):
        assert secret not in everything
    assert any("body: copied as it is" in note for note in imported.left_out)
