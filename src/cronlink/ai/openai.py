"""OpenAI's chat-completions wire format, which most hosted and local servers speak: the
request for a prompt and the reading of an answer or an error. Another protocol is
another module with these five functions (`client.Wire`)."""

from __future__ import annotations

import json
from typing import Any

from cronlink.ai.records import ChatModel, Reply, Usage

ERROR_CHARS = 300


class MalformedAnswer(ValueError):
    """A 200 whose body is not a chat completion (cut short, not JSON, another shape)."""


def url(model: ChatModel) -> str:
    return f"{model.base_url}/chat/completions"


def headers(key: str, idempotency_key: str | None) -> dict[str, str]:
    sent = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if idempotency_key:
        sent["Idempotency-Key"] = idempotency_key
    return sent


def body(
    model: ChatModel,
    messages: list[dict[str, str]],
    *,
    schema: dict[str, Any] | None,
    schema_name: str,
    json_object: bool,
    max_tokens: int,
) -> dict[str, Any]:
    sent: dict[str, Any] = {
        "model": model.model, "messages": messages, "max_completion_tokens": max_tokens,
    }  # fmt: skip
    if schema is not None:
        sent["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": schema, "strict": True},
        }
    elif json_object:
        sent["response_format"] = {"type": "json_object"}
    return sent


def reply(data: bytes) -> Reply:
    """The answer in a 200's body; `MalformedAnswer` when there is none."""
    try:
        decoded = json.loads(data)
        choice = decoded["choices"][0]["message"]
        content, refusal = choice.get("content"), choice.get("refusal")
        usage = decoded.get("usage") or {}
        billed = Usage(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
        )
        model = str(decoded.get("model") or "")
    except (ValueError, LookupError, TypeError, AttributeError) as error:
        raise MalformedAnswer(f"the answer is not a chat completion ({error})") from None
    if not isinstance(content, str) and not isinstance(refusal, str):
        raise MalformedAnswer("the answer has neither content nor a refusal")
    return Reply(
        text=content if isinstance(content, str) else "",
        usage=billed,
        model=model,
        refusal=refusal if isinstance(refusal, str) else None,
    )


def error_text(data: bytes) -> str:
    """The provider's message in an error answer (`{"error": {"message": ...}}`), or the
    start of the body."""
    text = data.decode(errors="replace")
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, LookupError, TypeError):
        return text[:ERROR_CHARS]
    return str(message)[:ERROR_CHARS]
