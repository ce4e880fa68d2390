"""Commands that start roles or prepare the database: init, run, scheduler, worker, db."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cronlink.cli.options import print_json, run_async, settings_from, settings_options
from cronlink.compose import compose
from cronlink.config import Settings
from cronlink.errors import CronlinkError
from cronlink.observe import logs, metrics
from cronlink.records.runs import Tier
from cronlink.runtime import open_store, run_roles

if TYPE_CHECKING:
    from cronlink.app import App
    from cronlink.progress import Progress


@click.command()
@click.option("--force", is_flag=True, help="Overwrite an existing cronlink.toml.")
@click.option(
    "--path", type=click.Path(dir_okay=False, path_type=Path), default=Path("cronlink.toml")
)
def init(force: bool, path: Path) -> None:
    """Write a starter cronlink.toml: a Python job, a heavy job, an HTTP target (commented)."""
    if path.exists() and not force:
        raise CronlinkError(f"{path} exists; left as it is (--force to overwrite)")
    path.write_text(resources.files("cronlink.cli").joinpath("starter.toml").read_text())
    click.echo(f"wrote {path}; start it with: cronlink run")


@click.group(invoke_without_command=True)
@click.option("--host", envvar="CRONLINK_HOST", show_envvar=True,
              help="The HTTP service's address (default [serve] host, 127.0.0.1).")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), envvar="CRONLINK_PORT", show_envvar=True,
              help="The HTTP service's port (default [serve] port, 8080; 0: any).")  # fmt: skip
@click.option("--no-serve", is_flag=True, help="Leave the HTTP service out.")
@settings_options
@click.pass_context
def run(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    no_serve: bool,
    config_path: Path | None,
    database_url: str | None,
    app_path: str | None,
) -> None:
    """Run every role in one process: scheduler, light and heavy workers, and the HTTP
    service (`cronlink serve`).

    `cronlink run show ID` shows one run instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings, app = compose(settings_from(config_path, database_url, app_path))
    listen = None
    if not no_serve:
        listen = (host or settings.serve.host, settings.serve.port if port is None else port)
    _serve(settings, app, scheduler=True, tiers=(Tier.LIGHT, Tier.HEAVY), listen=listen)


@run.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@settings_options
def show(
    run_id: int,
    as_json: bool,
    config_path: Path | None,
    database_url: str | None,
    app_path: str | None,
) -> None:
    """One run: state, attempts, timings, error, calls to chat models and log lines."""
    # Imported here: defers rich, which the roles in this module do not use.
    from cronlink.cli.show import show_run

    show_run(settings_from(config_path, database_url, app_path), run_id, as_json)


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="The sandbox provider's port on 127.0.0.1.")  # fmt: skip
@click.option("--serve-port", type=click.IntRange(1, 65535), default=8766, show_default=True,
              help="The port on 127.0.0.1 of cronlink's HTTP service: the dashboard, "
                   "/metrics and the API.")  # fmt: skip
@click.option("--lifetime", type=click.FloatRange(min=2), default=60, show_default=True,
              help="Seconds the sandbox's access tokens last.")  # fmt: skip
@click.option("--database-url", default=None,
              help="Where the demo keeps its state (default sqlite:///cronlink-demo.db). "
                   "DATABASE_URL and cronlink.toml are ignored, so that the demo never "
                   "touches a real deployment.")  # fmt: skip
def demo(port: int, serve_port: int, lifetime: float, database_url: str | None) -> None:
    """Try cronlink out: a local OAuth2 provider, connections with short-lived tokens, and
    every role with the dashboard; what happens prints a line at a time, and cronlink's own
    log goes to cronlink-demo.log."""
    # Imported here: defers the sandbox provider (authlib's server), which only the demo runs.
    from cronlink import demo as showcase

    logs.to_file(showcase.LOG_FILE)
    showcase.demo_key()
    settings = showcase.demo_settings(database_url)
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        run_async(
            showcase.demo(
                settings, port=port, serve_port=serve_port, lifetime=lifetime, say=click.echo
            )
        )


def metrics_options(command: Callable[..., None]) -> Callable[..., None]:
    """`--metrics-port` and `--metrics-host`: a role without `cronlink serve` in its process
    serves its own counters for Prometheus to scrape."""
    command = click.option(
        "--metrics-host", default="127.0.0.1", show_default=True, envvar="CRONLINK_METRICS_HOST",
        help="Address of --metrics-port (unauthenticated: keep it private).",
    )(command)  # fmt: skip
    return click.option(
        "--metrics-port", type=click.IntRange(1, 65535), envvar="CRONLINK_METRICS_PORT",
        help="Serve this process's metrics on http://HOST:PORT/metrics.",
    )(command)  # fmt: skip


def _export_metrics(host: str, port: int | None) -> None:
    if port is None:
        return
    try:
        metrics.serve_process_metrics(host, port)
    except OSError as error:
        raise CronlinkError(f"cannot serve metrics on {host}:{port}: {error.strerror}") from None


@click.command()
@metrics_options
@settings_options
def scheduler(
    metrics_host: str,
    metrics_port: int | None,
    config_path: Path | None,
    database_url: str | None,
    app_path: str | None,
) -> None:
    """Run the scheduler alone: turn due instants into runs, reap expired leases."""
    settings, app = compose(settings_from(config_path, database_url, app_path))
    _export_metrics(metrics_host, metrics_port)
    _serve(settings, app, scheduler=True, tiers=())


@click.command()
@click.option("--tier", type=click.Choice(["light", "heavy"]), required=True)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="Runs at once (default: [worker] light_concurrency / heavy_concurrency).",
)
@metrics_options
@settings_options
def worker(
    tier: str,
    concurrency: int | None,
    metrics_host: str,
    metrics_port: int | None,
    config_path: Path | None,
    database_url: str | None,
    app_path: str | None,
) -> None:
    """Run a worker of one tier alone."""
    settings, app = compose(settings_from(config_path, database_url, app_path))
    if concurrency is not None and tier == "light":
        settings = dataclasses.replace(settings, light_concurrency=concurrency)
    elif concurrency is not None:
        settings = dataclasses.replace(settings, heavy_concurrency=concurrency)
    _export_metrics(metrics_host, metrics_port)
    _serve(settings, app, scheduler=False, tiers=(Tier(tier),))


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.option("--json", "as_json", is_flag=True)
@settings_options
def upgrade(
    as_json: bool, config_path: Path | None, database_url: str | None, app_path: str | None
) -> None:
    """Create the schema or bring it to this version (refuses a newer database)."""
    # Imported here: rich, which the roles in this module do not use.
    from cronlink.cli.progress import bars

    settings = settings_from(config_path, database_url, app_path)

    async def go(progress: Progress) -> None:
        store = await open_store(settings, progress=progress)
        await store.close()

    with bars() as progress:
        run_async(go(progress))
    if as_json:
        print_json({"database": settings.database_url, "upgraded": True})
    else:
        click.echo(f"{settings.database_url}: schema up to date")


@db.command("copy")
@click.option("--from", "source", required=True, metavar="URL", help="Database to copy.")
@click.option(
    "--to", "target", required=True, metavar="URL", help="Database to fill (migrated first)."
)
@click.option("--force", is_flag=True, help="Replace the cronlink rows the target holds.")
@click.option("--json", "as_json", is_flag=True)
def copy_command(source: str, target: str, force: bool, as_json: bool) -> None:
    """Copy every cronlink table to another database, ids included, in one transaction.

    Typically `--from sqlite:///cronlink.db --to postgresql://USER@HOST/DB`; any direction
    works. Stop the roles using the source first: the copy is a snapshot.
    """
    # Imported here: only this command needs them (and, for PostgreSQL, its driver; rich,
    # which the roles in this module do not use).
    from cronlink.cli.progress import bars
    from cronlink.store.copy import SNAPSHOT_WARNING, copy_database

    if not as_json:
        click.echo(f"note: {SNAPSHOT_WARNING}")
    with bars() as progress:
        report = copy_database(source, target, force=force, progress=progress)
    if as_json:
        print_json({**dataclasses.asdict(report), "warning": SNAPSHOT_WARNING})
        return
    width = max(map(len, report.rows))
    for table, count in report.rows.items():
        click.echo(f"  {table:<{width}}  {count:>12,}")
    if report.replaced:
        click.echo(f"replaced the {report.replaced:,} rows the target held")
    click.echo(
        f"copied {sum(report.rows.values()):,} rows from {report.source} to {report.target} "
        f"in {report.seconds:.1f} s"
    )


def _serve(
    settings: Settings,
    app: App,
    *,
    scheduler: bool,
    tiers: tuple[Tier, ...],
    listen: tuple[str, int] | None = None,
) -> None:
    # uvloop made a PostgreSQL worker 19% faster but the HTTP service's p99 6 ms slower
    # (bench/queue_bench.py, bench/serve_bench.py): only processes that do not serve use it.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        roles = run_roles(settings, app, scheduler=scheduler, tiers=tiers, serve=listen)
        run_async(roles, libuv=listen is None)
