"""Settings from `cronlink.toml` and the environment, checked before anything starts.

A bad file stops start-up with one `ConfigError` naming the file, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cronlink.app import App, build_job
from cronlink.child import resolve
from cronlink.config_models import (
    AlertsModel,
    AutomationsModel,
    ConnectionsModel,
    FileModel,
    JobModel,
    PricingModel,
    ServeModel,
    UsageModel,
    parse_size,
)
from cronlink.durations import parse_duration
from cronlink.egress import EgressPolicy, policy_from
from cronlink.errors import ConfigError, CronSyntaxError
from cronlink.jobs import HttpTarget, Job
from cronlink.observe.alert_job import watch_alerts_job

DEFAULT_URL = "sqlite:///cronlink.db"


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    database_url: str = DEFAULT_URL
    config_path: Path | None = None
    app_path: str | None = None
    light_concurrency: int = 100
    heavy_concurrency: int | None = None
    lease: timedelta = timedelta(seconds=30)
    heartbeat: timedelta = timedelta(seconds=10)
    poll: float = 0.5
    shutdown_grace: timedelta = timedelta(seconds=30)
    jobs: tuple[JobModel, ...] = field(default=())
    connections: ConnectionsModel | None = None
    automations: AutomationsModel = field(default_factory=AutomationsModel)
    serve: ServeModel = field(default_factory=ServeModel)
    alerts: AlertsModel | None = None
    """`[alerts]`: on when present (the `watch-alerts` job)."""
    usage: UsageModel = field(default_factory=UsageModel)
    pricing: PricingModel = field(default_factory=PricingModel)
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    """What outbound requests may reach: public addresses only unless opened."""


def load_settings(
    config: Path | None = None, database_url: str | None = None, app_path: str | None = None
) -> Settings:
    """Read `config` (or ./cronlink.toml when it exists); flags beat env beats the file."""
    path = config if config is not None else Path("cronlink.toml")
    parsed = FileModel()
    if config is not None or path.exists():
        parsed = read_file(path)
    return Settings(
        database_url=database_url
        or os.environ.get("DATABASE_URL")
        or parsed.database_url
        or DEFAULT_URL,
        config_path=path if path.exists() else None,
        app_path=app_path or os.environ.get("CRONLINK_APP") or parsed.app,
        light_concurrency=parsed.worker.light_concurrency,
        heavy_concurrency=parsed.worker.heavy_concurrency,
        lease=parse_duration(parsed.worker.lease),
        heartbeat=parse_duration(parsed.worker.heartbeat),
        poll=parse_duration(parsed.worker.poll).total_seconds(),
        shutdown_grace=parse_duration(parsed.worker.shutdown_grace),
        jobs=tuple(parsed.jobs),
        connections=parsed.connections,
        automations=parsed.automations,
        serve=parsed.serve,
        alerts=parsed.alerts,
        usage=parsed.usage,
        pricing=parsed.pricing,
        egress=policy_from(parsed.allow_private_networks, parsed.private_networks, os.environ),
    )


def build_app(settings: Settings) -> App:
    """The jobs of `--app` (if any) plus those of the file, each checked."""
    app = App()
    if settings.app_path:
        loaded = _import(settings.app_path, "app", "--app")
        if not isinstance(loaded, App):
            raise ConfigError(
                f"--app {settings.app_path!r} is a {type(loaded).__name__}, not a cronlink.App"
            )
        app.jobs.update(loaded.jobs)
    where = settings.config_path or Path("cronlink.toml")
    if settings.connections is not None:
        for builtin in connection_jobs(settings.connections, settings.automations):
            app.add(builtin)
    for index, job in enumerate(settings.jobs):
        key = f"jobs[{index}] ({job.name})"
        try:
            app.add(_job(job, key, where))
        except ConfigError as error:
            raise ConfigError(f"{where}: {key}: {error}") from None
        except (CronSyntaxError, ValueError) as error:
            raise ConfigError(f"{where}: {key}: {error}") from None
    if settings.alerts is not None:
        try:
            app.add(watch_alerts_job(settings.alerts, settings.usage, settings.database_url,
                                     app.jobs))  # fmt: skip
        except (CronSyntaxError, ValueError) as error:
            raise ConfigError(f"{where}: alerts.schedule: {error}") from None
    return app


def compose(settings: Settings) -> tuple[Settings, App]:
    """The App of `settings`, and the settings without the jobs' file models, which the
    App holds as jobs: a role that keeps only these does not pay ~1 KB a job for them."""
    return dataclasses.replace(settings, jobs=()), build_app(settings)


def connection_jobs(
    model: ConnectionsModel, automations: AutomationsModel | None = None
) -> list[Job]:
    """The built-in jobs that keep connections usable (`cronlink.connections.jobs`) and
    run automations (`cronlink.automations.jobs`)."""
    # Imported here: defers the connection and automation domains (authlib, cryptography),
    # which only a deployment with [connections] loads.
    from cronlink.automations import jobs as automation_jobs
    from cronlink.connections import jobs

    polling = automations or AutomationsModel()
    return [
        build_job(
            name=jobs.REFRESH_TOKENS, handler=jobs.refresh_tokens,
            handler_path="cronlink.connections.jobs:refresh_tokens",
            schedules=[model.refresh_schedule], tier="light", timeout="5m", max_attempts=3,
            description="queue a refresh for every connection due or idle (the safety net)",
        ),
        build_job(
            name=jobs.REFRESH_CONNECTION, handler=jobs.refresh_connection,
            handler_path="cronlink.connections.jobs:refresh_connection",
            # Retried promptly when its worker dies: a refresh cut off after the provider
            # rotated the token must be retried inside the provider's grace window, and a
            # retry of one that did finish finds newer tokens and does nothing.
            schedules=[], tier="light", timeout="2m", max_attempts=5, min_backoff="500ms",
            max_backoff="2s", overlap="allow",
            description="refresh one connection's tokens (queued at its refresh_due_at)",
        ),
        build_job(
            name=jobs.CHECK_HEALTH, handler=jobs.check_health,
            handler_path="cronlink.connections.jobs:check_health",
            schedules=[model.health_schedule], tier="light", timeout="4m", max_attempts=1,
            description="probe every active connection; health with damping",
        ),
        build_job(
            name=automation_jobs.POLL_TRIGGERS, handler=automation_jobs.poll_triggers,
            handler_path="cronlink.automations.jobs:poll_triggers",
            schedules=[polling.poll_schedule], tier="light", timeout="58s", max_attempts=1,
            description="poll automations' triggers as they fall due; new events start runs",
        ),
        build_job(
            name=automation_jobs.PROCESS_AUTOMATION, handler=automation_jobs.process_automation,
            handler_path="cronlink.automations.jobs:process_automation",
            schedules=[], tier="heavy", max_attempts=3, retry_on=["ChildCrashed"],
            overlap="allow", description="run an automation's steps on its new events",
        ),
        build_job(
            name=automation_jobs.PROCESS_AUTOMATIONS,
            handler=automation_jobs.process_automations,
            handler_path="cronlink.automations.jobs:process_automations",
            schedules=[polling.process_schedule], tier="heavy", max_attempts=3,
            retry_on=["ChildCrashed"],
            description="scheduled automations, stranded events, old keys, pending work",
        ),
    ]  # fmt: skip


def _job(model: JobModel, key: str, where: Path) -> Any:
    if (model.handler is None) == (model.target is None):
        raise ConfigError("give exactly one of 'handler' (module:function) or 'target' (a URL)")
    schedules = ([model.schedule] if model.schedule else []) + list(model.schedules)
    handler = (
        _import(model.handler, "handler", f"{where}: {key}: handler") if model.handler else None
    )
    target = None
    if model.target is not None:
        target = HttpTarget(
            url=model.target.url,
            method=model.target.method,
            headers=dict(model.target.headers),
            body=model.target.body,
            sign=model.target.sign,
        )
    return build_job(
        name=model.name,
        schedules=schedules,
        tier=model.tier,
        timezone=model.timezone,
        timeout=model.timeout,
        max_attempts=model.max_attempts,
        min_backoff=model.min_backoff,
        max_backoff=model.max_backoff,
        retry_on=model.retry_on,
        overlap=model.overlap,
        misfire=model.misfire,
        misfire_grace=model.misfire_grace,
        jitter=model.jitter,
        handler=handler,
        handler_path=model.handler,
        target=target,
        memory_limit=parse_size(model.memory_limit),
        description=model.description,
    )


def _import(path: str, what: str, where: str) -> Any:
    if ":" not in path:
        raise ConfigError(f"{where}: {path!r} must look like package.module:{what}")
    try:
        return resolve(path)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{where}: cannot load {path!r} ({error})") from None


def read_file(path: Path) -> FileModel:
    """`path` as checked `cronlink.toml` sections (ConfigError naming the key)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    try:
        return FileModel.model_validate(data)
    except ValidationError as error:
        first: dict[str, Any] = dict(error.errors()[0])
        if first["loc"][:2] == ("alerts", "urls"):
            first.pop("input", None)  # an alert URL holds its channel's secret
        raise ConfigError(f"{path}: {_key(first['loc'], data)}: {_problem(first)}") from None


def _key(location: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """`jobs[2] (nightly).timeout` from pydantic's location, skipping its union tags."""
    text = ""
    for step in location:
        if isinstance(step, int):
            text += f"[{step}]"
        elif step not in _UNION_TAGS and not step.startswith("function-"):
            text += f".{step}" if text else step
    if len(location) > 1 and location[0] == "jobs" and isinstance(location[1], int):
        jobs = data.get("jobs")
        if isinstance(jobs, list) and isinstance(jobs[location[1]], dict):
            name = jobs[location[1]].get("name")
            if isinstance(name, str):
                text = text.replace(f"jobs[{location[1]}]", f"jobs[{location[1]}] ({name})", 1)
    return text


_UNION_TAGS = {"str", "int", "float", "bool"}


def _problem(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return (
        f"{message} (got {error['input']!r})"
        if "input" in error and kind != "value_error"
        else message
    )
