"""The sandbox's chat model: deterministic rules in place of a language model, so tests, the
demo and benchmarks get the same answer and usage for the same request.

It reads the last user message (and the system or developer messages for labels):

- a `json_schema` response format: the schema filled from the text (`model_schema`);
- labels offered (`labels: urgent, invoice, newsletter`, in the system prompt or the
  message): the label the text is about (`model_text.classify`), as `{"label": ...}` for a
  `json_object` format;
- otherwise a summary: the first sentence and counts (`model_text.summarise`), as
  `{"summary": ...}` for a `json_object` format.

Usage: a message costs 4 tokens plus one per 4 characters of its content (rounded up), a
request 3 more; the answer one per 4 characters. An answer over `max_completion_tokens`
(or `max_tokens`) is cut to that many tokens' characters and ends with `length`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cronlink.sandbox import model_schema, model_text

MODELS = ("sandbox-model", "sandbox-model-mini")
"""Two names for the same rules, so a client can route steps to different models."""
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
FORMATS = frozenset({"text", "json_object", "json_schema"})
PER_MESSAGE, PER_REQUEST = 4, 3


class BadRequest(ValueError):
    """A request the chat-completions protocol refuses (400), naming the parameter."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Prompt:
    """A chat-completions request as the model reads it."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    format: str = "text"
    schema: dict[str, Any] | None = None

    @property
    def question(self) -> str:
        """The last user message."""
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")

    @property
    def instructions(self) -> str:
        return "\n".join(m.content for m in self.messages if m.role in ("system", "developer"))


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def parse(body: Any) -> Prompt:
    """The prompt of a request body (decoded JSON); `BadRequest` for what OpenAI refuses."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    if body.get("stream"):
        raise BadRequest("the sandbox does not stream; leave stream false", "stream")
    if body.get("n", 1) != 1:
        raise BadRequest("the sandbox answers one choice; leave n at 1", "n")
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise BadRequest("temperature must be a number from 0 to 2", "temperature")
    messages = _messages(body.get("messages"))
    limit = _limit(body)
    kind, schema = _format(body.get("response_format"))
    if kind == "json_object" and not any("json" in m.content.lower() for m in messages):
        raise BadRequest(
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.", "messages",
        )  # fmt: skip
    return Prompt(model=model, messages=messages, max_tokens=limit, format=kind, schema=schema)


def reply(prompt: Prompt, *, invalid: bool = False) -> Reply:
    """The model's answer to `prompt`, or with `invalid` one that breaks what it asked for:
    the schema (`model_schema.broken`), JSON at all for `json_object`, the labels offered
    (a label outside them), or, for a plain summary, an empty answer."""
    content = (_broken if invalid else _answer)(prompt)
    finish = "stop"
    if prompt.max_tokens is not None and model_text.tokens(content) > prompt.max_tokens:
        content, finish = content[: prompt.max_tokens * 4], "length"
    return Reply(
        content=content, finish_reason=finish, prompt_tokens=prompt_tokens(prompt),
        completion_tokens=model_text.tokens(content),
    )  # fmt: skip


def prompt_tokens(prompt: Prompt) -> int:
    return PER_REQUEST + sum(PER_MESSAGE + model_text.tokens(m.content) for m in prompt.messages)


def _answer(prompt: Prompt) -> str:
    if prompt.schema is not None:
        return json.dumps(model_schema.fill(prompt.schema, prompt.question))
    labels, text = _labels(prompt)
    if labels:
        label = model_text.classify(text, labels)
        return json.dumps({"label": label}) if prompt.format == "json_object" else label
    summary = model_text.summarise(prompt.question)
    return json.dumps({"summary": summary}) if prompt.format == "json_object" else summary


def _broken(prompt: Prompt) -> str:
    if prompt.schema is not None:
        return model_schema.broken(prompt.schema, prompt.question)
    if prompt.format == "json_object":
        return f"{model_schema.PROSE}\n{_answer(prompt)}"
    labels, _ = _labels(prompt)
    return model_schema.UNLISTED if labels else ""


def _labels(prompt: Prompt) -> tuple[list[str], str]:
    """The labels offered and the text to classify (the labels' line taken out of it)."""
    labels, _ = model_text.find_labels(prompt.instructions)
    if labels:
        return labels, prompt.question
    return model_text.find_labels(prompt.question)


def _messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty array", "messages")
    messages = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("role") not in ROLES:
            raise BadRequest(f"messages[{n}] needs a role of {sorted(ROLES)}", f"messages[{n}]")
        messages.append(Message(role=item["role"], content=_text(item.get("content"), n)))
    return tuple(messages)


def _text(content: Any, n: int) -> str:
    """A message's text: a string, or the `text` parts of a list of content parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    raise BadRequest(f"messages[{n}].content must be a string or parts", f"messages[{n}]")


def _limit(body: dict[str, Any]) -> int | None:
    for param in ("max_completion_tokens", "max_tokens"):
        value = body.get(param)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"{param} must be a positive integer", param)
        return value
    return None


def _format(raw: Any) -> tuple[str, dict[str, Any] | None]:
    if raw is None:
        return "text", None
    if not isinstance(raw, dict) or raw.get("type") not in FORMATS:
        raise BadRequest(
            f"response_format.type must be one of {sorted(FORMATS)}", "response_format"
        )
    if raw["type"] != "json_schema":
        return raw["type"], None
    spec = raw.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise BadRequest("response_format.json_schema needs a name", "response_format")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise BadRequest("response_format.json_schema.schema must be an object", "response_format")
    return "json_schema", schema
