"""Kubernetes CronJobs (batch/v1) in and out: `cronlink import k8s FILE` reads a manifest
into `[[jobs]]` tables; `cronlink export k8s` writes, per schedule, a CronJob that asks
cronlink to run the job (`POST $APP_URL/cron/JOB`), cronlink applying its retries, timeout
and overlap.

Kubernetes reads cron with robfig/cron: Vixie fields, weekdays 0-6 and `?` as `*`, but a
day field written `*/2` counts as restricted, so it combines with the other day field by
OR where Vixie cron, and cronlink, would read "every day" and AND. Both directions keep
the meaning or refuse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import yaml

from cronlink.errors import ConfigError
from cronlink.interop.carry import (
    Binding,
    Exported,
    Imported,
    job_name,
    seconds_text,
    tier_for,
    yaml_problem,
)
from cronlink.interop.dialects import KUBERNETES, Untranslatable, from_vixie, to_vixie
from cronlink.jobs import Job, schedule
from cronlink.policies.misfire import ON_TIME, Misfire
from cronlink.progress import Progress, silent
from cronlink.records.runs import Overlap

_OVERLAP = {"Allow": "allow", "Forbid": "skip", "Replace": "replace"}
_POLICY = {Overlap(ours): theirs for theirs, ours in _OVERLAP.items()} | {Overlap.QUEUE: "Forbid"}
_HISTORY_KEYS = {"successfulJobsHistoryLimit", "failedJobsHistoryLimit"}
_SPEC_KEYS = {"schedule", "timeZone", "concurrencyPolicy", "startingDeadlineSeconds", "suspend"}
_JOB_KEYS = {"backoffLimit", "activeDeadlineSeconds", "template"}
BACKOFF_LIMIT = 6
"""Kubernetes' default `backoffLimit`."""
_MOST_ATTEMPTS = 100  # JobModel's bound on max_attempts
_CHECK_EVERY = 10  # seconds between the controller's looks: a shorter deadline may never start
_NAME_LIMIT = 52  # Kubernetes adds 11 characters to name each Job, whose names stop at 63
# The controller names each Job `<cronjob>-<minutes since the epoch of its instant>`: the
# pod sends that instant, so that cronlink applies the job's overlap policy to it and a
# retried pod finds the run it queued. A Job made by hand (`kubectl create job --from`)
# has no such number and sends its name as the idempotency key. CRON_SECRET may list
# secrets during a rotation: the first is sent.
_CALL = """\
minutes="${JOB_NAME##*-}"
case "$minutes" in
  *[!0-9]*) instant="Idempotency-Key: $JOB_NAME" ;;
  [0-9][0-9][0-9][0-9][0-9][0-9][0-9]*)
    instant="X-Cronlink-Scheduled-Time: $(date -u -d "@$((minutes * 60))" +%Y-%m-%dT%H:%M:%SZ)" ;;
  *) instant="Idempotency-Key: $JOB_NAME" ;;
esac
exec curl -fsS -X POST -H "Authorization: Bearer ${CRON_SECRET%%,*}" -H "$instant" \\
  "$APP_URL/cron/@JOB@"
"""


def import_cronjobs(
    text: str, source: str, binding: Binding, progress: Progress = silent
) -> Imported:
    """`[[jobs]]` tables from a manifest of CronJobs (several documents, or a `List`).

    A CronJob that cannot come along, and any object of another kind, is left out with
    the reason; a file that is not a manifest raises ConfigError naming it."""
    imported = Imported(source=source, progress=progress)
    for manifest in _objects(text, source):
        metadata = manifest.get("metadata")
        raw = str(metadata.get("name") or "?") if isinstance(metadata, dict) else "?"
        kind = manifest.get("kind")
        if kind != "CronJob":
            imported.leave_out(f"{kind} {raw}", "not a CronJob")
            continue
        notes: list[str] = []
        try:
            if raw == "?":
                raise ValueError("no metadata.name")
            imported.add(_job(job_name(raw), manifest, binding, notes))
        except (ValueError, ConfigError) as error:
            imported.leave_out(f"CronJob {raw}", str(error))
            continue
        for note in notes:
            imported.leave_out(f"CronJob {raw}", note)
    return imported


def _objects(text: str, source: str) -> list[dict[str, Any]]:
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({yaml_problem(error)})") from None
    found: list[Any] = []
    for document in documents:
        listed = isinstance(document, dict) and str(document.get("kind", "")).endswith("List")
        found.extend((document.get("items") or []) if listed else [document])
    if not all(isinstance(item, dict) for item in found):
        raise ConfigError(f"{source}: not a Kubernetes manifest (a document is not an object)")
    return found


def _job(name: str, cronjob: dict[str, Any], binding: Binding, notes: list[str]) -> dict[str, Any]:
    spec = _section(cronjob, "spec")
    run = _section(_section(spec, "jobTemplate"), "spec")
    cron, zone = _schedule(spec, notes)
    policy = spec.get("concurrencyPolicy", "Allow")
    if policy not in _OVERLAP:
        raise ValueError(f"concurrencyPolicy {policy!r} is not Allow, Forbid or Replace")
    job = {"name": name, **binding.bind(name), "schedule": cron, "timezone": zone}
    job |= {"overlap": _OVERLAP[policy], "misfire": "latest"}
    deadline = _count(spec, "startingDeadlineSeconds")
    if deadline is None:
        notes.append(
            "no startingDeadlineSeconds: Kubernetes starts the latest missed run "
            "however late, cronlink within misfire_grace (1h)"
        )
    else:
        job["misfire_grace"] = seconds_text(deadline)
    if spec.get("suspend") is True:
        notes.append(f"suspended: run `cronlink pause {name}` after import")
    if _HISTORY_KEYS & spec.keys():
        notes.append("history limits: cronlink keeps every run's history")
    known = _SPEC_KEYS | _HISTORY_KEYS | {"jobTemplate"}
    notes.extend(_uncarried(spec, known, "spec") + _uncarried(run, _JOB_KEYS, "job spec"))
    notes.append(_container_note(run))
    return job | _attempts(run, notes)


def _schedule(spec: dict[str, Any], notes: list[str]) -> tuple[str, str]:
    text, zone = spec.get("schedule"), spec.get("timeZone")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("no spec.schedule")
    prefix, _, rest = text.strip().partition(" ")
    if prefix.startswith(("TZ=", "CRON_TZ=")):
        if zone is not None:
            raise ValueError("both timeZone and TZ= in spec.schedule (Kubernetes refuses that)")
        zone, text = prefix.partition("=")[2], rest
        notes.append(f"{prefix} in spec.schedule: Kubernetes 1.29+ refuses it; now a timezone")
    if zone is None:
        zone = "UTC"
        notes.append("no timeZone: the controller's local zone; imported as UTC")
    cron = from_vixie(text.strip(), KUBERNETES)
    try:
        schedule(cron, str(zone))
    except ValueError as error:
        raise ValueError(f"spec.timeZone: {error}") from None
    return cron, str(zone)


def _attempts(run: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    backoff = _count(run, "backoffLimit")
    attempts = (BACKOFF_LIMIT if backoff is None else backoff) + 1
    if attempts > _MOST_ATTEMPTS:
        notes.append(f"backoffLimit {backoff}: cronlink makes at most {_MOST_ATTEMPTS} attempts")
        attempts = _MOST_ATTEMPTS
    # Kubernetes backs off 10 s, 20 s, 40 s ... up to 6 min between a Job's pods.
    fields: dict[str, Any] = {"max_attempts": attempts, "min_backoff": "10s", "max_backoff": "6m"}
    limit = _count(run, "activeDeadlineSeconds", least=1)
    if limit is None:
        notes.append("no activeDeadlineSeconds: imported as light, whose timeout is 30s")
        return fields | {"tier": "light"}
    return fields | tier_for(limit)


def _container_note(run: dict[str, Any]) -> str:
    pod = _section(_section(run, "template"), "spec")
    described = []
    for container in pod.get("containers") or []:
        if isinstance(container, dict):
            # The program only: its arguments may carry a secret (`curl -H "…: Bearer …"`).
            words = [*(container.get("command") or []), *(container.get("args") or [])]
            program = str(words[0]) if words else "its image's command"
            described.append(f"{container.get('image', '?')} ({program})")
    return (
        f"runs {'; '.join(described) or 'no container'}: cronlink runs no containers, so "
        "the handler or target it is bound to must do that work"
    )


def _uncarried(section: dict[str, Any], known: set[str], where: str) -> list[str]:
    extra = sorted(set(section) - known)
    return [f"{where} {', '.join(extra)}: not carried"] if extra else []


def _section(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{key} is not a mapping")
    return value


def _count(section: dict[str, Any], key: str, least: int = 0) -> int | None:
    value = section.get(key)
    if value is not None and (type(value) is not int or value < least):
        raise ValueError(f"{key} {value!r} is not a whole number of at least {least}")
    return value


def export_cronjobs(
    jobs: Sequence[Job],
    app_url: str,
    secret: str = "cronlink",
    secret_key: str = "cron-secret",
    image: str = "curlimages/curl:8.10.1",
) -> Exported:
    """A CronJob for each schedule of `jobs` (`{job}-{i}` when a job has several), calling
    `POST {app_url}/cron/{job}` with the bearer secret read from Secret `secret` (never
    written out). What cannot be carried is listed in `left_out`."""
    documents: list[dict[str, Any]] = []
    left_out: list[str] = []
    for job in jobs:
        try:
            crons = [to_vixie(spec.cron, KUBERNETES) for spec in job.schedules]
        except Untranslatable as error:
            left_out.append(f"{job.name}: {error}")
            continue
        left_out.extend(f"{job.name}: {note}" for note in _export_notes(job))
        container = _container(job.name, app_url, secret, secret_key, image)
        for index, (spec, cron) in enumerate(zip(job.schedules, crons, strict=True), 1):
            wanted = job.name if len(crons) == 1 else f"{job.name}-{index}"
            name = _dns_name(wanted)
            if any(d["metadata"]["name"] == name for d in documents):
                left_out.append(f"{wanted}: CronJob name {name} is already taken")
                continue
            if name != wanted:
                left_out.append(f"{wanted}: named {name} (Kubernetes: lowercase, digits, '-')")
            documents.append(_cronjob(name, job, spec.timezone, cron, container))
    header = (
        f'# kubectl create secret generic {secret} --from-literal={secret_key}="$CRON_SECRET"\n'
        "# Each CronJob asks cronlink to run its job: take these schedules out of\n"
        "# cronlink's own jobs, or each will run twice.\n"
    )
    body = yaml.safe_dump_all(documents, explicit_start=True, sort_keys=False, width=200)
    return Exported(text=header + (body if documents else ""), left_out=left_out)


def _container(job: str, app_url: str, secret: str, key: str, image: str) -> dict[str, Any]:
    run_name = {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}
    env = [
        {"name": "APP_URL", "value": app_url.rstrip("/")},
        {"name": "CRON_SECRET", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}},
        {"name": "JOB_NAME", "valueFrom": run_name},
    ]
    command = ["sh", "-c", _CALL.replace("@JOB@", job)]
    return {"name": "call-cronlink", "image": image, "command": command, "env": env}


def _cronjob(
    name: str, job: Job, zone: str, cron: str, container: dict[str, Any]
) -> dict[str, Any]:
    pod = {"restartPolicy": "Never", "containers": [container]}
    run = {
        "backoffLimit": job.retry.max_attempts - 1,
        "activeDeadlineSeconds": max(1, math.ceil(job.timeout.total_seconds())),
        "template": {"spec": pod},
    }
    # cronlink's skip runs the latest instant only within ON_TIME: that deadline is exact.
    grace = ON_TIME if job.misfire is Misfire.SKIP else job.misfire_grace
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "cronlink"}},
        "spec": {
            "schedule": cron,
            "timeZone": zone,
            "concurrencyPolicy": _POLICY[job.overlap],
            "startingDeadlineSeconds": max(int(grace.total_seconds()), _CHECK_EVERY),
            "jobTemplate": {"spec": run},
        },
    }


def _export_notes(job: Job) -> list[str]:
    short = job.misfire is not Misfire.SKIP and job.misfire_grace.total_seconds() < _CHECK_EVERY
    notes = {
        "no schedule (it runs only when enqueued)": not job.schedules,
        "jitter not carried (Kubernetes starts on the minute)": any(
            spec.jitter for spec in job.schedules
        ),
        "overlap queue written Forbid (Kubernetes cannot queue); cronlink still queues "
        "the runs it is asked for": job.overlap is Overlap.QUEUE,
        "misfire all: Kubernetes starts only the latest missed run": job.misfire is Misfire.ALL,
        f"misfire_grace raised to {_CHECK_EVERY}s, how often the controller looks": short,
    }
    return [note for note, applies in notes.items() if applies]


def _dns_name(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:_NAME_LIMIT].rstrip("-") or "cronjob"
