"""CRON_SECRET: the bearer secrets `/cron/*` accepts, compared in constant time on bytes.

Several may be given at once (comma-separated) so a secret can be rotated without
downtime: add the new one, move the callers, drop the old one. Unset or empty refuses
every call: an unconfigured service never accepts everything.
"""

from __future__ import annotations

import hmac
import os

from cronlink.signatures import Verifier

ENV = "CRON_SECRET"
MIN_LENGTH = 16


class CronSecrets:
    def __init__(self, secrets: list[str]) -> None:
        self._secrets = [s.encode() for s in secrets]
        self.verifier = Verifier(secrets)
        """Checks `X-Cronlink-Signature` with the same secrets."""

    @classmethod
    def from_env(cls) -> CronSecrets:
        text = os.environ.get(ENV, "")
        return cls([part.strip() for part in text.split(",") if part.strip()])

    @property
    def configured(self) -> bool:
        return bool(self._secrets)

    def accepts(self, authorization: str | None) -> bool:
        """Whether `Authorization: Bearer <secret>` names one of the secrets. Every secret
        is compared, whichever matches, so the time taken says nothing of which or why."""
        if authorization is None:
            return False
        # Header values reach us decoded as latin-1: encoding back gives the sent bytes,
        # and bytes compare safely whatever they hold (str needs ASCII).
        sent = authorization.encode("latin-1", errors="replace")
        scheme, _, token = sent.partition(b" ")
        token = token.strip()
        matched = False
        for secret in self._secrets:
            matched |= hmac.compare_digest(token, secret)
        return matched and scheme.lower() == b"bearer"
