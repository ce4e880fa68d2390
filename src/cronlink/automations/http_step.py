"""The built-in `http` step: one request through a connection, templated from the event
and the earlier steps' outputs, sent with the step's idempotency key (`Idempotency-Key`,
unless the step sets that header itself).

The connection is the automation's own, or another of its owner's that the step names
(`connection = "crm-main"`): its token is sent, and a path goes to its provider. The
request goes through that connection's account (`StepContext.request`): a 429 pauses it
for every job and this step waits its Retry-After; a 401 renews its token once; 408, 425,
5xx and network errors are retried; any other 4xx fails the step for good.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cronlink.automations.template import render
from cronlink.errors import ConfigError, StepError

if TYPE_CHECKING:
    from cronlink.automations.steps import HttpStep, StepContext

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
    link = await ctx.link(step.connection, "http.connection")
    base = (ctx.base_url if link is None else link.base_url).rstrip("/")
    url = str(url)
    if url.startswith("/"):
        url = base + url
    if link is not None and not url.startswith(base + "/"):
        # The token is the provider's: it never goes to another host, whatever the
        # event's data put in the URL.
        raise StepError(
            f"{where}: {url[:200]} is not on the provider's base URL; the connection's token "
            "is only sent there (set connection = false to call it without)",
            retryable=False,
        )
    # The step's key, the same in every attempt and every run of the event: a provider
    # that honours it applies a step repeated after a crash once.
    headers.setdefault("Idempotency-Key", ctx.idempotency_key)
    answer = await ctx.request(
        step.method, url, headers=headers, json=body, connection=step.connection
    )
    text = answer.body.decode(errors="replace")
    try:
        return {"status": answer.status, "body": json.loads(text) if text else None}
    except ValueError:
        return {"status": answer.status, "body": text[:ANSWER_CHARS]}
