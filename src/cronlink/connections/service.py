"""`Connections`: add, read, refresh and retire connections; the API handlers, the CLI
and the jobs share. It holds the parts that do the work: the accounts' pauses, the
`Refresher` and the `HealthChecker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from cronlink.clock import Clock, SystemClock, iso_seconds
from cronlink.connections import keys, names, refreshing, tokens
from cronlink.connections.account import Account, Pauses
from cronlink.connections.checks import HealthChecker
from cronlink.errors import (
    ConfigError,
    ConnectionNotFoundError,
    ConnectionUnusableError,
    CronlinkError,
    RefreshError,
    TokenUnavailableError,
)
from cronlink.progress import Progress, silent
from cronlink.records.connections import (
    Connection,
    ConnectionState,
    Credentials,
    Event,
    Link,
    Sealed,
    Secrets,
)

if TYPE_CHECKING:
    from datetime import datetime

    import aiohttp

    from cronlink.connections.crypto import Vault
    from cronlink.connections.health import Policy
    from cronlink.connections.names import Ref
    from cronlink.connections.providers import Providers
    from cronlink.jobs import Job
    from cronlink.store import Store

log = logging.getLogger("cronlink.connections")


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
        refresh_lease: timedelta = refreshing.REFRESH_LEASE,
    ) -> None:
        self.store = store
        self.vault = vault
        self.providers = providers
        self.session = session
        self.clock = clock or SystemClock()
        self.pauses = Pauses(store.connections, self.clock)
        self.refresher = refreshing.Refresher(
            store.connections, vault, providers, session, self.pauses, self.clock,
            refresh_job=refresh_job, lease=refresh_lease,
        )  # fmt: skip
        self.checker = HealthChecker(
            store.connections, providers, session, self, self.clock,
            policy=health_policy, passive_window=passive_window, concurrency=probe_concurrency,
        )  # fmt: skip

    async def check_keys(self) -> None:
        """Refuse to go on when the database holds secrets sealed with a key we lack."""
        self.vault.check(await self.store.connections.key_ids())

    async def rotate_keys(self, batch: int = 500) -> int:
        """Re-seal every secret under the newest key (see `keys.rotate`)."""
        return await keys.rotate(self.store.connections, self.vault, batch)

    async def forget_lost_keys(self) -> dict[str, list[int]]:
        """Give up the secrets no key of ours opens (see `keys.forget_lost`)."""
        return await keys.forget_lost(self.store.connections, self.vault, self.clock.now())

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
        name: str | None = None,
    ) -> Connection:
        """Store a connection (`name`: the owner's handle on it, see `names`)."""
        chosen = self.providers.get(provider)
        if not owner.strip():
            raise ConfigError("owner: must not be empty")
        if name is not None:
            names.check_name(name)
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
            follow_up=lambda cid: self.refresher.run_at(cid, 1, due) if refresh_token else None,
            name=name,
        )
        log.info("connection %d added (%s, owner %s)", added.id, added.provider, added.owner)
        return added

    async def get(self, connection_id: int) -> Connection:
        return await self.store.connections.get(connection_id)

    async def rename(self, connection_id: int, name: str | None) -> Connection:
        """Give the connection another name (None: none); steps that named it by its old
        name no longer find it."""
        return await self.store.connections.rename(
            connection_id, None if name is None else names.check_name(name), self.clock.now()
        )

    async def resolve(self, ref: Ref, owner_of: int) -> Link:
        """The connection a step names (`ref`: an id or a name) among the connections of
        the owner of connection `owner_of` (the automation's own), if it may be used now:
        else `ConnectionNotFoundError` (none of that owner's) or `ConnectionUnusableError`
        (disabled, or its owner must reconnect), saying which."""
        if isinstance(ref, bool):
            raise ConfigError(f"connection: {ref!r} is not a connection's name or id")
        owner = (await self.get(owner_of)).owner
        found: Connection | None = None
        if isinstance(ref, str):
            found = await self.store.connections.named(owner, ref)
        else:
            with contextlib.suppress(ConnectionNotFoundError):
                found = await self.get(ref)
        if found is None or found.owner != owner:
            raise names.foreign(ref, owner)
        names.check_usable(ref, found)
        base_url = self.providers.get(found.provider).url("base_url")
        return Link(
            connection_id=found.id, name=found.name, provider=found.provider, base_url=base_url
        )

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
        """Probe one connection now and record its health (unless its account is paused:
        then nothing is sent, and its health stays as it was)."""
        sealed = await self.store.connections.sealed(connection_id)
        refreshing.usable(sealed.connection)
        outcome = await self.checker.check_one(sealed)
        if outcome is not None:
            await self.store.connections.record_health([outcome], self.clock.now())
        return await self.get(connection_id)

    async def check_all(self) -> dict[str, int]:
        """Probe every active connection not recently used successfully."""
        return await self.checker.check_all()

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

    async def accounts(self, connection_ids: list[int]) -> dict[int, Account | CronlinkError]:
        """An `Account` for each of several connections, read in one query (a poll
        batch's), or the error that connection gave."""
        found = await self.store.connections.sealed_many(connection_ids)

        async def one(connection_id: int) -> Account | CronlinkError:
            sealed = found.get(connection_id)
            if sealed is None:
                return ConnectionNotFoundError(f"no connection has id {connection_id}")
            try:
                return Account(self, await self.credentials(connection_id, sealed))
            except CronlinkError as error:
                return error

        # Together: those due refresh first, each under its own lease.
        answers = await asyncio.gather(*(one(i) for i in connection_ids))
        return dict(zip(connection_ids, answers, strict=True))

    async def account(self, connection_id: int) -> Account:
        return Account(self, await self.credentials(connection_id))

    async def credentials(self, connection_id: int, sealed: Sealed | None = None) -> Credentials:
        """A token that has not expired: refreshed first when its refresh is due (or it
        expired), else `TokenUnavailableError` with when to ask again. (`sealed`: the
        connection as just read, to spare reading it again.)"""
        if sealed is None:
            sealed = await self.store.connections.sealed(connection_id)
        self.pauses.seen(sealed.connection)
        refreshing.usable(sealed.connection)
        now = self.clock.now()
        if tokens.due(sealed.connection, now):
            try:
                await self.refresh(connection_id, force=False)
            except (RefreshError, ConnectionUnusableError) as error:
                if isinstance(error, ConnectionUnusableError) or error.kind == "grant":
                    raise
                # A token that still works is better than none: the failure is recorded
                # and retried on its own schedule.
                log.warning("connection %d: not refreshed: %s", connection_id, error)
            sealed = await self.store.connections.sealed(connection_id)
            self.pauses.seen(sealed.connection)
            refreshing.usable(sealed.connection)
        current = sealed.connection
        if tokens.expired(current, self.clock.now()):
            until = max(
                (t for t in (current.refresh_due_at, self.pauses.until(connection_id)) if t),
                default=None,
            )
            when = f"until {iso_seconds(until)}" if until else "for now"
            raise TokenUnavailableError(
                f"connection {connection_id}: its access token has expired and cannot be "
                f"refreshed {when}" + (f" ({current.last_error})" if current.last_error else ""),
                until=until,
            )
        opened = self.vault.open(connection_id, sealed.ciphertext)
        return Credentials(
            connection_id=connection_id,
            provider=current.provider,
            access_token=opened.access_token,
            expires_at=current.expires_at,
            version=current.version,
        )

    async def renew(self, connection_id: int, version: int) -> Credentials:
        """The token after the provider refused the one of `version` (a 401): one refresh
        across every caller and process; those that come later find it done."""
        try:
            await self.refresh(connection_id, expected_version=version)
        except RefreshError as error:
            if error.kind == "grant":
                raise
            log.warning("connection %d: a refused token was not renewed: %s", connection_id, error)
        return await self.credentials(connection_id)

    # -- the account's pause (`Gate`) ----------------------------------------------------

    async def pause(self, connection_id: int, seconds: float) -> datetime:
        """Pause every request to the connection's account (the provider answered 429),
        in this process at once and in the others through the store."""
        return await self.pauses.pause(connection_id, seconds)

    async def paused_until(self, connection_id: int) -> datetime | None:
        return self.pauses.until(connection_id)

    async def refresh(
        self, connection_id: int, *, force: bool = True, expected_version: int | None = None
    ) -> Connection:
        """Refresh the tokens now (`force`), only if they are due, or only if they are
        still those of `expected_version`; see `Refresher.refresh`."""
        return await self.refresher.refresh(
            connection_id, force=force, expected_version=expected_version
        )

    async def refresh_all(
        self, progress: Progress = silent, concurrency: int = 8
    ) -> dict[int, str | None]:
        """Refresh every active connection now, `concurrency` at a time, telling `progress`
        as each ends; returns each one's error, None for those refreshed."""
        ids: list[int] = []
        while page := await self.find(
            state=ConnectionState.ACTIVE, after_id=ids[-1] if ids else 0, limit=1000
        ):
            ids += [c.id for c in page]
        outcomes: dict[int, str | None] = {}
        gate = asyncio.Semaphore(concurrency)
        task = "refreshing connections"
        progress(task, 0, len(ids))

        async def one(connection_id: int) -> None:
            async with gate:
                try:
                    await self.refresh(connection_id)
                    outcomes[connection_id] = None
                except CronlinkError as error:
                    outcomes[connection_id] = str(error)
            progress(task, len(outcomes), len(ids))

        await asyncio.gather(*(one(i) for i in ids))
        return dict(sorted(outcomes.items()))
