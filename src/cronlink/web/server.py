"""Serve the HTTP service with uvicorn in this process until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import uvicorn

from cronlink.config_models import PricingModel, ServeModel, UsageModel
from cronlink.egress import parse_networks
from cronlink.errors import CronlinkError
from cronlink.web.app import build
from cronlink.web.guards import Guards
from cronlink.web.limits import Clients, Limiter
from cronlink.web.secrets import ENV, CronSecrets
from cronlink.web.service import WebService
from cronlink.web.sockets import SocketLimits, Sockets, guarded

if TYPE_CHECKING:
    from cronlink.app import App
    from cronlink.automations.service import Automations
    from cronlink.connections.service import Connections
    from cronlink.store import Store

log = logging.getLogger("cronlink.web")
_SPARE_FILES = 256


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # cronlink's roles own SIGINT and SIGTERM (`runtime`): the server stops with them.
        yield


@asynccontextmanager
async def serving(
    store: Store,
    app: App,
    host: str,
    port: int,
    limits: ServeModel | None = None,
    connections: Connections | None = None,
    automations: Automations | None = None,
    usage: UsageModel | None = None,
    pricing: PricingModel | None = None,
    budgets: Mapping[str, float | None] | None = None,
) -> AsyncIterator[str]:
    """The service on `host:port` (0: any free port); yields its base URL."""
    secrets = CronSecrets.from_env()
    if not secrets.configured:
        log.warning("%s is not set: /cron/* refuses every call", ENV)
    model = limits or ServeModel()
    service = WebService(
        store=store, app=app, secrets=secrets, clients=Clients(model.trusted_proxies),
        per_address=Limiter(model.address_rate, model.address_burst, store, "address"),
        per_credential=Limiter(model.credential_rate, model.credential_burst, store,
                               "credential"),
        require_signature=model.require_signature, connections=connections,
        automations=automations,
        public_url=model.public_url, quotas=usage or UsageModel(),
        pricing=pricing or PricingModel(), budgets=dict(budgets or {}),
    )  # fmt: skip
    api = Guards(
        build(service), max_body=model.max_body,
        timeout=model.request_timeout.total_seconds(),
        max_headers=model.max_headers, max_depth=model.max_json_depth,
    )  # fmt: skip
    sockets = Sockets(SocketLimits(
        header_timeout=model.header_timeout.total_seconds(),
        total=_open_files_for(model.max_sockets), per_address=model.max_sockets_per_address,
        trusted=parse_networks(model.trusted_proxies),
    ))  # fmt: skip
    config = uvicorn.Config(
        api, host=host, port=port, log_config=None, access_log=False, lifespan="off",
        # `sockets` bounds what is open, by address and in all, and pushes idle sockets out
        # for newcomers; uvicorn's own `limit_concurrency` would answer 503 to everyone as
        # soon as enough sockets sat idle.
        http=guarded(sockets), ws="none", limit_concurrency=None, timeout_keep_alive=5,
        # Forwarded addresses are judged by cronlink's own `trusted_proxies`, not by
        # uvicorn's default trust of 127.0.0.1.
        proxy_headers=False, server_header=False,
    )  # fmt: skip
    server = _Server(config)
    listener = _bind(host, port)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if task.done():
                await task
                raise CronlinkError(f"cannot serve on {host}:{port}")
            await asyncio.sleep(0.01)
        bound = listener.getsockname()
        shown = f"[{bound[0]}]" if listener.family == socket.AF_INET6 else bound[0]
        yield f"http://{shown}:{bound[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        listener.close()
        await service.close()


def _open_files_for(sockets: int) -> int:
    """How many client sockets this process can hold, at most `sockets`: the soft limit on
    open files is raised as far as needed (up to the hard one), keeping `_SPARE_FILES` for
    the database, logs and outbound calls. Out of files, accepting would stall for all."""
    if sys.platform == "win32":
        return sockets
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets + _SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return sockets
    fitting = max(soft - _SPARE_FILES, 1)
    log.warning(
        "[serve] max_sockets %d needs %d open files, the hard limit is %d: holding %d sockets"
        " (raise it with `ulimit -Hn` or LimitNOFILE=)", sockets, wanted, hard, fitting,
    )  # fmt: skip
    return fitting


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port or an unknown address is a
    clear error (uvicorn's own binding exits the whole process)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise CronlinkError(f"[serve] host {host!r} is not an address here: {error}") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise CronlinkError(
                f"cannot serve on {host}:{port}: the port is in use (another cronlink? "
                "choose one with --port, CRONLINK_PORT or [serve] port; 0 picks a free one)"
            ) from None
        raise CronlinkError(f"cannot serve on {host}:{port}: {error.strerror}") from None
    return listener
