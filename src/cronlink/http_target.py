"""HTTP-target jobs: call a URL the way a cloud scheduler does, with deduplication headers."""

from __future__ import annotations

import os
from datetime import UTC, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from cronlink import signatures
from cronlink.envtext import expand, referenced_values
from cronlink.envtext import retry_after as parse_retry_after
from cronlink.errors import AddressRefusedError, ConfigError, CronlinkError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cronlink.jobs import HttpTarget
    from cronlink.records import Run

EXCERPT_BYTES = 2048
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
    secrets = _referenced_values(target, env)
    scheduled = run.scheduled_for or run.enqueued_at
    headers = {name: expand(value, env, "an HTTP target") for name, value in target.headers.items()}
    headers["X-Cronlink-Scheduled-Time"] = scheduled.astimezone(UTC).isoformat()
    headers["Idempotency-Key"] = run.idempotency_key
    headers["X-Cronlink-Attempt"] = str(run.attempt)
    body = expand(target.body, env, "an HTTP target").encode() if target.body is not None else None
    url = expand(target.url, env, "an HTTP target")
    if target.sign:
        headers[signatures.HEADER] = _signature(target, url, body or b"", env)
    try:
        async with session.request(
            target.method, url, headers=headers, data=body,
            allow_redirects=False,
        ) as response:  # fmt: skip
            raw = await response.content.read(EXCERPT_BYTES)
            excerpt = scrub(raw.decode("utf-8", "replace"), secrets)
            if 200 <= response.status < 300:
                return f"{response.status} {excerpt}".rstrip()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise HttpStatusError(response.status, excerpt, retry_after)
    except AddressRefusedError as error:
        # Its host may come from a ${VARIABLE} like the rest of the URL: scrubbed the same.
        raise AddressRefusedError(scrub(error.host, secrets), error.address, error.reason) from None
    except aiohttp.ClientError as error:
        # A client error may quote the URL, which may carry a ${SECRET}: keep its class,
        # scrub its text.
        scrubbed = scrub(str(error), secrets)
        if scrubbed == str(error):
            raise
        raise ScrubbedClientError(error, scrubbed) from None


class ScrubbedClientError(CronlinkError):
    """A client error whose text quoted a secret; it carries the original's class names."""

    def __init__(self, original: Exception, message: str) -> None:
        self.original_types = tuple(kind.__name__ for kind in type(original).__mro__)
        super().__init__(message)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret value replaced by `***`."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _referenced_values(target: HttpTarget, env: Mapping[str, str]) -> list[str]:
    """The values of the environment variables a target uses (they may be secrets)."""
    return referenced_values([target.url, target.body or "", *target.headers.values()], env)


def _signature(target: HttpTarget, url: str, body: bytes, env: Mapping[str, str]) -> str:
    secret = next((s.strip() for s in env.get("CRON_SECRET", "").split(",") if s.strip()), "")
    if not secret:
        raise ConfigError("an HTTP target with sign = true needs CRON_SECRET")
    return signatures.sign(secret, target.method, urlsplit(url).path or "/", body)
