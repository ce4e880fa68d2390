"""`cronlink demo`: the sandbox provider, `cronlink run` with its HTTP service, and a
handful of connections with short-lived tokens, so that refreshes and health checks show
up within a minute; an automation whose `ai` step has the sandbox's chat model classify and
summarise each new email the sandbox sends, then posts the answer to a webhook; a daily
report (run once shortly after the start too) whose `ai` step summarises the day's emails
and whose `report` step delivers it as Markdown to another webhook; what the model cost;
and a nightly sync, run once at the start, that copies 10,000 records to the sandbox's CRM
through a second connection of the same owner. The dashboard, `/metrics` and the API are
served on 127.0.0.1, with a read-only token to log in with.

It keeps to its own database (`cronlink-demo.db`) and, when CRONLINK_SECRET_KEY is not set,
its own key (`.cronlink-demo.key`, readable by you only). The model's key is read from
SANDBOX_MODEL_KEY, set to the sandbox's own when absent (the sandbox takes whichever it
is). The sandbox keeps its grants in memory, so each start replaces the previous demo
connections with fresh ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cronlink import control
from cronlink.app import App
from cronlink.automations.jobs import POLL_TRIGGERS
from cronlink.builtin_jobs import connection_jobs
from cronlink.config import Settings
from cronlink.config_models import AiModel, AutomationsModel, ChatModelModel, ConnectionsModel
from cronlink.connections.crypto import ENV, generate_key
from cronlink.connections.jobs import CHECK_HEALTH
from cronlink.demo import seed
from cronlink.demo.narrator import Narrator
from cronlink.egress import LOOPBACK
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records.api_tokens import Scope
from cronlink.records.runs import Reason, Tier
from cronlink.runtime import open_store, run_roles
from cronlink.sandbox import Sandbox
from cronlink.scrubbing import without_password
from cronlink.services import open_automations, open_connections

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.store import Store

DATABASE = "sqlite:///cronlink-demo.db"
KEY_FILE = Path(".cronlink-demo.key")
LOG_FILE = Path("cronlink-demo.log")
"""Where `cronlink demo` sends cronlink's own log lines: the terminal is the story's."""
MODEL, MODEL_KEY = seed.MODEL, seed.MODEL_KEY
TOKEN_LIFETIME = timedelta(days=1)
"""How long the demo's read-only login token lasts."""


def demo_settings(database_url: str | None = None) -> Settings:
    """The demo's own settings: connections on, health checked every minute, its own
    database, outbound requests to loopback (its sandbox on 127.0.0.1); nothing from
    cronlink.toml or the environment (no real jobs, no real data)."""
    return Settings(
        database_url=database_url or DATABASE,
        egress=LOOPBACK,
        connections=ConnectionsModel(health_schedule="* * * * *"),
        automations=AutomationsModel(process_schedule="* * * * *"),
    )


def with_model(settings: Settings, sandbox_url: str) -> Settings:
    """`settings` with the sandbox's chat model declared as `sandbox`, priced as a small
    hosted model is (USD per million tokens) so that what the demo spends shows."""
    model = ChatModelModel(
        base_url=f"{sandbox_url}/v1", model="sandbox-model", api_key=f"${{{MODEL_KEY}}}",
        input_price=0.15, output_price=0.60,
    )  # fmt: skip
    return dataclasses.replace(settings, ai=AiModel(models={**settings.ai.models, MODEL: model}))


def demo_key() -> None:
    """Use CRONLINK_SECRET_KEY, or the demo's own key file (made on first use)."""
    if os.environ.get(ENV):
        return
    if not KEY_FILE.exists():
        KEY_FILE.touch(mode=0o600)
        KEY_FILE.write_text(generate_key())
    os.environ[ENV] = KEY_FILE.read_text().strip()


async def demo(
    settings: Settings,
    *,
    port: int,
    serve_port: int,
    lifetime: float,
    say: Callable[[str], None],
    stop: asyncio.Event | None = None,
) -> None:
    """Run the demo until `stop` (or SIGINT/SIGTERM): the sandbox on `port`, cronlink's
    HTTP service on `serve_port`, both on 127.0.0.1; each thing that happens `say`s a line."""
    async with Sandbox(port=port) as sandbox:
        os.environ["CRONLINK_SANDBOX_URL"] = sandbox.url
        # The model's key stays in the environment: settings name it, output never shows it.
        os.environ[MODEL_KEY] = os.environ.get(MODEL_KEY) or sandbox.switches.model_api_key
        sandbox.configure(token_lifetime=lifetime, model_api_key=os.environ[MODEL_KEY])
        settings = with_model(settings, sandbox.url)
        app = App()
        for job in connection_jobs(
            settings.connections or ConnectionsModel(), settings.automations
        ):
            app.add(job)
        store = await open_store(settings)
        session = new_session(settings.egress)
        try:
            connections = await open_connections(settings, store, session, app)
            ids = await seed.seed_connections(connections, sandbox, lifetime)
            automations = open_automations(settings, connections, app)
            report = await seed.seed_automations(automations, sandbox, ids)
            narrator = Narrator(connections, automations, store, say)
            await narrator.skip_earlier()
            for starter in (CHECK_HEALTH, POLL_TRIGGERS):
                await store.enqueue(new_run(app.get(starter), Reason.MANUAL), datetime.now(UTC))
            for said in await _welcome(settings, store, sandbox, lifetime, serve_port):
                say(said)
            chores = [
                asyncio.create_task(narrator.run()),
                asyncio.create_task(seed.send_emails(sandbox)),
                asyncio.create_task(seed.first_report(automations, report)),
            ]
            try:
                await run_roles(
                    settings, app, scheduler=True, tiers=(Tier.LIGHT, Tier.HEAVY),
                    serve=("127.0.0.1", serve_port), stop=stop,
                )  # fmt: skip
            finally:
                for chore in chores:
                    chore.cancel()
                await asyncio.gather(*chores, return_exceptions=True)
            await narrator.finish()  # the last lines: nothing else prints by now
        finally:
            await session.close()
            await store.close()


async def _welcome(
    settings: Settings, store: Store, sandbox: Sandbox, lifetime: float, serve_port: int
) -> list[str]:
    """What the demo runs and where to look, with a new read-only token to log in with."""
    now = datetime.now(UTC)
    _, secret = await control.create_token(store, "demo", Scope.READ, TOKEN_LIFETIME, now)
    served = f"http://127.0.0.1:{serve_port}"
    rows = [
        ("dashboard", f"{served}/dashboard  (log in with the read-only token below)"),
        ("token", f"{secret}  (valid {TOKEN_LIFETIME.days} day, also for the API and metrics)"),
        ("metrics", f"{served}/metrics"),
        ("API", f"{served}/api/v1/runs  (Authorization: Bearer TOKEN)"),
        ("sandbox", f"{sandbox.url}: {len(seed.OWNERS)} connections whose tokens last "
                    f"{lifetime:g} s, a new email every {seed.EMAIL_EVERY:g} s"),
        ("model", f"{MODEL}, the sandbox's chat model ({MODEL_KEY} holds its key); a daily "
                  f"report at {seed.REPORT_SCHEDULE!r} UTC, and once {seed.REPORT_AFTER:g} s "
                  "in"),
        ("database", without_password(settings.database_url)),
        ("log", f"{LOG_FILE} (cronlink's own log lines)"),
    ]  # fmt: skip
    return [
        "cronlink demo: Ctrl-C stops",
        *(f"  {name:<10} {text}" for name, text in rows),
        "",
    ]
