"""Key rotation: every stored secret re-sealed under the newest key of CRONLINK_SECRET_KEY."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronlink.connections.crypto import ENV
from cronlink.errors import SecretKeyError
from cronlink.plurals import counted

if TYPE_CHECKING:
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
