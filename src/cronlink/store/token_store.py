"""The API tokens' verbs (`store.tokens`): create, look up by digest, list, revoke."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from cronlink.errors import TokenNotFoundError
from cronlink.records.api_tokens import ApiToken, Scope
from cronlink.store.schema import api_tokens
from cronlink.store.verbs import SubStore, reads, writes

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Connection, Row

_COLUMNS = [c for c in api_tokens.c if c.name != "digest"]


def _create(
    c: Connection,
    name: str,
    scope: Scope,
    digest: str,
    expires_at: datetime | None,
    now: datetime,
) -> ApiToken:
    values = {"name": name, "scope": scope.label, "digest": digest, "created_at": now,
              "expires_at": expires_at}  # fmt: skip
    return _token(c.execute(insert(api_tokens).values(values).returning(*_COLUMNS)).one())


def _by_digest(c: Connection, digest: str) -> ApiToken | None:
    row = c.execute(select(*_COLUMNS).where(api_tokens.c.digest == digest)).first()
    return None if row is None else _token(row)


def _list(c: Connection) -> list[ApiToken]:
    return [_token(r) for r in c.execute(select(*_COLUMNS).order_by(api_tokens.c.id))]


def _revoke(c: Connection, token_id: int, now: datetime) -> ApiToken:
    """Revoke at once (a revoked token stays revoked: the first instant is kept)."""
    c.execute(
        update(api_tokens)
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    row = c.execute(select(*_COLUMNS).where(api_tokens.c.id == token_id)).first()
    if row is None:
        raise TokenNotFoundError(f"no API token has id {token_id}")
    return _token(row)


def _touch(c: Connection, token_id: int, now: datetime) -> None:
    c.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now))


def _token(row: Row[Any]) -> ApiToken:
    m = row._mapping
    return ApiToken(
        id=m["id"], name=m["name"], scope=Scope.named(m["scope"]), created_at=m["created_at"],
        expires_at=m["expires_at"], revoked_at=m["revoked_at"], last_used_at=m["last_used_at"],
    )  # fmt: skip


class TokenStore(SubStore):
    create = writes(_create)
    by_digest = reads(_by_digest)
    list = reads(_list)
    revoke = writes(_revoke)
    touch = writes(_touch)
