"""The composition root: settings, then the built-in jobs, then the `App`, then the
services the roles run (connections, automations) over a store and an HTTP session.

Everything below receives its parts from here; nothing below imports this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cronlink.app import App
from cronlink.builtin_jobs import alert_job, connection_jobs
from cronlink.config import Settings, load_settings
from cronlink.config_models import ConnectionsModel, JobModel
from cronlink.errors import ConfigError, CronSyntaxError
from cronlink.jobs import HttpTarget, build_job
from cronlink.loading import resolve

if TYPE_CHECKING:
    from cronlink.automations.service import Automations
    from cronlink.connections.service import Connections


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
            app.add(_job(job))
        except ConfigError as error:
            raise ConfigError(f"{where}: {key}: {error}") from None
        except (CronSyntaxError, ValueError) as error:
            raise ConfigError(f"{where}: {key}: {error}") from None
    if settings.alerts is not None:
        try:
            app.add(alert_job(settings))
        except (CronSyntaxError, ValueError) as error:
            raise ConfigError(f"{where}: alerts.schedule: {error}") from None
    return app


def compose(settings: Settings) -> tuple[Settings, App]:
    """The App of `settings`, and the settings without the jobs' file models, which the
    App holds as jobs: a role that keeps only these does not pay ~1 KB a job for them."""
    return dataclasses.replace(settings, jobs=()), build_app(settings)


def _job(model: JobModel) -> Any:
    if (model.handler is None) == (model.target is None):
        raise ConfigError("give exactly one of 'handler' (module:function) or 'target' (a URL)")
    schedules = ([model.schedule] if model.schedule else []) + list(model.schedules)
    handler = _import(model.handler, "handler", "handler") if model.handler else None
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
        memory_limit=model.memory_limit,
        description=model.description,
    )


def _import(path: str, what: str, where: str) -> Any:
    if ":" not in path:
        raise ConfigError(f"{where}: {path!r} must look like package.module:{what}")
    try:
        return resolve(path)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{where}: cannot load {path!r} ({error})") from None


def with_builtins(app: App, settings: Settings) -> App:
    """`app` plus the built-in connection and automation jobs, which new events need."""
    assert settings.connections is not None
    merged = App()
    merged.jobs = dict(app.jobs)
    for builtin in connection_jobs(settings.connections, settings.automations):
        merged.jobs.setdefault(builtin.name, builtin)
    return merged


def connections(
    app: App | None = None, settings: Settings | None = None
) -> contextlib.AbstractAsyncContextManager[Connections]:
    """Connections from Python: `async with connections(app) as connections:` then `add`,
    `find`, `get`, `refresh`, `check`, `disable`, `delete`, `credentials` …

    `settings` default to ./cronlink.toml and the environment; connections are on (with
    their defaults) even without a `[connections]` section.
    """
    # Imported here: defers the connection domain (authlib, cryptography, providers).
    from cronlink.services import connections_for

    chosen = _connected(settings)
    return connections_for(chosen, with_builtins(app or App(), chosen))


def automations(
    app: App | None = None, settings: Settings | None = None
) -> contextlib.AbstractAsyncContextManager[Automations]:
    """Automations from Python: `async with automations(app) as automations:` then `add`,
    `find`, `get`, `pause`, `resume`, `events`, `replay` …"""
    # Imported here: defers the connection domain (authlib, cryptography, providers).
    from cronlink.services import automations_for

    chosen = _connected(settings)
    return automations_for(chosen, with_builtins(app or App(), chosen))


def _connected(settings: Settings | None) -> Settings:
    chosen = settings or load_settings()
    if chosen.connections is None:
        chosen = dataclasses.replace(chosen, connections=ConnectionsModel())
    return chosen
