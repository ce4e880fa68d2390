"""`Connections`: add, read, refresh and retire connections; the API handlers, the CLI
and the jobs share.

A refresh holds the connection's lease in the database (one refresh per connection across
every process and machine), re-reads the secrets under it, and stores the new ones with a
compare-and-swap on their version in the same transaction as its event and the next
refresh run. The lease lasts twice as long as a token request may take, so it lapses only
when its holder died.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from cronlink.clock import Clock, SystemClock
from cronlink.connections import checks, keys, tokens
from cronlink.connections.health import Policy
from cronlink.connections.model import (
    Connection,
    ConnectionState,
    Credentials,
    Event,
    Sealed,
    Secrets,
)
from cronlink.errors import (
    ConfigError,
    ConnectionNotFoundError,
    ConnectionUnusableError,
    CronlinkError,
    RefreshError,
    StoreError,
)
from cronlink.jobs import new_run
from cronlink.observe import metrics
from cronlink.records import Reason
from cronlink.store.base import SavedRefresh

if TYPE_CHECKING:
    from datetime import datetime

    import aiohttp

    from cronlink.connections.crypto import Vault
    from cronlink.connections.providers import Providers
    from cronlink.jobs import Job
    from cronlink.records import NewRun
    from cronlink.store import Store

log = logging.getLogger("cronlink.connections")
REFRESH_LEASE = timedelta(seconds=2 * tokens.TIMEOUT)
CONFIG_RETRY = timedelta(hours=1)


class Connections:
    def __init__(
        self,
        store: Store,
        vault: Vault,
        providers: Providers,
        session: aiohttp.ClientSession,
        *,
        clock: Clock | None = None,
        refresh_job: Job | None = None,
        health_policy: Policy | None = None,
        passive_window: timedelta = timedelta(minutes=5),
        probe_concurrency: int = 100,
        refresh_lease: timedelta = REFRESH_LEASE,
    ) -> None:
        self.store = store
        self.vault = vault
        self.providers = providers
        self.session = session
        self.clock = clock or SystemClock()
        self.refresh_job = refresh_job
        """The job that runs one connection's refresh ahead of expiry (None: no such runs)."""
        self.health_policy = health_policy or Policy()
        self.passive_window = passive_window
        self.probe_concurrency = probe_concurrency
        self.refresh_lease = refresh_lease
        """How long a refresh holds its connection; its token request gets half of it."""

    async def check_keys(self) -> None:
        """Refuse to go on when the database holds secrets sealed with a key we lack."""
        self.vault.check(await self.store.connections.key_ids())

    async def rotate_keys(self, batch: int = 500) -> int:
        """Re-seal every secret under the newest key (see `keys.rotate`)."""
        return await keys.rotate(self.store.connections, self.vault, batch)

    # -- lifecycle -----------------------------------------------------------------------

    async def add(
        self,
        *,
        provider: str,
        owner: str,
        access_token: str,
        refresh_token: str | None = None,
        expires_in: float | None = None,
        scopes: str | None = None,
    ) -> Connection:
        chosen = self.providers.get(provider)
        if not owner.strip():
            raise ConfigError("owner: must not be empty")
        if not access_token.strip():
            raise ConfigError("access token: must not be empty")
        if expires_in is not None and (
            isinstance(expires_in, bool) or not 0 < expires_in <= tokens.MAX_LIFETIME
        ):
            raise ConfigError(
                f"expires in: must be seconds between 0 and {tokens.MAX_LIFETIME:g} (ten years), "
                f"not {expires_in!r}"
            )
        now = self.clock.now()
        expires_at = None if expires_in is None else now + timedelta(seconds=expires_in)
        due = tokens.refresh_due(chosen, expires_at, now)
        sealed = Secrets(access_token=access_token.strip(), refresh_token=refresh_token or None)
        added = await self.store.connections.add(
            provider=chosen.name,
            owner=owner.strip(),
            scopes=scopes if scopes is not None else " ".join(chosen.scopes),
            seal=lambda cid: (self.vault.seal(cid, sealed), self.vault.primary),
            expires_at=expires_at,
            refresh_due_at=due if refresh_token else None,
            now=now,
            follow_up=lambda cid: self._refresh_run(cid, 1, due) if refresh_token else None,
        )
        log.info("connection %d added (%s, owner %s)", added.id, added.provider, added.owner)
        return added

    async def get(self, connection_id: int) -> Connection:
        return await self.store.connections.get(connection_id)

    async def find(
        self,
        *,
        owner: str | None = None,
        provider: str | None = None,
        state: ConnectionState | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Connection]:
        return await self.store.connections.find(
            owner=owner, provider=provider, state=state, after_id=after_id, limit=limit
        )

    async def events(self, connection_id: int | None = None, after_id: int = 0) -> list[Event]:
        return await self.store.connections.events(connection_id, after_id)

    async def disable(self, connection_id: int) -> Connection:
        return await self.store.connections.set_state(
            connection_id, ConnectionState.DISABLED, "disabled by an operator", self.clock.now()
        )

    async def enable(self, connection_id: int) -> Connection:
        current = await self.get(connection_id)
        if current.state is ConnectionState.NEEDS_REAUTH:
            raise ConnectionUnusableError(
                f"connection {connection_id} needs its owner to reconnect ({current.last_error}); "
                "enabling it would not make its grant valid again"
            )
        return await self.store.connections.set_state(
            connection_id, ConnectionState.ACTIVE, None, self.clock.now()
        )

    async def delete(self, connection_id: int) -> None:
        await self.store.connections.delete(connection_id, self.clock.now())

    # -- health --------------------------------------------------------------------------

    async def check(self, connection_id: int) -> Connection:
        """Probe one connection now and record its health."""
        sealed = await self.store.connections.sealed(connection_id)
        _usable(sealed.connection)
        outcome = await checks.check_one(self, sealed)
        await self.store.connections.record_health([outcome], self.clock.now())
        return await self.get(connection_id)

    async def check_all(self) -> dict[str, int]:
        """Probe every active connection not recently used successfully."""
        return await checks.check_all(self)

    async def used(self, connection_id: int) -> None:
        """Note a successful real call through the connection: it stands in for a probe."""
        await self.store.connections.mark_used(connection_id, self.clock.now())

    # -- credentials and refresh ---------------------------------------------------------

    async def sweep(self, limit: int = 10_000) -> tuple[list[int], list[int]]:
        """Connections whose refresh is due, and those whose refresh token has been idle
        longer than their provider allows (it would be dropped)."""
        now = self.clock.now()
        due = await self.store.connections.due_for_refresh(now, limit)
        idle: list[int] = []
        for provider in self.providers:
            if provider.idle_refresh_after is not None:
                before = now - provider.idle_refresh_after
                idle += await self.store.connections.idle_since(provider.name, before, limit)
        return due, idle

    async def credentials_many(
        self, connection_ids: list[int]
    ) -> dict[int, Credentials | CronlinkError]:
        """`credentials` of several connections, read in one query (a poll batch's): each
        is a `Credentials` or the error that connection gave."""
        found = await self.store.connections.sealed_many(connection_ids)

        async def one(connection_id: int) -> Credentials | CronlinkError:
            sealed = found.get(connection_id)
            if sealed is None:
                return ConnectionNotFoundError(f"no connection has id {connection_id}")
            try:
                return await self.credentials(connection_id, sealed)
            except CronlinkError as error:
                return error

        # Together: those inside their margin refresh first, each under its own lease.
        answers = await asyncio.gather(*(one(i) for i in connection_ids))
        return dict(zip(connection_ids, answers, strict=True))

    async def credentials(self, connection_id: int, sealed: Sealed | None = None) -> Credentials:
        """A valid access token: refreshed first when it is inside its provider's margin.
        (`sealed`: the connection as just read, to spare reading it again.)"""
        if sealed is None:
            sealed = await self.store.connections.sealed(connection_id)
        current = sealed.connection
        _usable(current)
        now = self.clock.now()
        backing_off = current.refresh_due_at is not None and current.refresh_due_at > now
        provider = self.providers.get(current.provider)
        if tokens.inside_margin(current, provider, now) and not backing_off:
            try:
                await self.refresh(connection_id, force=False)
            except (RefreshError, ConnectionUnusableError) as error:
                # A token that still works is better than none: the failure is recorded
                # and retried on its own schedule; only an expired token is an error here.
                if current.expires_at is None or current.expires_at <= now:
                    raise
                if isinstance(error, RefreshError) and error.kind == "grant":
                    raise
                log.warning("connection %d: using its current token: %s", connection_id, error)
            sealed = await self.store.connections.sealed(connection_id)
            _usable(sealed.connection)
        opened = self.vault.open(connection_id, sealed.ciphertext)
        return Credentials(
            connection_id=connection_id,
            provider=sealed.connection.provider,
            access_token=opened.access_token,
            expires_at=sealed.connection.expires_at,
        )

    async def refresh(self, connection_id: int, *, force: bool = True) -> Connection:
        """Refresh the tokens now (`force`), or only if they are inside the margin.

        When another process is refreshing this connection, wait for it and return what it
        stored instead of refreshing twice.
        """
        token = secrets.token_hex(8)
        give_up = self.clock.now() + self.refresh_lease + timedelta(seconds=5)
        seen: int | None = None
        while True:
            now = self.clock.now()
            taken, sealed = await self.store.connections.take_refresh_lock(
                connection_id, token, now + self.refresh_lease, now
            )
            if seen is not None and sealed.connection.version != seen:
                # The process we waited for has refreshed it: its tokens are the answer.
                if taken:
                    await self.store.connections.release_refresh_lock(connection_id, token)
                return sealed.connection
            if taken:
                break
            seen = sealed.connection.version
            if now > give_up:
                raise RefreshError(
                    f"connection {connection_id}: another process has held its refresh for "
                    f"over {self.refresh_lease.total_seconds():g}s",
                    kind="transient",
                )
            await asyncio.sleep(0.05)
        try:
            return await self._refresh_held(sealed, token, force)
        except BaseException:
            # Failures are recorded (and the lease released) inside; this covers the rest,
            # such as cancellation: the lease is released rather than left to lapse.
            await asyncio.shield(self.store.connections.release_refresh_lock(connection_id, token))
            raise

    async def _refresh_held(self, sealed: Sealed, token: str, force: bool) -> Connection:
        current = sealed.connection
        provider = self.providers.get(current.provider)
        now = self.clock.now()
        if current.state is not ConnectionState.ACTIVE or not (
            force or tokens.inside_margin(current, provider, now)
        ):
            await self.store.connections.release_refresh_lock(current.id, token)
            _usable(current)
            return current
        opened = self.vault.open(current.id, sealed.ciphertext)
        if opened.refresh_token is None:
            await self.store.connections.release_refresh_lock(current.id, token)
            raise ConnectionUnusableError(
                f"connection {current.id} has no refresh token: reconnect it before its access "
                "token expires"
            )
        try:
            timeout = self.refresh_lease.total_seconds() / 2
            fresh = await tokens.refresh(self.session, provider, opened.refresh_token, now, timeout)
        except RefreshError as error:
            metrics.REFRESHES.labels(provider.name, error.kind).inc()
            recovered = await self._failed(sealed, token, error)
            if recovered is not None:
                return recovered
            raise
        kept = fresh.refresh_token or opened.refresh_token
        renewed = Secrets(access_token=fresh.access_token, refresh_token=kept)
        due = tokens.refresh_due(provider, fresh.expires_at, now)
        stamp = self.clock.now()
        saving = SavedRefresh(
            token=token,
            version=current.version,
            ciphertext=self.vault.seal(current.id, renewed),
            key_id=self.vault.primary,
            expires_at=fresh.expires_at,
            refresh_due_at=due,
            now=stamp,
            event=_refreshed(fresh.expires_at, kept != opened.refresh_token),
            follow_up=self._refresh_run(current.id, current.version + 1, due),
        )
        saved = await self._save(current.id, saving)
        if not saved:
            raise RefreshError(
                f"connection {current.id}: its refresh lease lapsed before the new tokens were "
                "stored (the token endpoint took too long)",
                kind="transient",
            )
        log.info("connection %d refreshed (%s)", current.id, provider.name)
        metrics.REFRESHES.labels(provider.name, "refreshed").inc()
        return dataclasses.replace(
            current, version=current.version + 1, expires_at=fresh.expires_at,
            refresh_due_at=due, refreshed_at=stamp, refresh_failures=0, last_error=None,
            updated_at=stamp,
        )  # fmt: skip

    async def _save(self, connection_id: int, saving: SavedRefresh) -> bool:
        """Save a refresh, retrying a failed write: the provider has rotated the token
        already, so giving up here would lose the only copy of the new one."""
        for attempt in range(3):
            try:
                return await self.store.connections.save_refresh(connection_id, saving)
            except StoreError:
                if attempt == 2:
                    raise
                log.warning("connection %d: saving its new tokens failed; retrying", connection_id)
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _failed(self, sealed: Sealed, token: str, error: RefreshError) -> Connection | None:
        """Record a failed refresh. On `invalid_grant`, first read the secrets once more:
        if another process stored newer ones meanwhile, they are the answer (returned)."""
        current = sealed.connection
        now = self.clock.now()
        if error.kind == "grant":
            latest = await self.store.connections.sealed(current.id)
            if latest.connection.version != current.version:
                await self.store.connections.release_refresh_lock(current.id, token)
                return latest.connection
            state, kind, retry_at = ConnectionState.NEEDS_REAUTH, "needs_reauth", None
        elif error.kind == "config":
            state, kind, retry_at = ConnectionState.ACTIVE, "config_error", now + CONFIG_RETRY
        else:
            wait = tokens.sleep_for(error, current.refresh_failures)
            state, kind, retry_at = ConnectionState.ACTIVE, "refresh_failed", now + wait
        follow_up = None
        if retry_at is not None:
            follow_up = self._refresh_run(
                current.id, current.version, retry_at, f"retry{current.refresh_failures + 1}"
            )
        await self.store.connections.record_refresh_failure(
            current.id, token=token, message=str(error), state=state, kind=kind,
            retry_at=retry_at, now=now, follow_up=follow_up,
        )  # fmt: skip
        log.warning("connection %d: %s", current.id, error)
        return None

    def _refresh_run(
        self, connection_id: int, version: int, at: datetime | None, suffix: str = ""
    ) -> NewRun | None:
        """The run that refreshes the connection at `at` (once per version and suffix)."""
        if self.refresh_job is None or at is None:
            return None
        return new_run(
            self.refresh_job,
            Reason.ENQUEUE,
            payload={"connection_id": connection_id},
            not_before=at,
            dedupe_key=f"refresh:{connection_id}:{version}{':' + suffix if suffix else ''}",
        )


def _usable(connection: Connection) -> None:
    if connection.state is not ConnectionState.ACTIVE:
        why = f": {connection.last_error}" if connection.last_error else ""
        raise ConnectionUnusableError(f"connection {connection.id} is {connection.state}{why}")


def _refreshed(expires_at: datetime | None, rotated: bool) -> str:
    until = f"valid until {expires_at.isoformat()}" if expires_at else "without expiry"
    return f"access token {until}" + ("; refresh token rotated" if rotated else "")
