"""Serve the HTTP service with uvicorn in this process until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import uvicorn

from cronlink.config import ServeModel, parse_size
from cronlink.durations import parse_duration
from cronlink.errors import CronlinkError
from cronlink.web.app import build
from cronlink.web.guards import Guards
from cronlink.web.limits import Clients, Limiter
from cronlink.web.secrets import ENV, CronSecrets
from cronlink.web.service import WebService

if TYPE_CHECKING:
    from cronlink.app import App
    from cronlink.store import Store

log = logging.getLogger("cronlink.web")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # cronlink's roles own SIGINT and SIGTERM (`runtime`): the server stops with them.
        yield


@asynccontextmanager
async def serving(
    store: Store, app: App, host: str, port: int, limits: ServeModel | None = None
) -> AsyncIterator[str]:
    """The service on `host:port` (0: any free port); yields its base URL."""
    secrets = CronSecrets.from_env()
    if not secrets.configured:
        log.warning("%s is not set: /cron/* refuses every call", ENV)
    model = limits or ServeModel()
    service = WebService(
        store=store, app=app, secrets=secrets, clients=Clients(model.trusted_proxies),
        per_address=Limiter(model.address_rate, model.address_burst),
        per_credential=Limiter(model.credential_rate, model.credential_burst),
        require_signature=model.require_signature,
    )  # fmt: skip
    api = Guards(
        build(service), max_body=parse_size(model.max_body),
        timeout=parse_duration(model.request_timeout).total_seconds(),
    )  # fmt: skip
    config = uvicorn.Config(
        api, host=host, port=port, log_config=None, access_log=False, lifespan="off",
        limit_concurrency=1000, timeout_keep_alive=5,
        # Forwarded addresses are judged by cronlink's own `trusted_proxies`, not by
        # uvicorn's default trust of 127.0.0.1.
        proxy_headers=False, server_header=False,
    )  # fmt: skip
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise CronlinkError(f"cannot serve on {host}:{port}")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
