"""Keys of CRONLINK_SECRET_KEY over the stored secrets: rotation (every secret re-sealed
under the newest key) and, when a key is lost for good, forgetting what only it opened."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronlink.connections.crypto import ENV
from cronlink.errors import SecretKeyError
from cronlink.plurals import counted
from cronlink.records.connections import Secrets

if TYPE_CHECKING:
    from datetime import datetime

    from cronlink.connections.crypto import Vault
    from cronlink.store.connection_store import ConnectionStore


async def rotate(connections: ConnectionStore, vault: Vault, batch: int = 500) -> int:
    """Re-seal every secret not sealed with the newest key; returns how many were.

    Each row is swapped only if its version is unchanged, so a refresh running at the
    same time is never overwritten: such a row is read again and re-sealed after it.
    """
    resealed, after = 0, 0
    while rows := await connections.sealed_after(after, batch):
        for connection_id, version, ciphertext, key in rows:
            while key != vault.primary:
                fresh = vault.reseal(ciphertext)
                if await connections.reseal(connection_id, version, fresh, vault.primary):
                    resealed += 1
                    break
                current = await connections.sealed(connection_id)
                version, ciphertext = current.connection.version, current.ciphertext
                key = current.key_id
        after = rows[-1][0]
    left = await connections.key_ids() - {vault.primary}
    if left:
        raise SecretKeyError(
            f"re-sealed {counted(resealed, 'connection')}, but some are still sealed with key id "
            f"{', '.join(sorted(left))} (a process with an older {ENV} wrote them "
            "meanwhile): give every process the new key first, then rotate again"
        )
    return resealed


async def forget_lost(
    connections: ConnectionStore, vault: Vault, now: datetime, batch: int = 500
) -> dict[str, list[int]]:
    """Give up the secrets sealed with keys `vault` does not hold: each such connection
    goes to `needs_reauth` (its owner connects again) holding empty credentials sealed with
    the newest key, so that every process starts again. Returns the connections forgotten
    by the key id that sealed them. Nothing sealed with a held key is touched."""
    forgotten: dict[str, list[int]] = {}
    after = 0
    while rows := await connections.sealed_after(after, batch):
        for connection_id, version, _, key in rows:
            while key not in vault.key_ids:
                reason = (
                    f"its credentials were sealed with key id {key}, which is lost: they were "
                    "forgotten; connect it again"
                )
                empty = vault.seal(connection_id, Secrets(access_token=""))
                if await connections.forget(
                    connection_id, version, empty, vault.primary, reason, now
                ):
                    forgotten.setdefault(key, []).append(connection_id)
                    break
                current = await connections.sealed(connection_id)
                version, key = current.connection.version, current.key_id
        after = rows[-1][0]
    return forgotten
