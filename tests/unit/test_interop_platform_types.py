"""Exports read as the platforms read them: every exported CronJob validates, strictly (no
field Kubernetes does not know), against the OpenAPI schema of a current Kubernetes
release; every job of an exported Cloud Scheduler script, run by bash, parses as the Cloud
Scheduler API's own `Job` message and means what cronlink meant."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from google.cloud import scheduler_v1
from google.protobuf.json_format import ParseError

from cronlink.compose import build_app
from cronlink.config import Settings
from cronlink.config_models import JobModel
from cronlink.interop import cloud_scheduler, kubernetes, wrangler
from cronlink.interop.carry import Binding
from cronlink.interop.dialects import CLOUD_SCHEDULER, Untranslatable, to_vixie
from cronlink.jobs import Job

EXAMPLES = Path(__file__).parents[2] / "examples" / "migration"
OLDEST_CURRENT = (1, 32)
"""The schemas must be of a Kubernetes release at least this recent."""
URL = "https://cron.example.com"
TARGET = {"url": "https://app.example.com/hook"}
# Beside the examples, jobs that take each branch of the exporters: several schedules, a
# name neither platform takes as it is, each overlap and misfire policy, timeouts below,
# between and above what the platforms allow, fractional backoffs, jitter, a description.
VARIED: list[dict[str, Any]] = [
    {"name": "Big.Job:eu", "schedules": ["0 3 * * *", "*/7 9-17 * * MON-FRI"],
     "timezone": "Europe/Paris", "timeout": "2h", "tier": "heavy", "max_attempts": 10,
     "jitter": "30s", "overlap": "queue", "misfire": "all"},
    {"name": "quick", "schedule": "* * * * *", "timeout": "0.5s", "min_backoff": "0.25s",
     "max_backoff": "1.5s", "overlap": "replace", "misfire": "skip", "max_attempts": 1},
    {"name": "weekly", "schedule": "30 6 * * 0", "timezone": "America/New_York",
     "timeout": "90s", "overlap": "allow", "misfire_grace": "5s",
     "description": "Weekly digest, with \"quotes\", $dollars and `ticks`" + "." * 600},
    {"name": "x" * 80, "schedule": "0 0 1 * *"},
]  # fmt: skip


def as_jobs(tables: list[dict[str, Any]]) -> list[Job]:
    """The tables as cronlink.toml's loader turns them into jobs."""
    models = tuple(JobModel.model_validate({"target": TARGET} | table) for table in tables)
    return list(build_app(Settings(jobs=models)).jobs.values())


def every_job() -> list[Job]:
    """The three examples as `cronlink import` reads them, and the varied jobs."""
    imports = [
        cloud_scheduler.import_jobs((EXAMPLES / "cloud-scheduler.yaml").read_text(), "c", None),
        kubernetes.import_cronjobs((EXAMPLES / "k8s-cronjobs.yaml").read_text(), "k", Binding()),
        wrangler.import_triggers(
            wrangler.read_config((EXAMPLES / "wrangler.toml").read_text(), "wrangler.toml"),
            "w",
            Binding(),
        ),
    ]
    tables = [
        {**table, "name": f"{source}-{table['name']}"}  # two examples share a job name
        for source, imported in zip(["gcs", "k8s", "cf"], imports, strict=True)
        for table in imported.jobs
    ]
    return as_jobs([*tables, *VARIED])


# -- Kubernetes --------------------------------------------------------------------------

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_the_schemas_are_of_a_current_kubernetes() -> None:
    release = tuple(int(part) for part in kubernetes_validate.latest_version().split(".")[:2])
    assert release >= OLDEST_CURRENT


def test_every_exported_cronjob_validates_strictly() -> None:
    jobs = every_job()
    exported = kubernetes.export_cronjobs(jobs, URL)
    cronjobs = [d for d in yaml.safe_load_all(exported.text) if d is not None]
    kept = [job for job in jobs if not any(note.startswith(f"{job.name}: '") for note in
                                           exported.left_out)]  # fmt: skip
    assert len(cronjobs) == sum(len(job.schedules) for job in kept) > len(kept)
    release = kubernetes_validate.latest_version()
    for cronjob in cronjobs:
        try:
            kubernetes_validate.validate(cronjob, release, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(part) for part in error.path)
            pytest.fail(f"{cronjob['metadata']['name']} at {where}: {error.message}")
        # The schema has no pattern for names: the API server checks them (a CronJob's
        # Jobs add 11 characters to its name and must stay within 63).
        assert DNS_LABEL.match(cronjob["metadata"]["name"])
        assert len(cronjob["metadata"]["name"]) <= 52


def test_the_strict_check_refuses_what_kubernetes_does_not_know() -> None:
    """The check above can fail: an unknown field, a number written as text."""
    [cronjob] = yaml.safe_load_all(kubernetes.export_cronjobs(as_jobs(VARIED[1:2]), URL).text)
    release = kubernetes_validate.latest_version()
    cronjob["spec"]["jobTemplate"]["spec"]["retries"] = 3
    with pytest.raises(kubernetes_validate.ValidationError, match="'retries' was unexpected"):
        kubernetes_validate.validate(cronjob, release, strict=True)
    del cronjob["spec"]["jobTemplate"]["spec"]["retries"]
    cronjob["spec"]["startingDeadlineSeconds"] = "10"
    with pytest.raises(kubernetes_validate.ValidationError, match="is not of type 'integer'"):
        kubernetes_validate.validate(cronjob, release, strict=True)


# -- Cloud Scheduler -----------------------------------------------------------------------

SECRETS = "s3cret-current-a41f,s3cret-previous-90b2"
# What gcloud does with each flag of `gcloud scheduler jobs create http`: the field of the
# API's Job (JSON names) its value goes to. Every flag the script uses must be here.
FIELDS = {
    "schedule": ("schedule",),
    "time-zone": ("timeZone",),
    "description": ("description",),
    "uri": ("httpTarget", "uri"),
    "http-method": ("httpTarget", "httpMethod"),
    "attempt-deadline": ("attemptDeadline",),
    "max-retry-attempts": ("retryConfig", "retryCount"),
    "min-backoff": ("retryConfig", "minBackoffDuration"),
    "max-backoff": ("retryConfig", "maxBackoffDuration"),
}
# The script needs gcloud; this one hands out the secret and records each job it is asked
# to create, its words as bash passed them.
GCLOUD = """\
#!{python}
import json, os, sys
if sys.argv[1:4] == ["secrets", "versions", "access"]:
    print(os.environ["SECRETS_HELD"])
else:
    with open(os.environ["GCLOUD_CALLS"], "a") as calls:
        calls.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def run_script(script: str, folder: Path) -> list[list[str]]:
    """Each `gcloud` command the exported script runs, as its words."""
    (folder / "bin").mkdir()
    gcloud = folder / "bin" / "gcloud"
    gcloud.write_text(GCLOUD.format(python=sys.executable))
    gcloud.chmod(0o755)
    (folder / "jobs.sh").write_text(script)
    calls = folder / "calls.jsonl"
    env = {
        "PATH": f"{gcloud.parent}{os.pathsep}{os.environ['PATH']}",
        "PROJECT_ID": "acme-prod", "LOCATION": "europe-west1",
        "SECRETS_HELD": SECRETS, "GCLOUD_CALLS": str(calls),
    }  # fmt: skip
    done = subprocess.run(
        ["bash", str(folder / "jobs.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in calls.read_text().splitlines()]


def as_api_job(words: list[str]) -> dict[str, Any]:
    """The REST API's Job that gcloud sends for `scheduler jobs create http NAME --flag=…`."""
    assert words[:4] == ["scheduler", "jobs", "create", "http"], words
    flags = dict(word.removeprefix("--").split("=", 1) for word in words[5:])
    where = f"projects/{flags.pop('project')}/locations/{flags.pop('location')}"
    job: dict[str, Any] = {"name": f"{where}/jobs/{words[4]}"}
    # --headers is gcloud's KEY=VALUE,KEY=VALUE
    headers = dict(pair.split("=", 1) for pair in flags.pop("headers").split(","))
    job["httpTarget"] = {"headers": headers}
    for flag, value in flags.items():
        assert flag in FIELDS, f"--{flag} is not mapped to a field of the API's Job"
        *parents, last = FIELDS[flag]
        place = job
        for parent in parents:
            place = place.setdefault(parent, {})
        place[last] = int(value) if last == "retryCount" else value
    return job


def test_every_exported_cloud_scheduler_job_is_an_api_job(tmp_path: Path) -> None:
    jobs = every_job()
    exported = cloud_scheduler.export_jobs(jobs, URL)
    created = [as_api_job(words) for words in run_script(exported.text, tmp_path)]
    by_id = {}
    for sent in created:
        job = scheduler_v1.Job.from_json(json.dumps(sent), ignore_unknown_fields=False)
        by_id[job.name.rsplit("/", 1)[1]] = job
    assert len(by_id) == len(created)
    for job in jobs:
        for index, spec in enumerate(job.schedules, start=1):
            try:
                cron = to_vixie(spec.cron, CLOUD_SCHEDULER)
            except Untranslatable:
                assert any(note.startswith(f"job {job.name} (") for note in exported.left_out)
                continue
            job_id = re.sub(r"[^A-Za-z0-9_-]", "-", job.name)
            job_id += f"-{index}" if len(job.schedules) > 1 else ""
            assert_means(by_id.pop(job_id), job, spec.timezone, cron)
    assert by_id == {}


def assert_means(sent: scheduler_v1.Job, job: Job, zone: str, cron: str) -> None:
    """`sent` calls cronlink to run `job` when it would, as its retry policy says."""
    assert sent.name.startswith("projects/acme-prod/locations/europe-west1/jobs/")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,500}", sent.name.rsplit("/", 1)[1])
    assert (sent.schedule, sent.time_zone) == (cron, "Etc/UTC" if zone == "UTC" else zone)
    target = sent.http_target
    assert target.uri == f"{URL}/cron/{job.name}"
    assert target.http_method == scheduler_v1.HttpMethod.POST
    # The first secret of a rotation list, never the list; no body: cronlink has the job.
    assert dict(target.headers) == {"Authorization": "Bearer s3cret-current-a41f"}
    assert target.body == b""
    assert not target.oidc_token
    assert not target.oauth_token
    timeout = job.timeout.total_seconds()
    # proto-plus gives Durations as timedeltas
    assert sent.attempt_deadline == timedelta(seconds=min(max(timeout, 15), 1800))
    retry = sent.retry_config
    assert retry.retry_count == min(job.retry.max_attempts - 1, 5)
    assert retry.min_backoff_duration == job.retry.min_backoff
    assert retry.max_backoff_duration == job.retry.max_backoff
    assert retry.max_retry_duration == timedelta(0)  # no limit: cronlink counts attempts
    assert sent.description == (job.description or "")[:500]


def test_an_api_job_refuses_what_the_api_does_not_know() -> None:
    """The parse above can fail: an unknown field, a duration not in the API's form."""
    sent = {"name": "projects/p/locations/l/jobs/j", "schedule": "* * * * *"}
    with pytest.raises(ParseError, match='no field named "retries"'):
        scheduler_v1.Job.from_json(json.dumps({**sent, "retries": 3}), ignore_unknown_fields=False)
    with pytest.raises(ParseError, match='Duration must end with letter "s"'):
        scheduler_v1.Job.from_json(
            json.dumps({**sent, "attemptDeadline": "3m"}), ignore_unknown_fields=False
        )
