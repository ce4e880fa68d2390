"""HTTP-target jobs: call a URL the way a cloud scheduler does, with deduplication headers."""

from __future__ import annotations

import os
from datetime import UTC, timedelta
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from cronlink import signatures
from cronlink.envtext import expand, referenced_values
from cronlink.envtext import retry_after as parse_retry_after
from cronlink.errors import AddressRefusedError, ConfigError, CronlinkError
from cronlink.http_client import as_refusal
from cronlink.scrubbing import Scrubber, configured

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cronlink.jobs import HttpTarget
    from cronlink.records.runs import Run

EXCERPT_BYTES = 2048
QUOTE_MARGIN = 2048
"""Read past the excerpt, so that a secret quoted across its end is masked, not cut."""
RETRYABLE_STATUSES = frozenset({408, 425, 429})


class HttpStatusError(CronlinkError):
    """The target answered with a status outside 2xx."""

    def __init__(self, status: int, excerpt: str, retry_after: timedelta | None) -> None:
        self.status = status
        self.excerpt = excerpt
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}: {excerpt[:200]}")

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUSES or self.status >= 500


async def call(
    session: aiohttp.ClientSession,
    target: HttpTarget,
    run: Run,
    env: Mapping[str, str] | None = None,
) -> str:
    """Make the request; returns "status excerpt" on 2xx, raises `HttpStatusError` otherwise.

    The caller bounds the whole attempt with its deadline.
    """
    env = os.environ if env is None else env
    scrub = Scrubber([*configured(env), *_referenced_values(target, env)])
    scheduled = run.scheduled_for or run.enqueued_at
    headers = {name: expand(value, env, "an HTTP target") for name, value in target.headers.items()}
    headers["X-Cronlink-Scheduled-Time"] = scheduled.astimezone(UTC).isoformat()
    headers["Idempotency-Key"] = run.idempotency_key
    headers["X-Cronlink-Attempt"] = str(run.attempt)
    body = expand(target.body, env, "an HTTP target").encode() if target.body is not None else None
    # Encoded once, here: what is signed is what is sent.
    url = URL(expand(target.url, env, "an HTTP target"))
    if target.sign:
        headers[signatures.HEADER] = _signature(target, url, body or b"", env)
    try:
        async with session.request(
            target.method, url, headers=headers, data=body,
            allow_redirects=False,
        ) as response:  # fmt: skip
            raw = await response.content.read(EXCERPT_BYTES + QUOTE_MARGIN)
            excerpt = scrub(raw.decode("utf-8", "replace"))[:EXCERPT_BYTES]
            if 200 <= response.status < 300:
                return f"{response.status} {excerpt}".rstrip()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise HttpStatusError(response.status, excerpt, retry_after)
    except AddressRefusedError as error:
        # Its host may come from a ${VARIABLE} like the rest of the URL: scrubbed the same.
        raise AddressRefusedError(scrub(error.host), error.address, error.reason) from None
    except aiohttp.ClientError as error:
        refusal = as_refusal(error)
        if refusal is not None:
            raise refusal from None
        # A client error may quote the URL, which may carry a ${SECRET}: keep its class,
        # scrub its text.
        scrubbed = scrub(str(error))
        if scrubbed == str(error):
            raise
        raise ScrubbedClientError(error, scrubbed) from None


class ScrubbedClientError(CronlinkError):
    """A client error whose text quoted a secret; it carries the original's class names."""

    def __init__(self, original: Exception, message: str) -> None:
        self.original_types = tuple(kind.__name__ for kind in type(original).__mro__)
        super().__init__(message)


def _referenced_values(target: HttpTarget, env: Mapping[str, str]) -> list[str]:
    """The values of the environment variables a target uses (they may be secrets)."""
    return referenced_values([target.url, target.body or "", *target.headers.values()], env)


def _signature(target: HttpTarget, url: URL, body: bytes, env: Mapping[str, str]) -> str:
    keys = signatures.signing_keys(env)
    if not keys:
        raise ConfigError(f"an HTTP target with sign = true needs {signatures.ENV}")
    request = signatures.Request(
        method=target.method, path=url.raw_path, query=url.raw_query_string, body=body
    )
    return signatures.sign(keys[0], request)
