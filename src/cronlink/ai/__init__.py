"""Chat models automations call: the declared models (`Models`, what `ctx.ai` is), the
client's retry and validation loop (`client.complete`) and one module per wire protocol
(`openai`)."""

from __future__ import annotations

from cronlink.ai.models import Models
from cronlink.ai.records import ChatModel, Completion, Usage

__all__ = ["ChatModel", "Completion", "Models", "Usage"]
