"""CRON_SECRET: the bearer secrets `/cron/*` accepts, compared in constant time on bytes;
and CRON_SIGNING_KEY, the keys `X-Cronlink-Signature` is checked with.

Each may list several (comma-separated, the current one first) so it can be rotated
without downtime: add the new one after the current everywhere, then put it first, then
drop the old one (docs/api.md). Unset or empty CRON_SECRET refuses every call: an
unconfigured service never accepts everything. A secret shorter than `MIN_LENGTH`, a
signing key shorter than `signatures.MIN_KEY_LENGTH` or equal to a secret stops start-up.
"""

from __future__ import annotations

import hmac
import os
from typing import TYPE_CHECKING

from cronlink.envtext import listed
from cronlink.errors import ConfigError
from cronlink.signatures import ENV as SIGNING_ENV
from cronlink.signatures import Verifier, signing_keys

if TYPE_CHECKING:
    from collections.abc import Mapping

ENV = "CRON_SECRET"
MIN_LENGTH = 16
"""A shorter secret could be guessed, and masking it everywhere would shred ordinary text."""


class CronSecrets:
    def __init__(self, secrets: list[str], signing: list[str] | None = None) -> None:
        self._secrets = [s.encode() for s in secrets]
        self.verifier = Verifier(signing or [])
        """Checks `X-Cronlink-Signature` with the signing keys."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CronSecrets:
        """The secrets and keys of the environment, checked (`ConfigError` naming the
        variable: the roles call `check` at start, so a bad one stops them there)."""
        env = os.environ if env is None else env
        return cls(listed(env, ENV, MIN_LENGTH), signing_keys(env))

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


def check(env: Mapping[str, str], require_signature: bool = False) -> None:
    """Stop start-up (`ConfigError` naming the variable) on a secret or key that is too
    short, a signing key equal to a secret, or required signatures without a key."""
    secrets = CronSecrets.from_env(env)
    if require_signature and not secrets.verifier.configured:
        raise ConfigError(f"[serve] require_signature needs {SIGNING_ENV} (it signs calls)")
