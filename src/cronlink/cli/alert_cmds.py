"""`cronlink alerts test|list`: try the alert channels; see what is firing."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cronlink.cli.options import print_json, run_async, settings_from, settings_options, with_store
from cronlink.cli.show import console, when
from cronlink.compose import build_app
from cronlink.errors import ConfigError
from cronlink.observe.alert_job import Watch, summary_line
from cronlink.observe.alerts import Evaluation
from cronlink.records.alerts import Alert, AlertState, Message

if TYPE_CHECKING:
    from cronlink.config import Settings
    from cronlink.config_models import AlertsModel
    from cronlink.store import Store


@click.group()
def alerts() -> None:
    """Alerts through apprise URLs ([alerts] in cronlink.toml), sent by `watch-alerts`."""


@alerts.command("test")
@settings_options
def test(**options: Any) -> None:
    """Send a sample message to every URL of [alerts]; exit 1 naming those that failed."""
    # Imported here: apprise loads its ~100 plugins, which only this command needs.
    from cronlink.observe.notify import Notifier

    model = _configured(_settings(options))
    label = model.label
    notifier = Notifier(model.urls)
    sample = Message(
        title=f"[{label}] test message",
        body=f"cronlink ({label}) can reach this channel: `cronlink alerts test` sent this.",
    )
    failed = run_async(notifier.send(sample))
    for index in range(len(notifier.urls)):
        outcome = f"failed: {failed[index]}" if index in failed else "sent"
        click.echo(f"channel {notifier.shown(index)}: {outcome}")
    if failed:
        names = ", ".join(notifier.shown(i) for i in failed)
        click.echo(f"error: {len(failed)} of {len(notifier.urls)} failed: {names}", err=True)
        sys.exit(1)


@alerts.command("check")
@settings_options
def check(**options: Any) -> None:
    """Evaluate the rules once now and send what is owed, as `watch-alerts` does: from a
    system timer, it also covers a cronlink whose schedulers are all down."""
    settings = _settings(options)
    model, jobs = _configured(settings), build_app(settings).jobs

    async def once(store: Store) -> Evaluation:
        return await Watch(model, settings.usage, jobs, store, settings.ai.budgets).once(
            datetime.now(UTC)
        )

    click.echo(summary_line(with_store(settings, once)))


@alerts.command("list")
@click.option("--all", "everything", is_flag=True, help="Resolved alerts too.")
@click.option("--json", "as_json", is_flag=True)
@settings_options
def list_alerts(everything: bool, as_json: bool, **options: Any) -> None:
    """The alerts firing now (the oldest first), with what each says."""
    state = None if everything else AlertState.FIRING
    found = with_store(_settings(options), lambda s: s.alerts.list(state))
    if as_json:
        print_json([_alert_dict(a) for a in found])
        return
    if not found:
        click.echo("no alert is firing" if state else "no alert has fired")
        return
    table = Table("key", "state", "since", "resolved", "subject")
    for a in found:
        table.add_row(a.key, a.state.value, when(a.since), when(a.resolved_at), a.subject)
    console.print(table)


def _alert_dict(alert: Alert) -> dict[str, Any]:
    return {"key": alert.key, "rule": alert.rule, "state": alert.state.value,
            "since": alert.since, "resolved_at": alert.resolved_at, "subject": alert.subject,
            "body": alert.body, "notified_at": alert.notified_at,
            "owed": alert.owed.value if alert.owed else None}  # fmt: skip


def _configured(settings: Settings) -> AlertsModel:
    if settings.alerts is None:
        raise ConfigError(
            "alerts are not configured: add an [alerts] section with urls = [...] to "
            f"{settings.config_path or 'cronlink.toml'} (see docs/alerts.md)"
        )
    return settings.alerts


def _settings(options: dict[str, Any]) -> Settings:
    return settings_from(options["config_path"], options["database_url"], options["app_path"])
