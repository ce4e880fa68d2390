"""One provider the sandbox plays: its OAuth client's grants and authorization server, its
faults and its paths. The mail-like provider is served at the root, the CRM under `/crm`;
each refuses the other's tokens and pauses its own accounts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from cronlink.sandbox.faults import Faults
from cronlink.sandbox.grants import Grants
from cronlink.sandbox.oauth import Server

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.sandbox.faults import Switches
    from cronlink.sandbox.grants import Grant


@dataclass
class Provider:
    prefix: str
    """Where its paths start: `` for the mail provider, `/crm` for the CRM."""
    grants: Grants
    faults: Faults
    malformable: tuple[str, ...]
    """Path prefixes whose answers a drawn `malformed_rate` garbles (besides tokens)."""
    losable: frozenset[str] = frozenset()
    """Paths whose answers a drawn loss drops after the provider processed them (besides
    refreshes)."""
    server: Server = field(init=False)

    def __post_init__(self) -> None:
        self.server = Server(self.grants)

    @classmethod
    def serving(
        cls, grants: Grants, prefix: str, malformable: tuple[str, ...],
        losable: frozenset[str] = frozenset(), clock: Callable[[], float] = time.monotonic,
    ) -> Provider:  # fmt: skip
        return cls(prefix, grants, Faults(grants.stats, clock), malformable, losable)

    @property
    def token_path(self) -> str:
        return f"{self.prefix}/oauth/token"

    @property
    def api(self) -> str:
        """The prefix of its bearer-token API."""
        return f"{self.prefix}/api/"

    def account(self, path: str, bearer: str, form: dict[str, str]) -> Grant | None:
        """The grant a request acts for: its refresh token's family at the token endpoint,
        its access token's holder elsewhere."""
        if path == self.token_path:
            return self.grants.family(form.get("refresh_token", ""))
        return self.grants.holder(bearer)

    def apply(self, switches: Switches) -> None:
        """Take `switches` (already the provider's own view of them)."""
        self.faults.switches = switches
        self.grants.rotation = switches.rotation
        self.grants.grace = switches.grace_seconds
        self.grants.lifetime = switches.token_lifetime

    def revoked(self) -> int:
        return sum(1 for g in self.grants.grants.values() if g.revoked)


def bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
