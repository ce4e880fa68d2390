"""SQL of the connection domain, as functions of a connection inside a transaction.

Both engines run these as they are: a refresh is fenced by a lease on the row (taken with
one conditional UPDATE, atomic on both) and by the secrets' version, compared and bumped
in the UPDATE that saves new tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, or_, select, update

from cronlink.errors import ConfigError, ConnectionNotFoundError
from cronlink.records.connections import (
    Connection,
    ConnectionState,
    Event,
    Health,
    HealthCheck,
    Sealed,
)
from cronlink.storable import escaped
from cronlink.store import queries
from cronlink.store.schema import Instant, from_micros
from cronlink.store.schema import connection_events as events
from cronlink.store.schema import connections as table

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from sqlalchemy import Connection as Db

    from cronlink.records.runs import NewRun

PUBLIC_COLUMNS = [c for c in table.c if c.name not in ("secrets", "key_id", "refresh_lock",
                                                  "refresh_lock_until")]  # fmt: skip


def sealed_from(values: Mapping[Any, Any]) -> Sealed:
    """A connection with its secrets from one row's values (instants already converted)."""
    return Sealed(
        connection=connection_from(values), ciphertext=values["secrets"], key_id=values["key_id"]
    )


def connection_from(values: Mapping[Any, Any]) -> Connection:
    return Connection(
        id=values["id"],
        provider=values["provider"],
        owner=values["owner"],
        name=values["name"],
        state=ConnectionState(values["state"]),
        health=Health(values["health"]),
        scopes=values["scopes"],
        version=values["version"],
        expires_at=values["expires_at"],
        refresh_due_at=values["refresh_due_at"],
        refreshed_at=values["refreshed_at"],
        refresh_failures=values["refresh_failures"],
        last_error=values["last_error"],
        health_failures=values["health_failures"],
        health_successes=values["health_successes"],
        checked_at=values["checked_at"],
        latency_ms=values["latency_ms"],
        used_at=values["used_at"],
        paused_until=values["throttled_until"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )


def insert_connection(
    c: Db,
    *,
    provider: str,
    owner: str,
    scopes: str,
    seal: Callable[[int], tuple[str, str]],
    expires_at: datetime | None,
    refresh_due_at: datetime | None,
    now: datetime,
    follow_up: Callable[[int], NewRun | None] = lambda _: None,
    name: str | None = None,
) -> Connection:
    """Store a new connection with its sealed secrets, and its first refresh run: insert,
    then seal the secrets bound to the new id (`seal` returns ciphertext and key id)."""
    if name is not None:
        _name_free(c, owner, name, None)
    new_id = c.execute(
        insert(table)
        .values(
            provider=provider, owner=owner, name=name, state=ConnectionState.ACTIVE.value,
            health=Health.UNKNOWN.value, scopes=scopes, secrets="", key_id="", version=1,
            expires_at=expires_at, refresh_due_at=refresh_due_at, refresh_failures=0,
            health_failures=0, health_successes=0, created_at=now, updated_at=now,
        )
        .returning(table.c.id)
    ).scalar_one()  # fmt: skip
    ciphertext, key_id = seal(new_id)
    c.execute(update(table).where(table.c.id == new_id).values(secrets=ciphertext, key_id=key_id))
    add_event(c, new_id, "created", f"{provider} connection for {owner}", now)
    run = follow_up(new_id)
    if run is not None:
        queries.enqueue(c, run, now)
    return get_connection(c, new_id)


def get_connection(c: Db, connection_id: int) -> Connection:
    row = c.execute(select(*PUBLIC_COLUMNS).where(table.c.id == connection_id)).first()
    if row is None:
        raise ConnectionNotFoundError(f"no connection has id {connection_id}")
    return connection_from(row._mapping)


def named(c: Db, owner: str, name: str) -> Connection | None:
    """The connection of `owner` named `name`, if there is one."""
    row = c.execute(
        select(*PUBLIC_COLUMNS).where(table.c.owner == owner, table.c.name == name)
    ).first()
    return None if row is None else connection_from(row._mapping)


def rename(c: Db, connection_id: int, name: str | None, now: datetime) -> Connection:
    """Give the connection `name` (None: no name), unless another of its owner's has it."""
    before = get_connection(c, connection_id)
    if name == before.name:
        return before
    if name is not None:
        _name_free(c, before.owner, name, connection_id)
    c.execute(update(table).where(table.c.id == connection_id).values(name=name, updated_at=now))
    was = "no name" if before.name is None else repr(before.name)
    add_event(c, connection_id, "renamed", f"{was} -> {name!r}" if name else f"{was} removed", now)
    return get_connection(c, connection_id)


def _name_free(c: Db, owner: str, name: str, connection_id: int | None) -> None:
    """Refuse a name another connection of `owner` has (the unique index is the backstop
    for two writers at once; this names the connection that has it)."""
    holder = named(c, owner, name)
    if holder is not None and holder.id != connection_id:
        raise ConfigError(
            f"name: {owner} has a connection named {name!r} already (connection {holder.id})"
        )


def get_sealed(c: Db, connection_id: int) -> Sealed:
    row = c.execute(_SEALED, {"cid": connection_id}).first()
    if row is None:
        raise ConnectionNotFoundError(f"no connection has id {connection_id}")
    return sealed_from(row._mapping)


def get_sealed_many(c: Db, connection_ids: list[int]) -> dict[int, Sealed]:
    """The connections of `connection_ids` that exist, with their secrets, by id."""
    rows = c.execute(
        select(*PUBLIC_COLUMNS, table.c.secrets, table.c.key_id).where(
            table.c.id.in_(connection_ids)
        )
    )
    return {row.id: sealed_from(row._mapping) for row in rows}


def list_connections(
    c: Db,
    *,
    owner: str | None = None,
    provider: str | None = None,
    state: ConnectionState | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[Connection]:
    query = select(*PUBLIC_COLUMNS).where(table.c.id > after_id)
    if owner is not None:
        query = query.where(table.c.owner == owner)
    if provider is not None:
        query = query.where(table.c.provider == provider)
    if state is not None:
        query = query.where(table.c.state == state.value)
    rows = c.execute(query.order_by(table.c.id).limit(limit))
    return [connection_from(row._mapping) for row in rows]


def set_state(
    c: Db, connection_id: int, state: ConnectionState, reason: str | None, now: datetime
) -> Connection:
    before = get_connection(c, connection_id)
    values: dict[str, Any] = {"state": state.value, "updated_at": now}
    if state is ConnectionState.ACTIVE:
        values |= {"last_error": None, "refresh_failures": 0}
    elif reason is not None:
        values["last_error"] = reason
    c.execute(update(table).where(table.c.id == connection_id).values(**values))
    if before.state is not state:
        add_event(c, connection_id, state.value, reason or f"was {before.state.value}", now)
    return get_connection(c, connection_id)


def delete_connection(c: Db, connection_id: int, now: datetime) -> None:
    """Delete the row and its secrets; its events stay, as the record of what happened."""
    gone = c.execute(delete(table).where(table.c.id == connection_id)).rowcount
    if not gone:
        raise ConnectionNotFoundError(f"no connection has id {connection_id}")
    add_event(c, connection_id, "deleted", "connection and its credentials deleted", now)


# -- refresh -------------------------------------------------------------------------


_SEALED = select(*PUBLIC_COLUMNS, table.c.secrets, table.c.key_id).where(
    table.c.id == bindparam("cid")
)
_ADD_EVENT = insert(events)
SEALED_COLUMNS = [*(c.name for c in PUBLIC_COLUMNS), "secrets", "key_id"]
"""The columns a refresh reads, in order, for the engines' own SQL (`*_refresh.py`)."""
_INSTANTS = [c.name for c in PUBLIC_COLUMNS if isinstance(c.type, Instant)]


def sealed_from_raw(row: tuple[Any, ...]) -> Sealed:
    """A row of `SEALED_COLUMNS` as a driver returns it (instants in microseconds)."""
    values = dict(zip(SEALED_COLUMNS, row, strict=True))
    for name in _INSTANTS:
        if values[name] is not None:
            values[name] = from_micros(values[name])
    return sealed_from(values)


def release_refresh_lock(c: Db, connection_id: int, token: str) -> None:
    c.execute(
        update(table)
        .where(table.c.id == connection_id, table.c.refresh_lock == token)
        .values(refresh_lock=None, refresh_lock_until=None)
    )


def record_refresh_failure(
    c: Db,
    connection_id: int,
    *,
    token: str,
    message: str,
    state: ConnectionState,
    kind: str,
    retry_at: datetime | None,
    now: datetime,
    follow_up: NewRun | None,
    counted: bool = True,
) -> None:
    """Record a refresh that did not happen, with its event (of `kind`) and the run
    retrying it: count the failure (unless it only waits out a pause: not `counted`), move
    the connection to `state`, release the lease. A grant that is gone also makes its
    health `auth_failed`: it is no longer probed, and must not keep showing the last
    probe's `healthy`."""
    said = escaped(message)
    values: dict[str, Any] = {
        "last_error": said, "state": state.value, "refresh_due_at": retry_at,
        "refresh_lock": None, "refresh_lock_until": None, "updated_at": now,
    }  # fmt: skip
    if counted:
        values["refresh_failures"] = table.c.refresh_failures + 1
    if state is ConnectionState.NEEDS_REAUTH:
        values |= {"health": Health.AUTH_FAILED.value, "health_successes": 0}
    c.execute(
        update(table)
        .where(table.c.id == connection_id, table.c.refresh_lock == token)
        .values(**values)
    )
    add_event(c, connection_id, kind, said, now)
    if follow_up is not None:
        queries.enqueue(c, follow_up, now)


def due_for_refresh(c: Db, now: datetime, limit: int) -> list[int]:
    rows = c.execute(
        select(table.c.id)
        .where(table.c.state == ConnectionState.ACTIVE.value, table.c.refresh_due_at <= now)
        .order_by(table.c.refresh_due_at)
        .limit(limit)
    )
    return list(rows.scalars())


def idle_since(c: Db, provider: str, before: datetime, limit: int) -> list[int]:
    """Active connections of `provider` whose tokens were last refreshed (or created)
    before `before`: their refresh tokens need using before the provider drops them."""
    rows = c.execute(
        select(table.c.id)
        .where(
            table.c.state == ConnectionState.ACTIVE.value,
            table.c.provider == provider,
            or_(
                table.c.refreshed_at < before,
                table.c.refreshed_at.is_(None) & (table.c.created_at < before),
            ),
        )
        .order_by(table.c.id)
        .limit(limit)
    )
    return list(rows.scalars())


# -- events and keys -------------------------------------------------------------------


def add_event(c: Db, connection_id: int, kind: str, detail: str, now: datetime) -> None:
    values = {"connection_id": connection_id, "at": now, "kind": kind, "detail": detail}
    c.execute(_ADD_EVENT, values)


def list_events(
    c: Db, connection_id: int | None, after_id: int = 0, limit: int = 100
) -> list[Event]:
    query = select(events).where(events.c.id > after_id)
    if connection_id is not None:
        query = query.where(events.c.connection_id == connection_id)
    rows = c.execute(query.order_by(events.c.id).limit(limit))
    return [
        Event(id=r.id, connection_id=r.connection_id, at=r.at, kind=r.kind, detail=r.detail)
        for r in rows
    ]


def key_ids(c: Db) -> set[str]:
    """The ids of the keys that sealed any stored secret."""
    return set(c.execute(select(table.c.key_id).distinct()).scalars())


def sealed_after(c: Db, after_id: int, limit: int) -> list[tuple[int, int, str, str]]:
    """(id, version, ciphertext, key id) of the connections after `after_id`, in id order."""
    rows = c.execute(
        select(table.c.id, table.c.version, table.c.secrets, table.c.key_id)
        .where(table.c.id > after_id)
        .order_by(table.c.id)
        .limit(limit)
    )
    return [(r.id, r.version, r.secrets, r.key_id) for r in rows]


def reseal(c: Db, connection_id: int, version: int, ciphertext: str, key_id: str) -> bool:
    """Replace a ciphertext by the same secrets under another key, unless a refresh
    changed them meanwhile (then the caller reads the row again)."""
    done = c.execute(
        update(table)
        .where(table.c.id == connection_id, table.c.version == version)
        .values(secrets=ciphertext, key_id=key_id)
    ).rowcount
    return bool(done)


def forget(
    c: Db,
    connection_id: int,
    version: int,
    ciphertext: str,
    key_id: str,
    reason: str,
    now: datetime,
) -> bool:
    """Replace credentials no key opens any more by `ciphertext` (empty ones, under a key
    that is held) and send the connection to `needs_reauth`, unless its version changed."""
    done = c.execute(
        update(table)
        .where(table.c.id == connection_id, table.c.version == version)
        .values(
            secrets=ciphertext,
            key_id=key_id,
            version=version + 1,
            state=ConnectionState.NEEDS_REAUTH.value,
            last_error=reason,
            expires_at=None,
            refresh_due_at=None,
            refresh_lock=None,
            refresh_lock_until=None,
            updated_at=now,
        )
    ).rowcount
    if done:
        add_event(c, connection_id, ConnectionState.NEEDS_REAUTH.value, reason, now)
    return bool(done)


# -- health ----------------------------------------------------------------------------


def active_sealed(c: Db, after_id: int, limit: int) -> list[Sealed]:
    """Active connections with their secrets, in id order (a page of a health sweep)."""
    rows = c.execute(
        select(*PUBLIC_COLUMNS, table.c.secrets, table.c.key_id)
        .where(table.c.id > after_id, table.c.state == ConnectionState.ACTIVE.value)
        .order_by(table.c.id)
        .limit(limit)
    )
    return [sealed_from(r._mapping) for r in rows]


_HEALTH = (
    update(table)
    .where(table.c.id == bindparam("cid"))
    .values(
        health=bindparam("b_health"), health_failures=bindparam("b_failures"),
        health_successes=bindparam("b_successes"), checked_at=bindparam("now"),
        latency_ms=bindparam("b_latency"),
    )
)  # fmt: skip


def record_health(c: Db, checks: list[HealthCheck], now: datetime) -> None:
    """Store each check's outcome, and an event for each change of health (two statements
    for the whole batch)."""
    c.execute(
        _HEALTH,
        [
            {
                "cid": check.connection_id, "b_health": check.health.value,
                "b_failures": check.failures, "b_successes": check.successes, "now": now,
                "b_latency": check.latency_ms,
            }
            for check in checks
        ],
    )  # fmt: skip
    changes = [
        {"connection_id": check.connection_id, "at": now, "kind": "health", "detail": check.event}
        for check in checks
        if check.event is not None
    ]
    if changes:
        c.execute(_ADD_EVENT, changes)


def pause(c: Db, connection_id: int, until: datetime) -> None:
    """Pause every call to the connection's account until `until` (never shortening a
    pause another caller recorded)."""
    c.execute(
        update(table)
        .where(
            table.c.id == connection_id,
            or_(table.c.throttled_until.is_(None), table.c.throttled_until < until),
        )
        .values(throttled_until=until)
    )


def mark_used(c: Db, connection_id: int, now: datetime) -> None:
    c.execute(update(table).where(table.c.id == connection_id).values(used_at=now))
