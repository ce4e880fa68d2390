"""The OAuth `state` of a connect flow: what the callback needs, sealed into the state
itself, so that any `cronlink serve` behind a balancer can finish a flow another began.

The state is a Fernet token (keys derived from CRONLINK_SECRET_KEY) holding the provider,
the owner, the scopes, the redirect URI, where to send the browser afterwards, the PKCE
verifier, an expiry and a nonce: the verifier is never in a URL in clear. The nonce also
goes in a cookie of the browser that began the flow; the callback opens the state only
with that cookie, so a code and state sent to someone else's browser (login CSRF) are
refused. A state is spent when opened: this process refuses it again at once, another
process would be refused by the provider (a code is good once) and the browser has lost
its cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.fernet import InvalidToken

from cronlink.errors import CronlinkError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cryptography.fernet import MultiFernet

    from cronlink.clock import Clock

PURPOSE = "cronlink oauth state v1"
LIFETIME = timedelta(minutes=10)
COOKIE_PREFIX = "cronlink_connect_"
MAX_STATE = 4096
"""Longer `state` values are refused before any decryption is tried."""
MAX_SPENT = 100_000
"""Spent nonces remembered at most (each only until its state expires anyway)."""


class ConnectError(CronlinkError):
    """The connect flow cannot go on.

    `reason` is a stable code for the HTTP answer (`invalid_request`, `unknown_provider`,
    `unsupported`, `invalid_state`, `access_denied`, `provider_error`, `code_rejected`,
    `provider_unavailable`, `provider_misconfigured`); the message is safe to show the
    user; `detail` is for the audit log (never a secret either): for `invalid_state`, one
    word saying why (`missing`, `tampered`, `no_cookie`, `wrong_cookie`, `expired`,
    `replayed`), which the user is not told.
    """

    def __init__(self, reason: str, message: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail or message
        super().__init__(message)


INVALID_STATE = (
    "this connect link is invalid, expired or already used, or it was opened in another "
    "browser: start connecting again"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Flow:
    """One authorization in progress, as sealed into its state."""

    provider: str
    owner: str
    scopes: str
    redirect_uri: str
    return_to: str | None
    verifier: str | None = field(repr=False)
    """The PKCE code verifier (None when the provider does not take PKCE)."""
    nonce: str = field(repr=False)
    expires_at: datetime
    name: str | None = None
    """The name the new connection gets (`names`), if one was asked for."""


def cookie_name(nonce: str) -> str:
    """One cookie per flow, so that two flows begun in two tabs do not undo each other."""
    return COOKIE_PREFIX + hashlib.sha256(nonce.encode()).hexdigest()[:16]


class States:
    """Seals flows into states and opens them again, once, with the browser's cookie."""

    def __init__(self, fernet: MultiFernet, clock: Clock, lifetime: timedelta = LIFETIME) -> None:
        self._fernet = fernet
        self.clock = clock
        self.lifetime = lifetime
        self._spent: OrderedDict[str, datetime] = OrderedDict()

    def seal(self, flow: Flow) -> str:
        # A new layout gets a new PURPOSE (hence new keys): no version field to check.
        plain = {
            "p": flow.provider, "o": flow.owner, "s": flow.scopes, "r": flow.redirect_uri,
            "t": flow.return_to, "k": flow.verifier, "n": flow.nonce,
            "e": flow.expires_at.timestamp(), "m": flow.name,
        }  # fmt: skip
        return self._fernet.encrypt(json.dumps(plain).encode()).decode()

    def open(self, state: str, cookies: Mapping[str, str]) -> Flow:
        """The flow `state` holds, if it is genuine, unexpired, unspent and the browser
        holds its cookie; it is spent from now on. `ConnectError("invalid_state")` else,
        with one message whatever the cause (the audit detail names it)."""
        flow = self._unseal(state)
        sent = cookies.get(cookie_name(flow.nonce), "")
        if not hmac.compare_digest(sent.encode(), flow.nonce.encode()):
            raise ConnectError(
                "invalid_state", INVALID_STATE, "wrong_cookie" if sent else "no_cookie"
            )
        now = self.clock.now()
        if flow.expires_at <= now:
            raise ConnectError("invalid_state", INVALID_STATE, "expired")
        self._forget_expired(now)
        if flow.nonce in self._spent:
            raise ConnectError("invalid_state", INVALID_STATE, "replayed")
        self._spent[flow.nonce] = flow.expires_at
        return flow

    def _unseal(self, state: str) -> Flow:
        tampered = ConnectError("invalid_state", INVALID_STATE, "tampered")
        if len(state) > MAX_STATE:
            raise tampered
        try:
            plain: dict[str, Any] = json.loads(self._fernet.decrypt(state.encode()))
            return Flow(
                provider=plain["p"], owner=plain["o"], scopes=plain["s"],
                redirect_uri=plain["r"], return_to=plain["t"], verifier=plain["k"],
                nonce=plain["n"], expires_at=datetime.fromtimestamp(plain["e"], UTC),
                name=plain.get("m"),
            )  # fmt: skip
        except (InvalidToken, ValueError, KeyError, TypeError):
            # Only cronlink seals states: one that decrypts but does not parse is as
            # foreign as one that does not decrypt.
            raise tampered from None

    def _forget_expired(self, now: datetime) -> None:
        # Every state lives as long: the oldest entries expire first.
        while self._spent and (
            next(iter(self._spent.values())) <= now or len(self._spent) >= MAX_SPENT
        ):
            self._spent.popitem(last=False)
