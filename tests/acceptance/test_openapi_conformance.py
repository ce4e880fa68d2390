"""schemathesis against `/openapi.json` of a real server (uvicorn on 127.0.0.1, the sandbox
provider), on SQLite and on PostgreSQL: generated requests, valid and not, to every
operation, one at a time and chained by the links schemathesis infers (a connection made,
then read, refreshed, disabled, deleted …); no answer may be a 5xx, and every answer must
match the schema the service publishes. Bounded: a few examples per operation, a few
short scenarios, well under two minutes an engine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from cronlink import control
from cronlink.automations.service import Automations
from cronlink.builtin_jobs import connection_jobs
from cronlink.config_models import ConnectionsModel, ServeModel
from cronlink.connections.crypto import Vault, generate_key
from cronlink.connections.providers import Providers
from cronlink.connections.service import Connections
from cronlink.egress import LOOPBACK
from cronlink.engine.scheduler import HEARTBEAT, Scheduler
from cronlink.http_client import new_session
from cronlink.records.api_tokens import Scope
from cronlink.sandbox import Sandbox
from cronlink.store import store_for
from cronlink.web.app import build
from cronlink.web.limits import Clients, Limiter
from cronlink.web.secrets import CronSecrets
from cronlink.web.server import serving
from cronlink.web.service import WebService
from tests.acceptance.handlers import app
from tests.acceptance.worker_kit import wait_until
from tests.postgres import fresh_schema

CRON = "conformance-cron-secret-0123456789"
PARSER_REFUSAL = "Invalid HTTP request received."


class Server:
    """The service on its own event loop in a thread, so that schemathesis (synchronous)
    can call it over the network."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.url = ""
        self.token = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),))

    def call_kwargs(self, case: Any) -> dict[str, Any]:
        secret = CRON if case.path.startswith("/cron/") else self.token
        return {"base_url": self.url, "headers": {"Authorization": f"Bearer {secret}"}}

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(30), "the server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with AsyncExitStack() as stack:
            store = store_for(self.database)
            await store.open()
            stack.push_async_callback(store.close)
            await stack.enter_async_context(Sandbox())
            session = new_session(LOOPBACK)
            stack.push_async_callback(session.close)
            jobs = {j.name: j for j in connection_jobs(ConnectionsModel())}
            connections = Connections(store, Vault.from_text(generate_key()), Providers.load(),
                                      session, refresh_job=jobs["refresh-connection"])  # fmt: skip
            automations = Automations(store, connections.providers, session, connections,
                                      process_job=jobs["process-automation"])  # fmt: skip
            _, self.token = await control.create_token(
                store, "schemathesis", Scope.ADMIN, None, datetime.now(UTC)
            )
            limits = ServeModel(address_rate=10_000, address_burst=10_000)
            self.url = await stack.enter_async_context(
                serving(store, app, "127.0.0.1", 0, limits, connections, automations)
            )
            # A scheduler as in `cronlink run`: /readyz is ready, /cron/tick meets another.
            chief = asyncio.create_task(Scheduler(store, app.jobs).run(self._stop))

            async def beaten() -> bool:
                return await store.heartbeats.last(HEARTBEAT) is not None

            await wait_until(beaten)
            self._ready.set()
            await self._stop.wait()
            await chief


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as patch, ExitStack() as stack:
        patch.setenv("CRON_SECRET", CRON)
        if request.param == "sqlite":
            database = f"sqlite:///{tmp_path_factory.mktemp('conformance') / 'cronlink.db'}"
        else:
            database = stack.enter_context(fresh_schema())
        yield stack.enter_context(Server(database))


def _published() -> dict[str, Any]:
    """The schema the service publishes at /openapi.json (the route table alone decides it:
    no store is touched to build it)."""
    service = WebService(store=None, app=app, secrets=CronSecrets([]), clients=Clients([]),  # type: ignore[arg-type]
                         per_address=Limiter(1, 1), per_credential=Limiter(1, 1))  # fmt: skip
    return build(service).openapi()


schema = schemathesis.openapi.from_dict(_published())


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_in_the_schema_and_none_is_a_5xx(case: Any, server: Server) -> None:
    _checked(case, case.call(**server.call_kwargs(case)))


@pytest.mark.slow
def test_chained_calls_never_get_a_5xx(server: Server) -> None:
    """The state machine: each step feeds a later one the ids and names an answer gave."""

    class Scenario(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return server.call_kwargs(case)

        def validate_response(self, response: Any, case: Any, *_: Any, **__: Any) -> None:
            _checked(case, response)

    bounded = settings(max_examples=100, stateful_step_count=8, deadline=None,
                       suppress_health_check=list(HealthCheck))  # fmt: skip
    Scenario.run(settings=bounded)


def _checked(case: Any, response: Any) -> None:
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    if response.status_code == 400 and response.text == PARSER_REFUSAL:
        return  # uvicorn's HTTP parser, before the service: a request line it cannot read
    # A schema cannot say "a provider configured here", "a state this service sealed" or
    # "an owner that is not only spaces": such schema-valid calls get a 4xx, rightly.
    case.validate_response(response, excluded_checks=[checks.positive_data_acceptance])
