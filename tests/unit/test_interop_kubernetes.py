"""Kubernetes CronJobs in and out: the example manifest, a round trip, and fire times
checked against an independent reading of Kubernetes' cron (robfig/cron)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from cronlink.cron import next_fire, parse
from cronlink.errors import ConfigError
from cronlink.interop.carry import SECRET_HEADER, Binding, Imported
from cronlink.interop.kubernetes import export_cronjobs, import_cronjobs
from cronlink.jobs import HttpTarget, Job, build_job
from cronlink.policies.misfire import Misfire
from cronlink.records.runs import Overlap, Tier

EXAMPLE = Path(__file__).parents[2] / "examples" / "migration" / "k8s-cronjobs.yaml"
START = datetime(2026, 2, 20, 13, 7, tzinfo=UTC)
"""A Friday; 50 weekday nights on, the New York schedule has crossed into summer time."""


def _example() -> Imported:
    return import_cronjobs(EXAMPLE.read_text(), str(EXAMPLE), Binding())


def _jobs(tables: list[dict[str, Any]]) -> list[Job]:
    """Jobs from imported `[[jobs]]` tables, as cronlink.toml would load them."""
    jobs = []
    for table in tables:
        fields = dict(table)
        fields["schedules"] = [fields.pop("schedule")]
        fields["target"] = HttpTarget(**fields.pop("target"))
        jobs.append(build_job(**fields))
    return jobs


def _cronjob(name: str, schedule: str, backoff: int = 6, **spec: Any) -> dict[str, Any]:
    """A CronJob (in UTC unless `timeZone` is given; None leaves it out)."""
    spec = {"schedule": schedule, "timeZone": "UTC"} | spec
    spec = {key: value for key, value in spec.items() if value is not None}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": spec | {"jobTemplate": {"spec": {"backoffLimit": backoff}}},
    }


def _manifest(*objects: dict[str, Any]) -> str:
    return str(yaml.safe_dump_all(objects))


def test_example_imports_each_cronjob_as_a_job() -> None:
    imported = _example()
    by_name = {job["name"]: job for job in imported.jobs}
    assert list(by_name) == ["refresh-tokens", "health-check", "nightly-report", "purge-sessions"]
    target = {
        "url": "${APP_URL}/cron/refresh-tokens",
        "method": "POST",
        "headers": {"Authorization": SECRET_HEADER},
    }
    assert by_name["refresh-tokens"] == {
        "name": "refresh-tokens",
        "target": target,
        "schedule": "0 * * * *",
        "timezone": "Etc/UTC",
        "overlap": "skip",
        "misfire": "latest",
        "misfire_grace": "5m",
        "max_attempts": 3,
        "min_backoff": "10s",
        "max_backoff": "6m",
        "tier": "heavy",
        "timeout": "4m",
    }
    health = by_name["health-check"]
    assert health["schedule"] == "*/5 * * * *"  # `?` read as `*`
    assert (health["overlap"], health["max_attempts"]) == ("replace", 1)
    assert (health["tier"], health["timeout"]) == ("light", "20s")
    assert "misfire_grace" not in health
    nightly = by_name["nightly-report"]
    assert (nightly["schedule"], nightly["timezone"]) == ("30 2 * * 1-5", "America/New_York")
    assert nightly["max_attempts"] == 7  # Kubernetes' default backoffLimit, 6
    assert (nightly["tier"], nightly["timeout"]) == ("heavy", "1h")
    purge = by_name["purge-sessions"]
    assert (purge["schedule"], purge["timezone"], purge["overlap"]) == (
        "15 4 1,15 * sun",
        "UTC",
        "allow",
    )
    assert (purge["tier"], purge["max_attempts"], "timeout" in purge) == ("light", 4, False)


def test_example_lists_what_did_not_come_along() -> None:
    left_out = _example().left_out
    assert "ConfigMap report-settings: not a CronJob" in left_out
    assert (
        "CronJob purge-sessions: suspended: run `cronlink pause purge-sessions` after import"
        in left_out
    )
    assert (
        "CronJob purge-sessions: no timeZone: the controller's local zone; imported as UTC"
        in left_out
    )
    assert "CronJob purge-sessions: job spec ttlSecondsAfterFinished: not carried" in left_out
    assert "CronJob refresh-tokens: history limits: cronlink keeps every run's history" in left_out
    containers = [note for note in left_out if "cronlink runs no containers" in note]
    assert len(containers) == 4
    # The program, not its arguments, which may hold a secret.
    assert "CronJob nightly-report: runs ghcr.io/acme/reports:1.9.0 (/app/report)" in containers[2]
    assert not any("--mail-to" in note for note in left_out)
    assert sum("no startingDeadlineSeconds" in note for note in left_out) == 3


def test_a_handler_binding_names_the_handler() -> None:
    imported = import_cronjobs(
        EXAMPLE.read_text(), str(EXAMPLE), Binding(handler="acme.jobs:{name}")
    )
    assert imported.jobs[0]["handler"] == "acme.jobs:refresh_tokens"
    assert "target" not in imported.jobs[0]


def test_export_then_import_gives_the_same_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRON_SECRET", "s3cret-never-written")
    first = _example()
    exported = export_cronjobs(_jobs(first.jobs), "https://cron.acme.example")
    assert exported.left_out == []
    assert exported.text.splitlines()[0] == (
        '# kubectl create secret generic cronlink --from-literal=cron-secret="$CRON_SECRET"'
    )
    assert "secretKeyRef" in exported.text
    assert "s3cret-never-written" not in exported.text
    again = import_cronjobs(exported.text, "exported.yaml", Binding())

    def essentials(job: Job) -> tuple[object, ...]:
        schedules = [(spec.cron.source, spec.timezone) for spec in job.schedules]
        return (
            job.name,
            schedules,
            job.overlap,
            job.misfire,
            job.misfire_grace,
            job.retry.max_attempts,
            job.timeout,
            job.tier,
            job.target,
        )

    assert [essentials(j) for j in _jobs(again.jobs)] == [essentials(j) for j in _jobs(first.jobs)]
    assert all("curlimages/curl:8.10.1" in note for note in again.left_out if "runs " in note)


def test_export_writes_a_cronjob_that_calls_cronlink() -> None:
    job = build_job(
        name="sync-crm",
        schedules=["*/10 * * * *"],
        timezone="Europe/Paris",
        max_attempts=4,
        timeout="2m",
        overlap="replace",
        misfire_grace="15m",
    )
    exported = export_cronjobs([job], "https://cron.acme.example", secret="cron", image="curl:1")
    [cronjob] = yaml.safe_load_all(exported.text)
    spec = cronjob["spec"]
    assert (cronjob["metadata"]["name"], spec["schedule"], spec["timeZone"]) == (
        "sync-crm",
        "*/10 * * * *",
        "Europe/Paris",
    )
    assert (spec["concurrencyPolicy"], spec["startingDeadlineSeconds"]) == ("Replace", 900)
    run = spec["jobTemplate"]["spec"]
    assert (run["backoffLimit"], run["activeDeadlineSeconds"]) == (3, 120)
    pod = run["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["image"] == "curl:1"
    assert container["command"][:2] == ["sh", "-c"]
    assert '"$APP_URL/cron/sync-crm"' in container["command"][2]
    assert 'Authorization: Bearer ${CRON_SECRET%%,*}"' in container["command"][2]
    env = {variable["name"]: variable for variable in container["env"]}
    assert env["APP_URL"]["value"] == "https://cron.acme.example"
    assert env["CRON_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "cron", "key": "cron-secret"}
    }
    assert exported.left_out == []


def test_export_names_policies_and_notes() -> None:
    jobs = [
        build_job(
            name="Weekly_Digest",
            schedules=["0 17 * * 0", "0 9 * * 1"],
            overlap="queue",
            misfire="all",
            jitter="5m",
        ),
        build_job(name="x" * 60, schedules=["0 0 * * *"], misfire="skip"),
        build_job(name="tight", schedules=["* * * * *"], misfire_grace="3s"),
        build_job(name="on-demand", schedules=[]),
    ]
    exported = export_cronjobs(jobs, "https://cron.acme.example")
    cronjobs = {c["metadata"]["name"]: c["spec"] for c in yaml.safe_load_all(exported.text)}
    assert list(cronjobs) == ["weekly-digest-1", "weekly-digest-2", "x" * 52, "tight"]
    assert cronjobs["weekly-digest-1"]["concurrencyPolicy"] == "Forbid"
    assert cronjobs["x" * 52]["startingDeadlineSeconds"] == 30  # skip: on time within 30 s
    assert cronjobs["tight"]["startingDeadlineSeconds"] == 10
    notes = "\n".join(exported.left_out)
    assert "Weekly_Digest-1: named weekly-digest-1" in notes
    assert f"{'x' * 60}: named {'x' * 52}" in notes
    assert "Weekly_Digest: jitter not carried" in notes
    assert "Weekly_Digest: overlap queue written Forbid" in notes
    assert "Weekly_Digest: misfire all: Kubernetes starts only the latest missed run" in notes
    assert "tight: misfire_grace raised to 10s" in notes
    assert "on-demand: no schedule" in notes


def test_export_writes_sunday_as_0() -> None:
    job = build_job(name="weekly", schedules=["0 0 * * 7"])
    [cronjob] = yaml.safe_load_all(export_cronjobs([job], "https://x.example").text)
    assert cronjob["spec"]["schedule"] == "0 0 * * 0"


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 0 L * *", "Kubernetes has no L, W or #"),
        ("0 9 * * 5#3", "Kubernetes has no L, W or #"),
        ("0 0 */2 * 1", "Kubernetes would match days by either"),
    ],
)
def test_export_leaves_out_what_kubernetes_reads_otherwise(cron: str, reason: str) -> None:
    jobs = [
        build_job(name="odd", schedules=["0 * * * *", cron]),
        build_job(name="ok", schedules=["@daily"]),
    ]
    exported = export_cronjobs(jobs, "https://x.example")
    [cronjob] = yaml.safe_load_all(exported.text)
    assert cronjob["metadata"]["name"] == "ok"
    [note] = exported.left_out
    assert note.startswith(f"odd: {cron!r}: ")
    assert reason in note


def test_one_bad_cronjob_is_left_out_and_the_others_import() -> None:
    text = _manifest(
        _cronjob("no-schedule", ""),
        _cronjob("every", "@every 5m"),
        _cronjob("six-fields", "0 0 0 * * *"),
        _cronjob("zone", "0 0 * * *", timeZone="Mars/Olympus"),
        _cronjob("policy", "0 0 * * *", concurrencyPolicy="Sometimes"),
        _cronjob("fine", "0 0 * * *"),
        {"kind": "CronJob", "metadata": {}, "spec": {"schedule": "0 0 * * *"}},
    )
    imported = import_cronjobs(text, "jobs.yaml", Binding())
    assert [job["name"] for job in imported.jobs] == ["fine"]
    reasons = dict(note.split(": ", 1) for note in imported.left_out if "runs " not in note)
    assert reasons["CronJob no-schedule"] == "no spec.schedule"
    assert "unknown nickname" in reasons["CronJob every"]
    assert "5-field cron" in reasons["CronJob six-fields"]
    assert "unknown time zone 'Mars/Olympus'" in reasons["CronJob zone"]
    assert "concurrencyPolicy 'Sometimes'" in reasons["CronJob policy"]
    assert reasons["CronJob ?"] == "no metadata.name"


@pytest.mark.parametrize(
    "text", ["spec: [unclosed", "kind: CronJob\n  metadata: : x\n", "just some words"]
)
def test_a_file_that_is_not_a_manifest_raises_naming_it(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^cronjobs\.yaml: not"):
        import_cronjobs(text, "cronjobs.yaml", Binding())


def test_a_list_and_tz_prefixes_and_large_backoff() -> None:
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            _cronjob("paris", "CRON_TZ=Europe/Paris 0 6 * * *", timeZone=None, backoff=500),
            _cronjob("both", "TZ=Europe/Paris 0 6 * * *"),
        ],
    }
    imported = import_cronjobs(_manifest(listed), "list.yaml", Binding())
    [paris] = imported.jobs
    assert (paris["schedule"], paris["timezone"], paris["max_attempts"]) == (
        "0 6 * * *",
        "Europe/Paris",
        100,
    )
    notes = "\n".join(imported.left_out)
    assert (
        "CronJob paris: CRON_TZ=Europe/Paris in spec.schedule: Kubernetes 1.29+ refuses it" in notes
    )
    assert "CronJob paris: backoffLimit 500: cronlink makes at most 100 attempts" in notes
    assert "CronJob both: both timeZone and TZ= in spec.schedule" in notes


# An independent reading of Kubernetes' cron (robfig/cron v3, ParseStandard): a day field
# is unrestricted only with a bare `*` or `?` item (a step over 1 takes that away), and
# when both day fields are restricted a day matches either. Descriptors are spelled out.
_DESCRIPTORS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_NAMES = {name: i for i, name in enumerate(_WEEKDAYS)} | {m: i for i, m in enumerate(_MONTHS, 1)}


def _number(token: str) -> int:
    return _NAMES[token.lower()] if token.lower() in _NAMES else int(token)


def _field(text: str, low: int, high: int) -> tuple[set[int], bool]:
    values: set[int] = set()
    star = False
    for item in text.split(","):
        span, slash, step_text = item.partition("/")
        step = int(step_text) if slash else 1
        if span in ("*", "?"):
            start, end = low, high
            star = star or step == 1
        else:
            first, dash, last = span.partition("-")
            start = _number(first)
            end = _number(last) if dash else high if slash else start
        values.update(range(start, end + 1, step))
    return values, star


def _kubernetes_fires(schedule: str, zone: str, after: datetime, count: int) -> list[datetime]:
    minute, hour, dom, month, dow = _DESCRIPTORS.get(schedule, schedule).split()
    minutes, hours, months = (
        _field(minute, 0, 59)[0],
        _field(hour, 0, 23)[0],
        _field(month, 1, 12)[0],
    )
    (days, days_star), (weekdays, weekdays_star) = _field(dom, 1, 31), _field(dow, 0, 6)
    fires: list[datetime] = []
    at = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while len(fires) < count:
        wall = at.astimezone(ZoneInfo(zone))
        by_day, by_weekday = wall.day in days, (wall.weekday() + 1) % 7 in weekdays
        day = by_day and by_weekday if days_star or weekdays_star else by_day or by_weekday
        if day and wall.minute in minutes and wall.hour in hours and wall.month in months:
            fires.append(at)
        at += timedelta(minutes=1)
    return fires


def _cronlink_fires(schedule: str, zone: str, after: datetime, count: int) -> list[datetime]:
    expr, at = parse(schedule), after
    fires: list[datetime] = []
    while len(fires) < count:
        found = next_fire(expr, at, ZoneInfo(zone))
        assert found is not None
        fires.append(found.astimezone(UTC))
        at = found
    return fires


@pytest.mark.parametrize(
    ("schedule", "zone"),
    [
        *[
            (c["spec"]["schedule"], c["spec"].get("timeZone", "UTC"))
            for c in yaml.safe_load_all(EXAMPLE.read_text())
            if c["kind"] == "CronJob"
        ],
        ("0 0 */2 * 1", "UTC"),  # robfig: odd days or Mondays
        ("0 0 ?/3 * */2", "UTC"),
        ("0 12 */2 * *", "UTC"),
        ("0 0 1,* * mon", "UTC"),  # a bare * anywhere: every day, so Mondays only
        ("*/20 9-17 * jan-mar mon-fri", "Europe/Berlin"),
        ("@weekly", "Asia/Tokyo"),
        ("5/15 0 1,15 * 0", "UTC"),
        ("0 0 * * 1/2", "UTC"),  # robfig stops at Saturday: Mon, Wed, Fri
        ("0 0 ?/2 * *", "UTC"),
    ],
)
def test_imported_schedules_fire_when_kubernetes_would(schedule: str, zone: str) -> None:
    imported = import_cronjobs(_manifest(_cronjob("j", schedule, timeZone=zone)), "f", Binding())
    [job] = imported.jobs
    assert _cronlink_fires(job["schedule"], zone, START, 50) == _kubernetes_fires(
        schedule, zone, START, 50
    )


@pytest.mark.parametrize(
    ("cron", "zone"),
    [
        ("0 0 * * 7", "UTC"),
        ("0 9 1-7 * 1", "America/New_York"),
        ("0 0 */2 * *", "UTC"),
        ("30 2 * * 1-5", "America/New_York"),
        ("0 0 1 * 0-7/2", "UTC"),
        ("@monthly", "UTC"),
        ("0 0 * * 1/2", "UTC"),  # cronlink runs on to 7 (Sunday), robfig would stop at 6
        ("0 0 * * sun,fri-sat", "UTC"),
    ],
)
def test_exported_schedules_fire_when_cronlink_would(cron: str, zone: str) -> None:
    job = build_job(name="j", schedules=[cron], timezone=zone)
    [cronjob] = yaml.safe_load_all(export_cronjobs([job], "https://x.example").text)
    written = cronjob["spec"]["schedule"]
    assert "7" not in written.split()[4]
    assert _kubernetes_fires(written, zone, START, 50) == _cronlink_fires(cron, zone, START, 50)


def test_policies_map_both_ways() -> None:
    text = _manifest(
        *(
            _cronjob(p.lower(), "0 0 * * *", concurrencyPolicy=p)
            for p in ("Allow", "Forbid", "Replace")
        )
    )
    jobs = _jobs(import_cronjobs(text, "f", Binding()).jobs)
    assert [job.overlap for job in jobs] == [Overlap.ALLOW, Overlap.SKIP, Overlap.REPLACE]
    assert {(job.misfire, job.tier) for job in jobs} == {(Misfire.LATEST, Tier.LIGHT)}
    exported = yaml.safe_load_all(export_cronjobs(jobs, "https://x.example").text)
    assert [c["spec"]["concurrencyPolicy"] for c in exported] == ["Allow", "Forbid", "Replace"]
