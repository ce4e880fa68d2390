"""Steps the automation tests run (imported by name, in heavy children too)."""

from __future__ import annotations

from typing import Any


def remember(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"seen": event["id"]}
