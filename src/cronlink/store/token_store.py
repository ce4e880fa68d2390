"""The API tokens' verbs (`store.tokens`): create, look up by digest, list, revoke."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from cronlink.api_tokens import ApiToken, Scope
from cronlink.errors import TokenNotFoundError
from cronlink.store.schema import api_tokens

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Connection, Row

    from cronlink.store.base import Store


class TokenStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self, name: str, scope: Scope, digest: str, expires_at: datetime | None, now: datetime
    ) -> ApiToken:
        values = {"name": name, "scope": scope.label, "digest": digest, "created_at": now,
                  "expires_at": expires_at}  # fmt: skip

        def work(c: Connection) -> Row[Any]:
            return c.execute(insert(api_tokens).values(values).returning(*_COLUMNS)).one()

        return _token(await self._store.transact(work, write=True))

    async def by_digest(self, digest: str) -> ApiToken | None:
        query = select(*_COLUMNS).where(api_tokens.c.digest == digest)
        row = await self._store.transact(lambda c: c.execute(query).first(), write=False)
        return None if row is None else _token(row)

    async def list(self) -> list[ApiToken]:
        query = select(*_COLUMNS).order_by(api_tokens.c.id)
        rows = await self._store.transact(lambda c: c.execute(query).all(), write=False)
        return [_token(r) for r in rows]

    async def revoke(self, token_id: int, now: datetime) -> ApiToken:
        """Revoke at once (a revoked token stays revoked: the first instant is kept)."""

        def work(c: Connection) -> Row[Any] | None:
            c.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return c.execute(select(*_COLUMNS).where(api_tokens.c.id == token_id)).first()

        row = await self._store.transact(work, write=True)
        if row is None:
            raise TokenNotFoundError(f"no API token has id {token_id}")
        return _token(row)

    async def touch(self, token_id: int, now: datetime) -> None:
        query = update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now)
        await self._store.transact(lambda c: c.execute(query), write=True)


_COLUMNS = [c for c in api_tokens.c if c.name != "digest"]


def _token(row: Row[Any]) -> ApiToken:
    m = row._mapping
    return ApiToken(
        id=m["id"], name=m["name"], scope=Scope.named(m["scope"]), created_at=m["created_at"],
        expires_at=m["expires_at"], revoked_at=m["revoked_at"], last_used_at=m["last_used_at"],
    )  # fmt: skip
