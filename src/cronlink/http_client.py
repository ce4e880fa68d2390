"""The one outbound HTTP client: explicit timeouts and connection limits, injected everywhere,
and the SSRF guard (`cronlink.egress`) on every connection it opens.

The guard sits where addresses are chosen, not in front of the URL: the resolver refuses
an answer holding any forbidden address, and aiohttp connects only to the addresses the
resolver returned, so the address checked is the address dialled (a rebinding name gets
no second, unchecked lookup). Hosts written as addresses never reach a resolver, so the
connector checks them itself. Each redirect opens its connection the same way, so each
hop is checked; aiohttp drops `Authorization`, cookies and URL credentials when a
redirect changes origin (scheme, host or port).
"""

from __future__ import annotations

import socket
from ipaddress import ip_address
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from cronlink.egress import EgressPolicy, host_refusal, ip_literal
from cronlink.errors import AddressRefusedError
from cronlink.observe import spend, tracing

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 100
MAX_PER_HOST = 100


def new_session(
    egress: EgressPolicy, *, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A session for outbound calls that reaches only what `egress` allows; each call
    still sets its own overall deadline. `resolver` replaces the system's (tests)."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT),
        connector=GuardedConnector(egress, resolver),
        auto_decompress=True,
        trust_env=False,  # no proxy from the environment: it would connect for us, unchecked
        trace_configs=[
            spend.request_counter(),
            *([tracing.request_spans()] if tracing.enabled() else []),
        ],
    )


def egress_of(session: aiohttp.ClientSession) -> EgressPolicy:
    """The policy `session` was made with, for sessions made from it elsewhere (a heavy
    run's process); one not made by `new_session` passes on the default, public only."""
    connector = session.connector
    return connector.egress if isinstance(connector, GuardedConnector) else EgressPolicy()


class GuardedResolver(AbstractResolver):
    """Resolves through `inner`, then refuses the whole answer if one address is forbidden
    (a name answering with a public and a private address is not half trusted)."""

    def __init__(self, egress: EgressPolicy, inner: AbstractResolver) -> None:
        self.egress = egress
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self.inner.resolve(host, port, family)
        for answer in answers:
            address = ip_address(answer["host"].partition("%")[0])
            reason = self.egress.refusal(address)
            if reason is not None:
                raise AddressRefusedError(host, str(address), reason)
        return answers

    async def close(self) -> None:
        await self.inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that connects only to addresses `egress` allows."""

    def __init__(self, egress: EgressPolicy, resolver: AbstractResolver | None = None) -> None:
        self.egress = egress
        # The system's resolver by default (getaddrinfo: /etc/hosts and all); a threaded
        # one holds nothing to close, so the connector need not own it.
        inner = resolver or ThreadedResolver()
        super().__init__(
            resolver=GuardedResolver(egress, inner),
            limit=MAX_CONNECTIONS,
            limit_per_host=MAX_PER_HOST,
        )

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp passes it by this name)
    ) -> Connection:
        host = req.url.raw_host or ""
        literal = ip_literal(host)
        if literal is None:
            reason = host_refusal(host)
            if reason is not None:
                raise AddressRefusedError(host, host, reason)
        else:
            reason = self.egress.refusal(literal)
            if reason is not None:
                raise AddressRefusedError(host, str(literal), reason)
        return await super().connect(req, traces, timeout)


def as_refusal(error: aiohttp.ClientError) -> AddressRefusedError | None:
    """The policy refusal a client error stands for, if it is one: a URL (or a redirect's
    Location) that is not valid, or whose scheme is not http or https. Like a refused
    address it fails for good; None for the errors a retry may cure."""
    if isinstance(error, aiohttp.NonHttpUrlClientError):  # a redirect's too
        scheme = str(error.args[0]).partition(":")[0][:20] if error.args else ""
        return AddressRefusedError("the URL", "the URL", f"{scheme!r} is not http or https")
    if isinstance(error, aiohttp.InvalidURL):
        return AddressRefusedError("the URL", "the URL", "it is not a valid URL")
    return None
