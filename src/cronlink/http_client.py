"""The one outbound HTTP client: explicit timeouts and connection limits, injected everywhere."""

from __future__ import annotations

import aiohttp

CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 100
MAX_PER_HOST = 100


def new_session() -> aiohttp.ClientSession:
    """A session for outbound calls; each call still sets its own overall deadline."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT),
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=MAX_PER_HOST),
        auto_decompress=True,
        trust_env=False,
    )
