"""Refreshing a connection's tokens: `Refresher`, which `Connections` holds.

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

from cronlink.clock import iso_seconds
from cronlink.connections import tokens
from cronlink.connections.account import DEFAULT_PAUSE
from cronlink.errors import ConnectionUnusableError, RefreshError, StoreError
from cronlink.jobs import new_run
from cronlink.observe import metrics, tracing
from cronlink.records.connections import Connection, ConnectionState, Sealed, Secrets
from cronlink.records.runs import Reason
from cronlink.store.base import SavedRefresh

if TYPE_CHECKING:
    from datetime import datetime

    import aiohttp

    from cronlink.clock import Clock
    from cronlink.connections.account import Pauses
    from cronlink.connections.crypto import Vault
    from cronlink.connections.providers import Providers
    from cronlink.jobs import Job
    from cronlink.records.runs import NewRun
    from cronlink.store.connection_store import ConnectionStore

log = logging.getLogger("cronlink.connections")
REFRESH_LEASE = timedelta(seconds=2 * tokens.TIMEOUT)
CONFIG_RETRY = timedelta(hours=1)


class Refresher:
    """Refreshes connections' tokens under their lease, given what that takes."""

    def __init__(
        self,
        store: ConnectionStore,
        vault: Vault,
        providers: Providers,
        session: aiohttp.ClientSession,
        pauses: Pauses,
        clock: Clock,
        *,
        refresh_job: Job | None = None,
        lease: timedelta = REFRESH_LEASE,
    ) -> None:
        self.store = store
        self.vault = vault
        self.providers = providers
        self.session = session
        self.pauses = pauses
        self.clock = clock
        self.refresh_job = refresh_job
        """The job that runs one connection's refresh ahead of expiry (None: no such runs)."""
        self.lease = lease
        """How long a refresh holds its connection; its token request gets half of it."""

    async def refresh(
        self,
        connection_id: int,
        *,
        force: bool = True,
        expected_version: int | None = None,
    ) -> Connection:
        """Refresh the tokens now (`force`), only if the refresh is due (`tokens.due`), or,
        given `expected_version`, only if they are still those of that version: the scheduled
        refresh queued with them, or a 401 on a token of that version. Whoever changed the
        version since has stored newer tokens and queued their own next refresh.

        When another process is refreshing this connection, wait for it and return what it
        stored instead of refreshing twice. A paused account (429) is not asked: the refresh
        is queued for the pause's end and `RefreshError` says so.
        """
        with tracing.span("cronlink.token_refresh", {"cronlink.connection_id": connection_id}):
            return await self._refresh(connection_id, force, expected_version)

    async def _refresh(
        self, connection_id: int, force: bool, expected_version: int | None
    ) -> Connection:
        token = secrets.token_hex(8)
        give_up = self.clock.now() + self.lease + timedelta(seconds=5)
        seen: int | None = None
        while True:
            now = self.clock.now()
            taken, sealed = await self.store.take_refresh_lock(
                connection_id, token, now + self.lease, now
            )
            if seen is not None and sealed.connection.version != seen:
                # The process we waited for has refreshed it: its tokens are the answer.
                if taken:
                    await self.store.release_refresh_lock(connection_id, token)
                return sealed.connection
            if taken:
                break
            seen = sealed.connection.version
            if now > give_up:
                raise RefreshError(
                    f"connection {connection_id}: another process has held its refresh for "
                    f"over {self.lease.total_seconds():g}s",
                    kind="transient",
                )
            await asyncio.sleep(0.05)
        try:
            return await self._held(sealed, token, force, expected_version)
        except BaseException:
            # Failures are recorded (and the lease released) inside; this covers the rest,
            # such as cancellation: the lease is released rather than left to lapse.
            await asyncio.shield(self.store.release_refresh_lock(connection_id, token))
            raise

    async def _held(
        self, sealed: Sealed, token: str, force: bool, expected: int | None
    ) -> Connection:
        current = sealed.connection
        self.pauses.seen(current)  # a pause another process recorded
        provider = self.providers.get(current.provider)
        now = self.clock.now()
        if expected is not None:
            wanted = current.version == expected
        else:
            wanted = force or tokens.due(current, now)
        if current.state is not ConnectionState.ACTIVE or not wanted:
            await self.store.release_refresh_lock(current.id, token)
            usable(current)
            return current
        paused = self.pauses.until(current.id)
        if paused is not None:
            await self._deferred(current, token, paused)
            raise RefreshError(
                f"connection {current.id}: its account is paused until "
                f"{iso_seconds(paused)} (429); refreshing then",
                kind="transient",
            )
        opened = self.vault.open(current.id, sealed.ciphertext)
        if opened.refresh_token is None:
            await self.store.release_refresh_lock(current.id, token)
            raise ConnectionUnusableError(
                f"connection {current.id} has no refresh token: reconnect it before its access "
                "token expires"
            )
        try:
            timeout = self.lease.total_seconds() / 2
            fresh = await tokens.refresh(self.session, provider, opened.refresh_token, now, timeout)
        except RefreshError as error:
            metrics.REFRESHES.labels(provider.name, error.kind).inc()
            if error.throttled:
                wait = DEFAULT_PAUSE if error.retry_after is None else error.retry_after
                until = await self.pauses.pause(current.id, wait)
                await self._deferred(current, token, until, str(error))
                raise
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
            follow_up=self.run_at(current.id, current.version + 1, due),
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
                return await self.store.save_refresh(connection_id, saving)
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
            latest = await self.store.sealed(current.id)
            if latest.connection.version != current.version:
                await self.store.release_refresh_lock(current.id, token)
                return latest.connection
            state, kind, retry_at = ConnectionState.NEEDS_REAUTH, "needs_reauth", None
        elif error.kind == "config":
            state, kind, retry_at = ConnectionState.ACTIVE, "config_error", now + CONFIG_RETRY
        else:
            wait = tokens.retry_in(error, current.refresh_failures)
            state, kind, retry_at = ConnectionState.ACTIVE, "refresh_failed", now + wait
        follow_up = None
        if retry_at is not None:
            follow_up = self.run_at(
                current.id, current.version, retry_at, f"retry{current.refresh_failures + 1}"
            )
        await self.store.record_refresh_failure(
            current.id, token=token, message=str(error), state=state, kind=kind,
            retry_at=retry_at, now=now, follow_up=follow_up,
        )  # fmt: skip
        log.warning("connection %d: %s", current.id, error)
        return None

    async def _deferred(
        self, current: Connection, token: str, until: datetime, why: str = ""
    ) -> None:
        """Queue the refresh for the end of the account's pause; nothing else changes (a 429
        is the provider pacing us, not a failure: the backoff does not grow)."""
        message = why or (f"waiting for the account's pause to end at {iso_seconds(until)}")
        await self.store.record_refresh_failure(
            current.id, token=token, message=message, state=ConnectionState.ACTIVE,
            kind="refresh_paused", retry_at=until, now=self.clock.now(), counted=False,
            follow_up=self.run_at(current.id, current.version, until,
                                  f"paused{int(until.timestamp())}"),
        )  # fmt: skip

    def run_at(
        self, connection_id: int, version: int, at: datetime | None, suffix: str = ""
    ) -> NewRun | None:
        """The run that refreshes the connection at `at` (once per version and suffix)."""
        if self.refresh_job is None or at is None:
            return None
        return new_run(
            self.refresh_job,
            Reason.ENQUEUE,
            payload={"connection_id": connection_id, "version": version},
            not_before=at,
            dedupe_key=f"refresh:{connection_id}:{version}{':' + suffix if suffix else ''}",
        )


def _refreshed(expires_at: datetime | None, rotated: bool) -> str:
    until = f"valid until {iso_seconds(expires_at)}" if expires_at else "without expiry"
    return f"access token {until}" + ("; refresh token rotated" if rotated else "")


def usable(connection: Connection) -> None:
    """Raise ConnectionUnusableError unless `connection` is active."""
    if connection.state is not ConnectionState.ACTIVE:
        why = f": {connection.last_error}" if connection.last_error else ""
        raise ConnectionUnusableError(f"connection {connection.id} is {connection.state}{why}")
