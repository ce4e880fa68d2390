"""Cloudflare cron triggers (`wrangler.toml`, `wrangler.json`) in and out.

Imported triggers become UTC jobs with their weekdays renumbered (`dialects.py`). An export
is a Worker whose `scheduled` handler calls cronlink: `POST /cron/{job}` for the jobs bound
to the trigger that fired, or, packed, one `* * * * *` trigger calling `POST /cron/tick`
so that any number of cronlink schedules, in any zone, take one of the account's triggers.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from datetime import datetime
from importlib.resources import files
from typing import Any

import json5
import tomli_w

from cronlink.interop.carry import APP_URL, Binding, Exported, Imported, job_name
from cronlink.interop.dialects import Untranslatable, from_cloudflare, to_cloudflare
from cronlink.jobs import Job
from cronlink.progress import Progress, silent

SCRIPT_NAME = "cronlink-triggers.js"
SCRIPT = (files("cronlink.interop") / SCRIPT_NAME).read_text()
"""The Worker's code, which reads its triggers' jobs from `CRONLINK_JOBS`."""


def read_config(text: str, source: str) -> dict[str, Any]:
    """`wrangler.toml`, `wrangler.json` or `wrangler.jsonc` (comments and trailing commas
    allowed) as a mapping (ValueError naming the problem)."""
    if source.endswith((".json", ".jsonc")):
        try:
            loaded = json5.loads(text)
        except ValueError as error:
            raise ValueError(f"not JSON: {error}") from None
    else:
        try:
            loaded = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"not TOML: {error}") from None
    if not isinstance(loaded, dict):
        raise ValueError("the top level is not a table")
    return loaded


def import_triggers(
    config: dict[str, Any],
    source: str,
    binding: Binding,
    env: str | None = None,
    progress: Progress = silent,
) -> Imported:
    """One job per cron trigger: UTC, no retry and overlapping runs allowed, as on
    Cloudflare. `env` reads `[env.NAME]`, whose triggers are inherited and vars are not."""
    imported = Imported(source=source, progress=progress)
    environments = _table(config, "env")
    section = config
    if env is not None:
        chosen = environments.get(env)
        if not isinstance(chosen, dict):
            known = ", ".join(sorted(environments)) or "none"
            raise ValueError(f"no [env.{env}] (environments: {known})")
        section = chosen
    where = f"[env.{env}.triggers]" if "triggers" in section and env else "[triggers]"
    crons = _table(section if "triggers" in section else config, "triggers").get("crons", [])
    if not isinstance(crons, list) or not all(isinstance(c, str) for c in crons):
        raise ValueError(f"{where} crons is not a list of strings")
    worker = job_name(str(section.get("name") or config.get("name") or "worker"))
    variables = _table(section, "vars") if env is not None else _table(config, "vars")
    app_url = variables.get("APP_URL")
    if isinstance(app_url, str) and binding.handler is None and binding.app_url == APP_URL:
        binding = Binding(app_url=f"${{APP_URL:-{app_url}}}")
    for name in sorted(set(variables) - {"APP_URL"}):
        imported.leave_out(
            f"[vars] {name}", "not a cronlink setting; set it where the code that reads it runs"
        )
    for n, cron in enumerate(crons, start=1):
        name = f"{worker}-cron-{n}"
        try:
            schedule = from_cloudflare(cron)
        except Untranslatable as error:
            imported.leave_out(f"cron {cron!r}", error.reason)
            continue
        imported.add(
            {
                "name": name,
                **binding.bind(name, json.dumps({"cron": cron})),
                "schedule": schedule,
                "timezone": "UTC",
                "max_attempts": 1,
                "overlap": "allow",
                "description": f"Cloudflare cron trigger {cron!r}",
            }
        )
    return imported


def _table(section: dict[str, Any], key: str) -> dict[str, Any]:
    value = section.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key} is not a table")
    return value


def export_triggers(
    jobs: Sequence[Job],
    app_url: str,
    *,
    pack: bool,
    quota: int,
    now: datetime,
    worker: str = "cronlink-triggers",
) -> Exported:
    """`wrangler.toml` for a Worker running `SCRIPT`: one trigger per distinct schedule,
    or, packed, a single every-minute trigger; more triggers than `quota` (the plan's) are
    listed."""
    left_out: list[str] = []
    bound: dict[str, list[str]] = {}
    for job in () if pack else jobs:  # packed, the Worker only ticks
        for schedule in job.schedules:
            try:
                cron = to_cloudflare(schedule.cron, schedule.timezone, now)
            except Untranslatable as error:
                left_out.append(f"job {job.name} ({schedule.cron.source}): {error.reason}")
                continue
            bound.setdefault(cron, []).append(job.name)
            if schedule.jitter:
                left_out.append(f"job {job.name}: jitter (Cloudflare fires on the minute)")
    scheduled = [job for job in jobs if job.schedules]
    seconds = any(s.cron.seconds != (0,) for job in scheduled for s in job.schedules)
    if pack and seconds:
        left_out.append("schedules with seconds: a minute tick fires them up to a minute late")
    if len(bound) > quota:
        left_out.append(
            f"{len(bound)} cron triggers: the plan has {quota}; --pack needs one for them all"
        )
    config: dict[str, Any] = {
        "name": worker,
        "main": SCRIPT_NAME,
        "compatibility_date": "2024-09-23",
        "triggers": {"crons": ["* * * * *"] if pack and scheduled else sorted(bound)},
        "vars": {"APP_URL": app_url.rstrip("/")},
    }
    if not pack:
        config["vars"]["CRONLINK_JOBS"] = {cron: names for cron, names in sorted(bound.items())}
    header = (
        f"# Written by `cronlink export wrangler{' --pack' if pack else ''}`: deploy with\n"
        "#   wrangler secret put CRON_SECRET && wrangler deploy\n"
    )
    return Exported(text=header + tomli_w.dumps(config), left_out=left_out)
