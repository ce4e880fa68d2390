"""Settings from `cronlink.toml` and the environment, checked before anything starts.

A bad file stops start-up with one `ConfigError` naming the file, the key and the problem.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cronlink.app import App, build_job
from cronlink.automations import jobs as automation_jobs
from cronlink.child import resolve
from cronlink.connections import jobs
from cronlink.durations import parse_duration
from cronlink.egress import EgressPolicy, parse_networks, policy_from
from cronlink.errors import ConfigError, CronSyntaxError
from cronlink.jobs import DEFAULT_MEMORY_LIMIT, HttpTarget, Job

DEFAULT_URL = "sqlite:///cronlink.db"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}  # fmt: skip
Duration = Annotated[str | float, Field(union_mode="left_to_right")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TargetModel(_Strict):
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    headers: dict[str, str] = {}
    body: str | None = None
    sign: bool = False
    """Send `X-Cronlink-Signature` made with CRON_SECRET (a target that is a cronlink)."""


class JobModel(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")]
    handler: str | None = None
    target: TargetModel | None = None
    schedule: str | None = None
    schedules: list[str] = []
    timezone: str = "UTC"
    tier: Literal["light", "heavy"] = "light"
    timeout: Duration | None = None
    memory_limit: str | int = DEFAULT_MEMORY_LIMIT
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    min_backoff: Duration = "1s"
    max_backoff: Duration = "5m"
    retry_on: list[str | int] = []
    overlap: Literal["skip", "queue", "allow", "replace"] = "skip"
    misfire: Literal["latest", "all", "skip"] = "latest"
    misfire_grace: Duration = "1h"
    jitter: Duration = 0
    description: str = ""

    @field_validator("timeout", "min_backoff", "max_backoff", "misfire_grace", "jitter")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration(value)
        return value


class WorkerModel(_Strict):
    light_concurrency: Annotated[int, Field(ge=1)] = 100
    heavy_concurrency: Annotated[int, Field(ge=1)] | None = None
    lease: Duration = "30s"
    heartbeat: Duration = "10s"
    poll: Duration = "500ms"
    shutdown_grace: Duration = "30s"


class ConnectionsModel(_Strict):
    """`[connections]`: present to turn on connections and their built-in jobs."""

    providers: str | None = None
    """A folder of provider files (TOML) added to, or overriding, the shipped ones."""
    refresh_schedule: str = "0 * * * *"
    health_schedule: str = "*/5 * * * *"
    down_after: Annotated[int, Field(ge=1)] = 3
    """Failed probes in a row before a connection is `down`."""
    up_after: Annotated[int, Field(ge=1)] = 2
    """Successful probes in a row before a `down` connection is `healthy` again."""
    passive_window: Duration = "5m"
    """A successful real call this recent stands in for a probe."""
    probe_concurrency: Annotated[int, Field(ge=1, le=1000)] = 100
    refresh_lease: Duration = "60s"
    """How long a refresh holds its connection (its token request may take half)."""

    @field_validator("passive_window", "refresh_lease")
    @classmethod
    def _duration(cls, value: str | float) -> str | float:
        if parse_duration(value).total_seconds() < 2:
            raise ValueError(f"{value!r} is too short; give at least 2s")
        return value


class AutomationsModel(_Strict):
    """`[automations]`: how triggers are polled and automations processed (the jobs are
    on whenever `[connections]` is)."""

    poll_schedule: str = "* * * * *"
    process_schedule: str = "*/15 * * * *"
    poll_concurrency: Annotated[int, Field(ge=1, le=1000)] = 100
    poll_batch: Annotated[int, Field(ge=1, le=10_000)] = 500
    poll_lease: Duration = "60s"
    """How long a poll holds its automation (a poller that died lets go after this)."""
    retention: Duration = "30d"
    """How long event keys are kept to recognise repeats (a time window, not a count)."""
    stalled_after: Duration = "24h"
    """An active trigger whose watermark stands still this long is reported stalled."""
    failing_after: Duration = "15m"
    """... and one whose polls keep failing this long."""

    @field_validator("poll_lease", "retention", "stalled_after", "failing_after")
    @classmethod
    def _duration(cls, value: str | float) -> str | float:
        if parse_duration(value).total_seconds() < 2:
            raise ValueError(f"{value!r} is too short; give at least 2s")
        return value


class ServeModel(_Strict):
    """`[serve]`: the HTTP service (`cronlink serve`)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    trusted_proxies: list[str] = []
    """Networks whose `X-Forwarded-For` is believed (your load balancer's), e.g. 10.0.0.0/8."""
    address_rate: Annotated[float, Field(gt=0)] = 20.0
    """Requests per second one client address may make (after a burst of `address_burst`)."""
    address_burst: Annotated[int, Field(ge=1)] = 40
    credential_rate: Annotated[float, Field(gt=0)] = 200.0
    """Requests per second one credential (a token, the cron secret) may make."""
    credential_burst: Annotated[int, Field(ge=1)] = 400
    require_signature: bool = False
    """Refuse /cron/* calls without a good `X-Cronlink-Signature` (not the bearer alone)."""
    max_body: str | int = "1MiB"
    """The largest request body accepted (413 beyond)."""
    request_timeout: Duration = "30s"
    """A request not answered by then is cut off (408): a slow client cannot pin it."""
    max_headers: str | int = "16KiB"
    """The most header bytes a request may carry, all headers together (431 beyond)."""
    max_json_depth: Annotated[int, Field(ge=1, le=512)] = 32
    """How deep a JSON body may nest (400 beyond), checked before any parser recurses."""
    public_url: str | None = None
    """The address browsers reach this service at (`https://cron.example.com`), when a
    proxy terminates TLS in front of it: OAuth redirect URIs and cookies are built on it.
    Unset: the address of the request."""

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"{value!r} is not a base URL like https://cron.example.com")
        return value.rstrip("/")

    @field_validator("max_body", "max_headers")
    @classmethod
    def _size(cls, value: str | int) -> str | int:
        parse_size(value)
        return value

    @field_validator("request_timeout")
    @classmethod
    def _timeout(cls, value: str | float) -> str | float:
        parse_duration(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an IP network like 10.0.0.0/8") from None
        return value


class FileModel(_Strict):
    database_url: str | None = None
    app: str | None = None
    allow_private_networks: bool = False
    """Let outbound requests reach loopback, private, link-local and shared addresses
    (development, a sandbox); off, only public addresses are reached (see egress.py)."""
    private_networks: list[str] = []
    """Networks outbound requests may reach whatever their kind, e.g. 10.1.0.0/16."""
    worker: WorkerModel = WorkerModel()
    connections: ConnectionsModel | None = None
    automations: AutomationsModel = AutomationsModel()
    serve: ServeModel = ServeModel()
    jobs: list[JobModel] = []

    @field_validator("private_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value


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
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    """What outbound requests may reach: public addresses only unless opened."""


def load_settings(
    config: Path | None = None, database_url: str | None = None, app_path: str | None = None
) -> Settings:
    """Read `config` (or ./cronlink.toml when it exists); flags beat env beats the file."""
    path = config if config is not None else Path("cronlink.toml")
    parsed = FileModel()
    if config is not None or path.exists():
        parsed = _read(path)
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
    return app


def connection_jobs(
    model: ConnectionsModel, automations: AutomationsModel | None = None
) -> list[Job]:
    """The built-in jobs that keep connections usable (`cronlink.connections.jobs`) and
    run automations (`cronlink.automations.jobs`)."""
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
            schedules=[], tier="light", timeout="2m", max_attempts=1, overlap="allow",
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


def parse_size(value: str | int) -> int:
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"memory_limit {value!r} is not a size; write it like 512MiB or 2GiB")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])


def _import(path: str, what: str, where: str) -> Any:
    if ":" not in path:
        raise ConfigError(f"{where}: {path!r} must look like package.module:{what}")
    try:
        return resolve(path)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{where}: cannot load {path!r} ({error})") from None


def _read(path: Path) -> FileModel:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    try:
        return FileModel.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
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
