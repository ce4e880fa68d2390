"""Settings from `cronlink.toml` and the environment, checked before anything starts.

A bad file stops start-up with one `ConfigError` naming the file, the key and the problem.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cronlink.config_models import (
    AiModel,
    AlertsModel,
    AutomationsModel,
    ConnectionsModel,
    FileModel,
    JobModel,
    PricingModel,
    ServeModel,
    UsageModel,
)
from cronlink.egress import EgressPolicy, policy_from
from cronlink.errors import ConfigError

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
    ai: AiModel = field(default_factory=AiModel)
    """`[ai.models.NAME]`: the chat models automations may call."""


CONFIG_FILE = "cronlink.toml"
"""Read from the working directory unless a path is given."""


def load_settings(
    config: Path | None = None, database_url: str | None = None, app_path: str | None = None
) -> Settings:
    """Read `config` (or ./cronlink.toml when it exists); flags beat env beats the file."""
    path = config if config is not None else Path(CONFIG_FILE)
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
        lease=parsed.worker.lease,
        heartbeat=parsed.worker.heartbeat,
        poll=parsed.worker.poll.total_seconds(),
        shutdown_grace=parsed.worker.shutdown_grace,
        jobs=tuple(parsed.jobs),
        connections=parsed.connections,
        automations=parsed.automations,
        serve=parsed.serve,
        alerts=parsed.alerts,
        usage=parsed.usage,
        pricing=parsed.pricing,
        ai=parsed.ai,
        egress=policy_from(parsed.allow_private_networks, parsed.private_networks, os.environ),
    )


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
        if first["loc"][:2] == ("alerts", "urls") or "api_key" in first["loc"]:
            first.pop("input", None)  # an alert URL holds its channel's secret; a key is one
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
