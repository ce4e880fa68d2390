"""The audit log's record: who did what to what, from where, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    """One line of the append-only audit log. Never holds a secret: the actor is a token
    id or "cron-secret", never the credential itself."""

    at: datetime
    actor: str
    action: str
    """`cron.run`, `cron.tick`, … (admin actions: `jobs.pause`, `connections.delete`, …)."""
    target: str
    client: str
    """The caller's address (the proxy's client when it is a trusted proxy)."""
    outcome: str
    """`accepted`, `deduplicated`, `denied`, `not_found`, `invalid` …"""
    detail: str = ""
    id: int = 0
