"""The built-in `ai` step: a chat model's answer to a prompt templated from the event and
the earlier steps' outputs, sent with the step's idempotency key.

The model is one declared in cronlink.toml, reached through `ctx.run.ai` (which records
the call's tokens and cost against the run's attempt, and refuses it once the model's
monthly budget is spent). Its client retries transport trouble and repairs invalid
answers itself (`cronlink.ai.client`); what it still cannot get becomes a `StepError`,
retryable when the model was unreachable, throttled or failing, not when it refused the
request, kept answering wrongly or its budget is spent.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cronlink.automations.template import render
from cronlink.errors import ConfigError, ModelError, StepError
from cronlink.plurals import counted

if TYPE_CHECKING:
    from cronlink.automations.steps import AiStep, StepContext


async def call(step: AiStep, event: Any, ctx: StepContext) -> Any:
    where = f"step {ctx.step}"
    try:
        values = {"event": event, "steps": ctx.outputs, "params": ctx.params}
        messages = _messages(step, values, where)
        models = ctx.run.ai
        models.get(step.model)
    except ConfigError as error:
        raise StepError(f"{where}: {error}", retryable=False) from None
    bearer = None
    if step.connection is not None:
        await ctx.link(step.connection, "ai.connection")  # a refusal names the key
        bearer = (await ctx.credentials(step.connection)).access_token
    try:
        answer = await models.complete(
            step.model, messages, session=ctx.session, schema=step.answer_schema,
            schema_name=ctx.step, max_tokens=step.max_tokens,
            idempotency_key=ctx.idempotency_key, bearer=bearer,
        )  # fmt: skip
    except ModelError as error:
        raise StepError(f"{where}: {error}", retryable=error.retryable, wait=error.wait) from None
    except ConfigError as error:
        raise StepError(f"{where}: {error}", retryable=False) from None
    ctx.log.info(
        "%s: model %s answered after %s: %d input and %d output tokens, $%.6f",
        where, step.model, counted(answer.attempts, "request"), answer.usage.input_tokens,
        answer.usage.output_tokens, answer.cost_usd,
    )  # fmt: skip
    if step.excerpt:
        prompt = "\n".join(m["content"] for m in messages)
        for what, text in (("prompt", prompt), ("answer", answer.text)):
            kept = ctx.scrubbed(text)[: step.excerpt]
            ctx.log.info(
                "%s: %s (%d of %d characters): %s", where, what, len(kept), len(text), kept
            )
    return answer.data if step.answer_schema is not None else answer.text


def _messages(step: AiStep, values: dict[str, Any], where: str) -> list[dict[str, str]]:
    parts = [("system", step.system), ("user", step.prompt)]
    return [
        {"role": role, "content": _text(render(template, values, f"{where}: {role}"))}
        for role, template in parts
        if template is not None
    ]


def _text(value: Any) -> str:
    """A rendered template as message text (a whole-placeholder template keeps its value's
    type: a dict or list is sent as JSON)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)
