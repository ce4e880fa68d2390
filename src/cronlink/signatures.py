"""Signed calls: `X-Cronlink-Signature: t=UNIX,n=NONCE,v2=HEX`, an HMAC-SHA256 keyed with
`CRON_SIGNING_KEY` over a canonical string of the signing instant, a nonce, the method,
the path, the query and the body's SHA-256 (docs/api.md spells it out with examples).

The signing key is a secret of its own, held by the caller and the service and never sent:
the bearer (`CRON_SECRET`) travels with every call, so a key derived from it, or equal to
it, would let whoever captured one call sign others. A signature is good for five minutes
and once: a captured call can neither be replayed, even within its window, nor re-signed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cronlink.envtext import listed
from cronlink.errors import ConfigError, CronlinkError

HEADER = "X-Cronlink-Signature"
ENV = "CRON_SIGNING_KEY"
MIN_KEY_LENGTH = 32
VERSION = "v2"
WINDOW = 300.0
SEEN_KEPT = 100_000
MAX_HEADER = 256
"""Longer than any good header (about 120 characters): refused before it is read."""

_STAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """What is signed of a call: the method, the path and query as sent (percent-encoded,
    the query without its `?`) and the body."""

    method: str
    path: str
    query: str
    body: bytes


def canonical(request: Request, stamp: int, nonce: str) -> bytes:
    """The signed string: seven lines joined by `\\n`, no trailing newline."""
    lines = (VERSION, str(stamp), nonce, request.method.upper(), request.path or "/",
             request.query, hashlib.sha256(request.body).hexdigest())  # fmt: skip
    return "\n".join(lines).encode()


def sign(key: str, request: Request, at: float | None = None) -> str:
    """The header value that signs `request` with `key` at `at` (now)."""
    stamp = int(time.time() if at is None else at)
    nonce = secrets.token_hex(16)
    return f"t={stamp},n={nonce},{VERSION}={_digest(key.encode(), request, stamp, nonce)}"


def signing_keys(env: Mapping[str, str]) -> list[str]:
    """`CRON_SIGNING_KEY`'s keys, current first; each long enough and none a bearer."""
    keys = listed(env, ENV, MIN_KEY_LENGTH)
    if set(keys) & set(listed(env, "CRON_SECRET")):
        raise ConfigError(
            f"{ENV} must differ from every CRON_SECRET: the bearer is sent with every call, "
            "the signing key never"
        )
    return keys


def _digest(key: bytes, request: Request, stamp: int, nonce: str) -> str:
    return hmac.new(key, canonical(request, stamp, nonce), hashlib.sha256).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class Parsed:
    stamp: int
    nonce: str
    digest: str


class Malformed(CronlinkError):
    """The header cannot be read; the message says why (it never quotes the header)."""


def parse(header: str) -> Parsed:
    """The header's fields, each checked for its form (not yet for its truth)."""
    if len(header) > MAX_HEADER:
        raise Malformed(f"longer than {MAX_HEADER} characters")
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals:
            raise Malformed("expected comma-separated name=value fields")
        if name in fields:
            raise Malformed(f"field {name[:8]!r} given twice")
        fields[name] = value.strip()
    if "v1" in fields and VERSION not in fields:
        raise Malformed(f"v1 signatures are no longer accepted: sign with {ENV} ({VERSION})")
    unknown = sorted(set(fields) - {"t", "n", VERSION})
    if unknown:
        raise Malformed(f"unknown field {unknown[0][:8]!r} (expected t, n and {VERSION})")
    missing = [name for name in ("t", "n", VERSION) if name not in fields]
    if missing:
        raise Malformed(f"field {missing[0]} is missing")
    if not _STAMP.fullmatch(fields["t"]):
        raise Malformed("t must be the signing time in Unix seconds (up to 12 digits)")
    if not _NONCE.fullmatch(fields["n"]):
        raise Malformed("n must be 16 to 64 letters, digits, '-' or '_'")
    if not _DIGEST.fullmatch(fields[VERSION].lower()):
        raise Malformed(f"{VERSION} must be 64 hexadecimal digits")
    return Parsed(stamp=int(fields["t"]), nonce=fields["n"], digest=fields[VERSION].lower())


class Verifier:
    """Checks signatures against the accepted keys and remembers those it accepted for the
    window in this process (the service also spends each in the database, so that a replay
    to another `cronlink serve` is refused as well)."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [key.encode() for key in keys]
        self._seen: dict[str, float] = {}

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def problem(self, header: str, request: Request, now: float | None = None) -> str | None:
        """What is wrong with `header` for `request` (None: it is good, and now spent here)."""
        now = time.time() if now is None else now
        if not self._keys:
            return f"this service has no {ENV}: it cannot check signatures"
        try:
            parsed = parse(header)
        except Malformed as error:
            return f"{HEADER} is malformed: {error}"
        if abs(now - parsed.stamp) > WINDOW:
            return f"{HEADER} was made more than {WINDOW:g} s from now (check the clocks)"
        if parsed.digest in self._seen:
            return f"{HEADER} was already used"
        matched = False
        for key in self._keys:
            expected = _digest(key, request, parsed.stamp, parsed.nonce)
            matched |= hmac.compare_digest(expected, parsed.digest)
        if not matched:
            return f"{HEADER} does not match the request and {ENV}"
        self._remember(parsed.digest, now)
        return None

    def _remember(self, digest: str, now: float) -> None:
        if len(self._seen) >= SEEN_KEPT:
            self._seen = {d: t for d, t in self._seen.items() if now - t <= WINDOW}
        self._seen[digest] = now
