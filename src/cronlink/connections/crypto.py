"""Credentials encrypted at rest with Fernet, keys from CRONLINK_SECRET_KEY.

The variable holds one or more keys, newest first: new secrets are sealed with the first,
any of them opens old ones (`MultiFernet`), and `cronlink keys rotate` re-seals every row
with the first. Each ciphertext is stored with the id of its key (an HMAC of the key, not
the key), so start-up can refuse a key that does not open the database instead of failing
later, row by row, or writing rows no other process can read.

Each plaintext names its connection: a ciphertext copied onto another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cronlink.connections import SECRET_KEY_ENV
from cronlink.errors import SecretKeyError
from cronlink.records.connections import Secrets

if TYPE_CHECKING:
    from collections.abc import Iterable

ENV = SECRET_KEY_ENV


def generate_key() -> str:
    return Fernet.generate_key().decode()


def key_id(key: bytes) -> str:
    """A stable, non-reversible name for a key."""
    mac = hmac.HMAC(base64.urlsafe_b64decode(key), hashes.SHA256())
    mac.update(b"cronlink key id")
    return mac.finalize().hex()[:16]


class Vault:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError(f"{ENV} is not set; generate a key with `cronlink keys generate`")
        self._keys = keys
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self.key_ids = [key_id(key) for key in keys]

    @classmethod
    def from_text(cls, text: str | None) -> Vault:
        """Keys from the variable's value: comma-separated, newest first."""
        parts = [part.strip() for part in (text or "").split(",") if part.strip()]
        keys = []
        for index, part in enumerate(parts, start=1):
            try:
                raw = base64.urlsafe_b64decode(part.encode())
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise SecretKeyError(
                    f"{ENV}: key {index} of {len(parts)} is not a Fernet key (32 bytes in "
                    "url-safe base64, 44 characters); generate one with `cronlink keys generate`"
                )
            keys.append(part.encode())
        return cls(keys)

    @property
    def primary(self) -> str:
        return self.key_ids[0]

    def derived(self, purpose: str) -> MultiFernet:
        """A Fernet for something other than credentials (an OAuth `state`), with keys
        derived from these (HKDF): what one purpose seals never opens as another's, and
        key rotation applies to it as it does to credentials."""
        return MultiFernet([Fernet(_derive(key, purpose)) for key in self._keys])

    def seal(self, connection_id: int, secrets: Secrets) -> str:
        plain = {"c": connection_id, "a": secrets.access_token, "r": secrets.refresh_token}
        return self._fernet.encrypt(json.dumps(plain).encode()).decode()

    def open(self, connection_id: int, ciphertext: str) -> Secrets:
        try:
            plain = json.loads(self._fernet.decrypt(ciphertext.encode()))
        except InvalidToken:
            raise SecretKeyError(
                f"the secrets of connection {connection_id} do not open with any key in {ENV} "
                f"(key ids {', '.join(self.key_ids)}); nothing was changed"
            ) from None
        if plain.get("c") != connection_id:
            raise SecretKeyError(
                f"the secrets stored on connection {connection_id} belong to another connection; "
                "refusing to use them"
            )
        return Secrets(access_token=plain["a"], refresh_token=plain["r"])

    def reseal(self, ciphertext: str) -> str:
        """The same plaintext under the newest key."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(f"a stored secret does not open with any key in {ENV}") from None

    def check(self, stored: Iterable[str]) -> None:
        """Refuse to start when the database holds secrets sealed with a key we lack."""
        missing = sorted(set(stored) - set(self.key_ids))
        if missing:
            raise SecretKeyError(
                f"the database holds credentials sealed with key id {', '.join(missing)}, which "
                f"is not in {ENV} (it holds {', '.join(self.key_ids)}); start-up refused so that "
                "no credential is lost. Set the key they were sealed with (add the new one "
                "first, then run `cronlink keys rotate`); if that key is lost for good, "
                "`cronlink keys forget-lost` sends those connections to needs_reauth"
            )


def _derive(key: bytes, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return base64.urlsafe_b64encode(hkdf.derive(base64.urlsafe_b64decode(key)))
