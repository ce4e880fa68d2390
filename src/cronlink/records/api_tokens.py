"""API tokens: bearer credentials for the admin API, each with a scope.

A token is `clk_` and 43 random URL-safe characters (256 bits). Only its SHA-256 is
stored: a database leak gives no usable token, and a slow hash would buy nothing against
256 random bits. Scopes nest: `read` < `operate` < `admin`.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

PREFIX = "clk_"


class Scope(enum.IntEnum):
    READ = 1
    """See jobs, runs, connections, automations, usage."""
    OPERATE = 2
    """Also pause, resume, trigger, cancel, refresh, check, replay."""
    ADMIN = 3
    """Also change schedules, create and delete connections, read the audit log."""

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, label: str) -> Scope:
        try:
            return cls[label.upper()]
        except KeyError:
            known = ", ".join(s.label for s in cls)
            raise ValueError(f"scope {label!r} is not one of {known}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiToken:
    id: int
    name: str
    scope: Scope
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def actor(self) -> str:
        """How the audit log names this token's caller."""
        return f"token:{self.id}"

    def valid_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str | bytes) -> str:
    raw = secret.encode("latin-1", errors="replace") if isinstance(secret, str) else secret
    return hashlib.sha256(raw).hexdigest()
