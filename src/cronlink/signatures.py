"""Signed calls beyond the static bearer: `X-Cronlink-Signature: t=UNIX,n=NONCE,v1=HEX`,
an HMAC-SHA256 with the cron secret over the timestamp, a nonce (two identical calls in
one second are still two calls), the method, the path and the body's SHA-256. A signature
is good for five minutes and once: a captured request cannot be replayed, even within its
window. HTTP-target jobs with `sign = true` send one."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "X-Cronlink-Signature"
WINDOW = 300.0
SEEN_KEPT = 100_000


def sign(secret: str, method: str, path: str, body: bytes, at: float | None = None) -> str:
    stamp = int(time.time() if at is None else at)
    nonce = secrets.token_hex(8)
    return f"t={stamp},n={nonce},v1={_digest(secret.encode(), stamp, nonce, method, path, body)}"


def _digest(secret: bytes, stamp: int, nonce: str, method: str, path: str, body: bytes) -> str:
    body_hash = hashlib.sha256(body).hexdigest()
    message = f"{stamp}\n{nonce}\n{method.upper()}\n{path}\n{body_hash}"
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def fingerprint(header: str) -> str:
    """The signature's own digest (`v1`): what is remembered as spent."""
    return _fields(header).get("v1", "")[:64]


def _fields(header: str) -> dict[str, str]:
    return dict(part.strip().partition("=")[::2] for part in header.split(","))


class Verifier:
    """Checks signatures against the accepted secrets and remembers those it accepted for
    the window in this process (the service also spends each in the database, so that a
    replay to another `cronlink serve` is refused as well)."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = [s.encode() for s in secrets]
        self._seen: dict[str, float] = {}

    def accepts(
        self, header: str, method: str, path: str, body: bytes, now: float | None = None
    ) -> bool:
        now = time.time() if now is None else now
        fields = _fields(header)
        stamp, nonce, given = fields.get("t", ""), fields.get("n", ""), fields.get("v1", "")
        if not stamp.isdigit() or abs(now - int(stamp)) > WINDOW or given in self._seen:
            return False
        matched = False
        for secret in self._secrets:
            expected = _digest(secret, int(stamp), nonce, method, path, body)
            matched |= hmac.compare_digest(expected.encode(), given.encode("latin-1", "replace"))
        if matched:
            self._remember(given, now)
        return matched

    def _remember(self, signature: str, now: float) -> None:
        if len(self._seen) >= SEEN_KEPT:
            self._seen = {s: t for s, t in self._seen.items() if now - t <= WINDOW}
        self._seen[signature] = now
