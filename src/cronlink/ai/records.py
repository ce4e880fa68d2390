"""The records of a chat model call: the model as declared, tokens used, the answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatModel:
    """A model declared in `[ai.models.NAME]` (`config_models.ChatModelModel`)."""

    name: str
    """The name steps call it by."""
    base_url: str
    model: str
    """The provider's id of the model."""
    api_key: str
    """`${NAME}`: where the key is, never the key."""
    protocol: str = "openai"
    timeout: timedelta = timedelta(seconds=60)
    max_output_tokens: int = 1024
    input_price: float = 0.0
    """US dollars per million input tokens."""
    output_price: float = 0.0
    """US dollars per million output tokens."""
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    """US dollars a calendar month (UTC): past it, no new call is made."""

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """US dollars for so many tokens at this model's prices."""
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1e6


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """Tokens a provider billed."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """A model's answer, and what getting it took."""

    text: str
    data: Any = None
    """The answer parsed as JSON, when JSON was asked for (a schema, or `json_object`)."""
    usage: Usage
    """Over every answer the provider billed: repaired ones too."""
    answer_usage: Usage
    """The final answer's alone."""
    cost_usd: float
    """Of `usage`, at the model's prices."""
    model: str
    """The model that answered, as the provider names it."""
    attempts: int
    """Requests sent: transport retries and repairs included."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """One answer as a protocol module reads it off the wire."""

    text: str
    usage: Usage
    model: str
    refusal: str | None = None
    """The model declined to answer (OpenAI's `message.refusal`)."""
