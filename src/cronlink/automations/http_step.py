"""The built-in `http` step: one request through the connection, templated from the event
and the earlier steps' outputs, sent with the step's idempotency key.

429 pauses the connection's account for every job (and this step waits its Retry-After);
408, 425, 5xx and network errors are retried; any other 4xx fails the step for good.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import aiohttp

from cronlink.automations.template import render
from cronlink.connections.tokens import scrub
from cronlink.envtext import retry_after
from cronlink.errors import AddressRefusedError, ConfigError, CronlinkError, StepError

if TYPE_CHECKING:
    from cronlink.automations.process import StepContext
    from cronlink.automations.steps import HttpStep

TIMEOUT = 30.0
RETRYABLE = {408, 425, 429}
ANSWER_CHARS = 200


async def call(step: HttpStep, event: Any, ctx: StepContext) -> Any:
    values = {"event": event, "steps": ctx.outputs, "params": ctx.params}
    where = f"step {ctx.step}"
    try:
        url = render(step.url, values, f"{where}: url")
        body = render(step.json_body, values, f"{where}: json")
        headers = render(dict(step.headers), values, f"{where}: headers")
    except ConfigError as error:
        raise StepError(str(error), retryable=False) from None
    url = str(url)
    if url.startswith("/"):
        url = ctx.base_url.rstrip("/") + url
    if step.connection and not url.startswith(ctx.base_url.rstrip("/") + "/"):
        # The token is the provider's: it never goes to another host, whatever the
        # event's data put in the URL.
        raise StepError(
            f"{where}: {url[:200]} is not on the provider's base URL; the connection's token "
            "is only sent there (set connection = false to call it without)",
            retryable=False,
        )
    headers["Idempotency-Key"] = ctx.idempotency_key
    secrets: list[str] = []
    if step.connection:
        await ctx.wait_for_budget()
        try:
            credentials = await ctx.credentials()
        except CronlinkError as error:
            raise StepError(f"no usable credentials: {error}", retryable=False) from None
        headers["Authorization"] = credentials.authorization
        secrets.append(credentials.access_token)
    try:
        async with asyncio.timeout(TIMEOUT):
            async with ctx.session.request(step.method, url, json=body, headers=headers) as r:
                text = scrub(await r.text(), secrets)
                status, wait = r.status, retry_after(r.headers.get("Retry-After"))
    except AddressRefusedError as error:
        raise StepError(f"{step.method}: {error}", retryable=False) from None
    except (aiohttp.ClientError, TimeoutError) as error:
        raise StepError(f"{step.method} failed: {type(error).__name__}") from None
    if status == 429 and step.connection:
        seconds = 60.0 if wait is None else wait.total_seconds()
        await ctx.throttle(seconds)
    if status >= 400:
        retryable = status in RETRYABLE or status >= 500
        seconds = 0.0 if wait is None else wait.total_seconds()
        raise StepError(
            f"{step.method} answered HTTP {status}: {text[:ANSWER_CHARS]}",
            retryable=retryable, wait=seconds,
        )  # fmt: skip
    if step.connection:
        await ctx.run.connections.used(ctx.connection_id)
    try:
        return {"status": status, "body": json.loads(text) if text else None}
    except ValueError:
        return {"status": status, "body": text[:ANSWER_CHARS]}
