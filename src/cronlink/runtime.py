"""Compose and run the roles (scheduler, light worker, heavy worker) until told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from cronlink.ai.models import Models
from cronlink.builtin_jobs import alert_watch
from cronlink.engine.scheduler import Scheduler
from cronlink.engine.tiers import HeavyTier, LightTier
from cronlink.engine.worker import Worker
from cronlink.errors import StoreError
from cronlink.http_client import new_session
from cronlink.observe import tracing
from cronlink.plurals import counted
from cronlink.progress import Progress, silent
from cronlink.records.runs import Tier
from cronlink.store import Store, store_for
from cronlink.web import secrets

if TYPE_CHECKING:
    import aiohttp

    from cronlink.app import App
    from cronlink.automations.service import Automations
    from cronlink.config import Settings
    from cronlink.connections.service import Connections

log = logging.getLogger("cronlink")


async def open_store(
    settings: Settings, *, migrate: bool = True, progress: Progress = silent
) -> Store:
    store = store_for(settings.database_url)
    try:
        await store.open(migrate=migrate, progress=progress)
    except BaseException:
        await store.close()
        raise
    return store


async def _migrate_elsewhere(settings: Settings) -> None:
    """Bring the schema up to date in a process of its own (`cronlink db upgrade`):
    Alembic and the migrations would stay in this long-lived role's memory for good (~13
    MiB). The database URL goes through the environment, never a command line."""
    store = await open_store(settings, migrate=False)
    try:
        behind = await store.schema_behind()
    finally:
        await store.close()
    if not behind:
        return
    command = [sys.executable, "-m", "cronlink", "db", "upgrade"]
    if settings.config_path is not None:
        command += ["--config", str(settings.config_path)]
    child = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "DATABASE_URL": settings.database_url},
    )  # fmt: skip
    _, said = await child.communicate()
    if child.returncode != 0:
        lines = [line for line in said.decode(errors="replace").splitlines() if line.strip()]
        raise StoreError(f"the schema upgrade failed: {lines[-1] if lines else child.returncode}")


async def run_roles(
    settings: Settings,
    app: App,
    *,
    scheduler: bool,
    tiers: tuple[Tier, ...],
    serve: tuple[str, int] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the chosen roles in this process (`serve`: the HTTP service on this host and
    port too); SIGINT/SIGTERM stop them gracefully."""
    # Every role reads CRON_SECRET (a target's ${CRON_SECRET}) or the signing key: a bad
    # one stops them all at start, not a call at a time.
    secrets.check(
        os.environ, require_signature=serve is not None and settings.serve.require_signature
    )
    stop = stop or _stop_on_signals()
    await _migrate_elsewhere(settings)
    async with AsyncExitStack() as stack:
        _trace(stack)
        store = await open_store(settings)
        stack.push_async_callback(store.close)
        session = new_session(settings.egress)
        stack.push_async_callback(session.close)
        connections, automations = await _domains(settings, store, session, app)
        alerts = alert_watch(settings, store, app.jobs)
        ai = Models.from_section(settings.ai)
        wakeups = {tier: asyncio.Event() for tier in Tier}
        heavy = tuple(sorted({
            job.handler_path.partition(":")[0] for job in app.jobs.values()
            if job.tier is Tier.HEAVY and job.handler_path
        }))  # fmt: skip
        if automations is not None:
            automations.wake = lambda tier: wakeups[tier].set()
        # Serving starts first: a port in use ends the start before any role runs (and
        # claims from a store about to close).
        url = "no"
        if serve is not None:
            # Imported here: defers the web stack (FastAPI, uvicorn, Jinja2), which only a
            # role that serves loads.
            from cronlink.web.server import serving

            url = await stack.enter_async_context(
                serving(
                    store,
                    app,
                    *serve,
                    settings.serve,
                    connections,
                    automations,
                    settings.usage,
                    settings.pricing,
                    settings.ai.budgets,
                )
            )
        roles: list[asyncio.Task[None]] = []
        for tier in tiers:
            worker = Worker(
                store,
                app.jobs,
                tier,
                LightTier(session) if tier is Tier.LIGHT else HeavyTier(session, preload=heavy),
                concurrency=settings.light_concurrency
                if tier is Tier.LIGHT
                else settings.heavy_concurrency,
                lease=settings.lease,
                heartbeat=settings.heartbeat,
                poll=settings.poll,
                shutdown_grace=settings.shutdown_grace,
                wakeup=wakeups[tier],
                on_enqueue=lambda t: wakeups[t].set(),
                connections=connections,
                automations=automations,
                alerts=alerts,
                ai=ai,
            )
            # Seen before the start is announced: a `?wait=true` call right after finds it.
            await worker.alive()
            roles.append(asyncio.create_task(worker.run(stop), name=f"worker-{tier.value}"))
        if scheduler:

            def wake_workers() -> None:
                for event in wakeups.values():
                    event.set()

            chief = Scheduler(store, app.jobs, on_fire=wake_workers)
            roles.append(asyncio.create_task(chief.run(stop), name="scheduler"))
        log.info(
            "cronlink running: %s, scheduler=%s, workers=%s, serving %s, database %s",
            counted(len(app.jobs), "job"),
            scheduler,
            ",".join(t.value for t in tiers) or "none",
            url,
            store.url,
        )
        await _until_done(roles, stop)


async def serve_http(
    settings: Settings, app: App, host: str, port: int, stop: asyncio.Event | None = None
) -> None:
    """`cronlink serve`: the HTTP service alone, until SIGINT/SIGTERM (or `stop`)."""
    secrets.check(os.environ, require_signature=settings.serve.require_signature)
    stop = stop or _stop_on_signals()
    await _migrate_elsewhere(settings)
    async with AsyncExitStack() as stack:
        _trace(stack)
        store = await open_store(settings)
        stack.push_async_callback(store.close)
        connections = automations = None
        if settings.connections is not None:
            session = new_session(settings.egress)
            stack.push_async_callback(session.close)
            connections, automations = await _domains(settings, store, session, app)
        # Imported here: defers the web stack (FastAPI, uvicorn, Jinja2) to where serving
        # starts, as in `run_roles`.
        from cronlink.web.server import serving

        url = await stack.enter_async_context(
            serving(
                store,
                app,
                host,
                port,
                settings.serve,
                connections,
                automations,
                settings.usage,
                settings.pricing,
                settings.ai.budgets,
            )
        )
        log.info("cronlink serving on %s, database %s", url, store.url)
        log.info(
            "this process runs no workers and no scheduler: queued runs wait for `cronlink "
            "run` or `cronlink worker`, schedules fire from `cronlink scheduler` (or a cron "
            "calling POST /cron/tick)"
        )
        await stop.wait()


def _trace(stack: AsyncExitStack) -> None:
    """Trace this process's runs and calls when `OTEL_*` asks for it, until the roles end;
    what is left is exported then, last (after the sessions whose spans it holds)."""
    if tracing.start():
        stack.push_async_callback(asyncio.to_thread, tracing.stop)


async def _domains(
    settings: Settings, store: Store, session: aiohttp.ClientSession, app: App
) -> tuple[Connections | None, Automations | None]:
    """Connections and automations when `[connections]` is configured, else neither."""
    if settings.connections is None:
        return None, None
    # Imported here: defers the connection domain (authlib, cryptography, providers),
    # which only a deployment with [connections] loads.
    from cronlink.services import open_automations, open_connections

    connections = await open_connections(settings, store, session, app)
    return connections, open_automations(settings, connections, app)


async def _until_done(roles: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*roles, stopper], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await asyncio.gather(*roles, return_exceptions=True)
    stopper.cancel()
    for task in done:
        if task is not stopper and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        if stop.is_set():
            raise SystemExit(1)  # a second signal: leave now; leases expire and runs retry
        log.info("stopping: finishing running attempts (signal again to exit at once)")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    return stop
