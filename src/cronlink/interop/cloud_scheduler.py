"""Google Cloud Scheduler jobs in and out.

An import reads `gcloud scheduler jobs list --format=yaml` or the REST API's JSON: each HTTP
job becomes a `[[jobs]]` table calling the same URL, the secrets it held replaced by `${NAME}`.
An export is a bash script of `gcloud scheduler jobs create http` commands calling
`POST {app_url}/cron/{job}`, the bearer secret read from Secret Manager as it runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from cronlink.durations import parse_duration
from cronlink.envtext import VARIABLE
from cronlink.errors import ConfigError
from cronlink.interop.carry import (
    SECRET_HEADER,
    Binding,
    Exported,
    Imported,
    job_name,
    seconds_text,
    tier_for,
    yaml_problem,
)
from cronlink.interop.dialects import CLOUD_SCHEDULER, Untranslatable, from_vixie, to_vixie
from cronlink.jobs import Job
from cronlink.jobs import schedule as schedule_spec
from cronlink.progress import Progress, silent

GOOGLE_HEADERS = re.compile(r"(user-agent|host|content-length|x-cloudscheduler.*)$", re.I)
"""Headers Google sets on every call whatever the job says."""
SECRET_NAME = re.compile(r"key|token|secret|auth|pass|pwd|sig|cookie|credential|session", re.I)
QUERY_PARAMETER = re.compile(r"([?&])([^=&#]+)=([^&#]*)")
LEGACY = re.compile(r"\b(every|of|synchronized)\b", re.I)
"""Words of App Engine's English schedules (`every 5 minutes`, `1st monday of month`)."""
MAX_RETRIES = 5
SHORTEST_DEADLINE, LONGEST_DEADLINE = 15.0, 1800.0
"""The attempt deadlines an HTTP job may have, in seconds."""
_IN_QUOTES = re.compile(VARIABLE.pattern + r'|["\\$`]')
"""What bash's double quotes treat specially: a `${NAME}` to keep, else a character to escape."""


def import_jobs(
    text: str, source: str, binding: Binding | None, progress: Progress = silent
) -> Imported:
    """One `[[jobs]]` table per job in `text`, or `binding`'s handler in place of each
    target. A job that cannot come along is left out with the reason, the others still
    come; a file that is neither YAML nor JSON raises ConfigError naming `source`."""
    imported = Imported(source=source, progress=progress)
    for index, raw in enumerate(_documents(text, source), start=1):
        notes: list[str] = []
        try:
            imported.add(_table(raw, binding, notes))
        except (ValueError, TypeError, AttributeError, ConfigError) as error:
            name = raw.get("name", index) if isinstance(raw, dict) else index
            imported.leave_out(f"job {str(name).rsplit('/', 1)[-1]}", str(error))
        else:
            imported.left_out += notes
    return imported


def _documents(text: str, source: str) -> list[Any]:
    try:
        loaded = [json.loads(text)]
    except json.JSONDecodeError:
        try:
            loaded = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            raise ConfigError(f"{source}: neither YAML nor JSON ({yaml_problem(error)})") from None
    items: list[Any] = []
    for document in loaded:
        if isinstance(document, dict) and set(document) <= {"jobs", "nextPageToken"}:
            document = document.get("jobs") or []  # the REST API's list answer
        if isinstance(document, list):
            items += document
        elif isinstance(document, dict):
            items.append(document)
        elif document is not None:
            raise ConfigError(f"{source}: not Cloud Scheduler jobs (a {type(document).__name__})")
    return items


def _table(raw: Any, binding: Binding | None, notes: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw.get("name") or not raw.get("schedule"):
        raise ValueError("not a job: a name and a schedule are required")
    name = job_name(str(raw["name"]).rsplit("/", 1)[-1])
    schedule = str(raw["schedule"])
    if LEGACY.search(schedule):
        raise Untranslatable(schedule, "the legacy English syntax is not cron; rewrite it as cron")
    zone = str(raw.get("timeZone") or "UTC")
    zone = "UTC" if zone.upper() in ("UTC", "ETC/UTC") else zone
    cron = from_vixie(schedule, CLOUD_SCHEDULER)
    schedule_spec(cron, zone)  # refuses an unknown zone now, not when cronlink starts
    timeout = _seconds(raw.get("attemptDeadline"), 180)
    table: dict[str, Any] = {
        "name": name,
        **_target(name, raw, binding, notes),
        "schedule": cron,
        "timezone": zone,
        **tier_for(timeout),
        **_retry(name, raw.get("retryConfig") or {}, notes),
        "overlap": "skip",  # Cloud Scheduler never starts a job while its last call runs
    }
    if raw.get("description"):
        table["description"] = str(raw["description"])
    if raw.get("state") in ("PAUSED", "DISABLED"):
        paused = f"{raw['state']} there, imported running: `cronlink pause {name}` pauses it"
        notes.append(f"job {name} state: {paused}")
    return table


def _target(
    name: str, raw: dict[str, Any], binding: Binding | None, notes: list[str]
) -> dict[str, Any]:
    other = raw.get("pubsubTarget") or raw.get("appEngineHttpTarget")
    if binding is not None:  # the user named the handler: any kind of target comes along
        given = raw.get("httpTarget") or other or {}
        return binding.bind(name, _body(name, given.get("body") or given.get("data"), notes))
    if other is not None:
        kind = "a Pub/Sub topic" if "pubsubTarget" in raw else "an App Engine service"
        raise ValueError(f"its target is {kind}; import it with --handler to run it in Python")
    http = raw.get("httpTarget")
    if not isinstance(http, dict) or not http.get("uri"):
        raise ValueError("no httpTarget with a uri")
    headers = _headers(name, http.get("headers") or {}, notes)
    for token in ("oidcToken", "oauthToken"):
        if token in http:  # cronlink cannot mint Google's tokens: the shared secret stands in
            headers.setdefault("Authorization", SECRET_HEADER)
            notes.append(f"job {name} {token}: sent `{SECRET_HEADER}`; the URL must accept it")
    target = {
        "url": _url(name, str(http["uri"]), notes),
        "method": str(http.get("httpMethod", "POST")).upper(),
        "headers": headers,
        "body": _body(name, http.get("body"), notes),
    }
    return {"target": {key: value for key, value in target.items() if value is not None}}


def _headers(name: str, given: dict[str, Any], notes: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in given.items():
        if GOOGLE_HEADERS.match(key):
            continue
        if not SECRET_NAME.search(key):
            headers[key] = str(value)
            continue
        # Never copied: a secret belongs in the environment, not in cronlink.toml. An
        # Authorization header keeps its scheme (Bearer, Basic, ...), which is no secret.
        scheme = str(value).split(" ", 1)[0] if key.lower() == "authorization" else ""
        bearer = scheme.lower() == "bearer"
        variable = "CRON_SECRET" if bearer else _variable(key)
        headers[key] = f"{scheme} ${{{variable}}}".strip() if scheme else f"${{{variable}}}"
        notes.append(_not_copied(name, f"header {key}", variable))
    return headers


def _url(name: str, url: str, notes: list[str]) -> str:
    def scrubbed(match: re.Match[str]) -> str:
        if not SECRET_NAME.search(match[2]):
            return match[0]
        notes.append(_not_copied(name, f"url {match[2]}", _variable(match[2])))
        return f"{match[1]}{match[2]}=${{{_variable(match[2])}}}"

    parts = urlsplit(url)
    if parts.password is not None:  # https://user:PASSWORD@host/...
        notes.append(_not_copied(name, "url password", "TARGET_PASSWORD"))
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        url = urlunsplit(parts._replace(netloc=f"{user}:${{TARGET_PASSWORD}}@{host}"))
    return QUERY_PARAMETER.sub(scrubbed, url)


def _variable(key: str) -> str:
    return re.sub(r"\W", "_", key).upper()


def _not_copied(name: str, what: str, variable: str) -> str:
    return f"job {name} {what}: the literal secret was not copied; set {variable} to it"


def _body(name: str, encoded: Any, notes: list[str]) -> str | None:
    if not encoded:
        return None
    try:
        text = base64.b64decode(str(encoded), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        notes.append(f"job {name} body: not UTF-8 text, which a cronlink body must be")
        return None
    if SECRET_NAME.search(text):
        notes.append(
            f"job {name} body: copied as it is, and it names a key or token: check that it "
            "holds no secret (write ${NAME} for one, read from the environment)"
        )
    return text


def _retry(name: str, config: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    retries = int(config.get("retryCount", 0))  # Cloud Scheduler's default: no retry
    if retries and "maxDoublings" in config:
        notes.append(
            f"job {name} maxDoublings {config['maxDoublings']}: cronlink doubles the wait "
            "up to max_backoff, and waits a random time below that (full jitter)"
        )
    if _seconds(config.get("maxRetryDuration"), 0):
        notes.append(f"job {name} maxRetryDuration: cronlink limits retries by count only")
    return {
        "max_attempts": retries + 1,
        "min_backoff": seconds_text(_seconds(config.get("minBackoffDuration"), 5)),
        "max_backoff": seconds_text(_seconds(config.get("maxBackoffDuration"), 3600)),
        "retry_on": [],
    }


def _seconds(value: Any, default: float) -> float:
    """A Duration as Google writes it (`180s`, `3.5s`), in seconds."""
    return default if value is None else parse_duration(value).total_seconds()


def export_jobs(
    jobs: Sequence[Job],
    app_url: str,
    project: str = "${PROJECT_ID}",
    location: str = "${LOCATION}",
    secret: str = "cron-secret",
) -> Exported:
    """A bash script creating one HTTP job per schedule (`{job}-{i}` when a job has
    several), each calling `POST {app_url}/cron/{job}` with CRON_SECRET as its bearer."""
    left_out: list[str] = []
    written: set[str] = set()
    lines = [
        "#!/usr/bin/env bash",
        "# Written by `cronlink export cloud-scheduler`: jobs that call cronlink serve.",
        "set -euo pipefail",
        "",
        f'CRON_SECRET="$(gcloud secrets versions access latest --secret={_word(secret, True)}'
        f' --project={_word(project, True)})"',
        'CRON_SECRET="${CRON_SECRET%%,*}"  # cronlink reads a list (rotation): send the first',
    ]
    for job in jobs:
        flags = _flags(job, left_out)
        for index, spec in enumerate(job.schedules, start=1):
            try:
                cron = to_vixie(spec.cron, CLOUD_SCHEDULER)
            except Untranslatable as error:
                left_out.append(f"job {job.name} ({spec.cron.source}): {error.reason}")
                continue
            if spec.jitter:
                left_out.append(f"job {job.name}: jitter (Cloud Scheduler calls on the minute)")
            name = re.sub(r"[^A-Za-z0-9_-]", "-", job.name)  # Google's job ids
            name += f"-{index}" if len(job.schedules) > 1 else ""
            if name in written:
                left_out.append(f"job {job.name}: its Cloud Scheduler id {name} is taken")
                continue
            written.add(name)
            zone = "Etc/UTC" if spec.timezone == "UTC" else spec.timezone
            uri = f"{app_url.rstrip('/')}/cron/{job.name}"
            where = [("location", location), ("project", project), ("schedule", cron)]
            pairs = [*where, ("time-zone", zone), ("uri", uri), *flags]
            words = [f"--{flag}={_word(value, flag in _EXPANDED)}" for flag, value in pairs]
            lines += ["", f"gcloud scheduler jobs create http {name} \\"]
            lines += [f"  {word} \\" for word in words[:-1]] + [f"  {words[-1]}"]
    return Exported(text="\n".join(lines) + "\n", left_out=left_out)


def _flags(job: Job, left_out: list[str]) -> list[tuple[str, str]]:
    retries = job.retry.max_attempts - 1
    if retries > MAX_RETRIES:
        left_out.append(f"job {job.name}: {retries} retries (Cloud Scheduler makes {MAX_RETRIES})")
    timeout = job.timeout.total_seconds()
    deadline = min(max(timeout, SHORTEST_DEADLINE), LONGEST_DEADLINE)
    if deadline != timeout:
        allowed = f"Cloud Scheduler waits {seconds_text(deadline)} for its call"
        left_out.append(f"job {job.name}: timeout {seconds_text(timeout)} ({allowed})")
    flags = [
        ("http-method", "POST"),
        ("attempt-deadline", _google(deadline)),
        ("max-retry-attempts", str(min(retries, MAX_RETRIES))),
        ("min-backoff", _google(job.retry.min_backoff.total_seconds())),
        ("max-backoff", _google(job.retry.max_backoff.total_seconds())),
        ("headers", "Authorization=Bearer ${CRON_SECRET}"),
    ]
    return flags + ([("description", job.description[:500])] if job.description else [])


_EXPANDED = {"location", "project", "uri", "headers"}
"""Flags whose values the exporter writes, where `${PROJECT_ID}`-like names are meant."""


def _word(value: str, expanded: bool) -> str:
    """`value` as one shell word: literal text quoted; in the values the exporter writes
    itself (`_EXPANDED`), `${NAME}` left for bash to expand."""
    if not expanded or not VARIABLE.search(value):
        return shlex.quote(value)
    escaped = _IN_QUOTES.sub(lambda m: m.group(0) if m.group(1) else "\\" + m.group(0), value)
    return f'"{escaped}"'


def _google(seconds: float) -> str:
    """A duration as Google's APIs write one: seconds, with an `s`."""
    return f"{seconds:.0f}s" if float(seconds).is_integer() else f"{seconds}s"
