"""An account: one connection as every request to its provider sees it.

Polls, steps and health probes send their requests through `Account.request`, so one set
of rules holds for all of them, in every process:

- a paused account (the provider answered 429 to any caller) starts no request before the
  pause ends: `AccountPausedError` says until when;
- the token sent has not expired (`Connections.credentials` never hands one out);
- a 401 renews the token once, single-flight (only if no one has renewed it since it was
  read, `Gate.renew`), and sends the request once more;
- a 429 pauses the account for every caller until the provider's Retry-After.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from multidict import CIMultiDict

from cronlink.clock import iso_seconds
from cronlink.envtext import retry_after
from cronlink.errors import AccountPausedError
from cronlink.observe import tracing

if TYPE_CHECKING:
    import aiohttp

    from cronlink.clock import Clock
    from cronlink.records.connections import Connection, Credentials
    from cronlink.store.connection_store import ConnectionStore

DEFAULT_PAUSE = 60.0
"""Seconds an account is paused by a 429 that gives no Retry-After."""


class Gate(Protocol):
    """What an account needs of its connection: `Connections` in the worker, the same
    calls answered over the pipe in a heavy run."""

    async def credentials(self, connection_id: int) -> Credentials:
        """A token that has not expired (`TokenUnavailableError` when none can be had)."""
        ...

    async def renew(self, connection_id: int, version: int) -> Credentials:
        """The token after the provider refused the one of `version` (401): refreshed,
        unless someone already has since."""
        ...

    async def pause(self, connection_id: int, seconds: float) -> datetime:
        """Pause every request to the account for `seconds`; returns the pause's end."""
        ...

    async def paused_until(self, connection_id: int) -> datetime | None:
        """The end of the account's pause, None when requests may go."""
        ...


class Pauses:
    """The accounts paused by a 429, as this process knows them: its own 429s at once,
    and every pause a row it read records (another process's)."""

    def __init__(self, store: ConnectionStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._until: dict[int, datetime] = {}

    async def pause(self, connection_id: int, seconds: float) -> datetime:
        """Pause every request to the account, here at once and elsewhere through the
        store; returns the pause's end."""
        until = self.clock.now() + timedelta(seconds=seconds)
        self._until[connection_id] = max(until, self._until.get(connection_id, until))
        await self.store.pause(connection_id, until)
        return until

    def until(self, connection_id: int) -> datetime | None:
        """The end of the account's pause, None when requests may go."""
        until = self._until.get(connection_id)
        if until is not None and until <= self.clock.now():
            del self._until[connection_id]
            return None
        return until

    def seen(self, connection: Connection) -> None:
        """Take note of the pause a freshly read row of the connection records."""
        until, known = connection.paused_until, self._until.get(connection.id)
        if until is not None and (known is None or until > known):
            self._until[connection.id] = until


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """A provider's answer, read whole (the connection goes back to the pool)."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    paused_until: datetime | None = None
    """A 429's pause of the account, as recorded for every caller."""

    @property
    def retry_after(self) -> float | None:
        wait = retry_after(self.headers.get("Retry-After"))
        return None if wait is None else wait.total_seconds()


class Account:
    """Requests on behalf of one connection, under the rules above."""

    def __init__(self, gate: Gate, credentials: Credentials) -> None:
        self.gate = gate
        self.credentials = credentials

    @property
    def connection_id(self) -> int:
        return self.credentials.connection_id

    async def request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        within: float,
        headers: dict[str, str] | None = None,
        json: Any = None,
        redirects: bool = True,
    ) -> Answer:
        """Send one request (and once more after a 401); a 429 is returned, with the
        account paused. Network errors and timeouts (`TimeoutError` after `timeout`
        seconds (`within`), the body included) are the caller's to judge."""
        described = {"cronlink.connection_id": self.connection_id, "http.request.method": method}
        with tracing.span("cronlink.provider_request", described) as span:
            answer = await self._request(
                session, method, url, within, headers, json, redirects
            )  # fmt: skip
            tracing.note(span, {"http.response.status_code": answer.status})
            return answer

    async def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        within: float,
        headers: dict[str, str] | None,
        json: Any,
        redirects: bool,
    ) -> Answer:
        await self.check()
        send = _Sending(session, method, url, within, headers, json, redirects)
        answer = await send(self.credentials)
        if answer.status == 401:
            self.credentials = await self.gate.renew(self.connection_id, self.credentials.version)
            await self.check()
            answer = await send(self.credentials)
        if answer.status == 429:
            wait = DEFAULT_PAUSE if answer.retry_after is None else answer.retry_after
            until = await self.gate.pause(self.connection_id, wait)
            return dataclasses.replace(answer, paused_until=until)
        return answer

    async def check(self) -> None:
        """Raise `AccountPausedError` while the account is paused."""
        until = await self.gate.paused_until(self.connection_id)
        if until is not None:
            raise AccountPausedError(
                f"connection {self.connection_id}: the provider asked for a pause until "
                f"{iso_seconds(until)} (429)",
                until=until,
            )


@dataclass(frozen=True, slots=True)
class _Sending:
    """One request as the caller asked for it, sent with whichever token is current."""

    session: aiohttp.ClientSession
    method: str
    url: str
    within: float
    headers: dict[str, str] | None
    json: Any
    redirects: bool

    async def __call__(self, credentials: Credentials) -> Answer:
        sent = {**(self.headers or {}), "Authorization": credentials.authorization}
        # One deadline for the whole exchange, body included: a provider that sends its
        # headers and then stalls must not hold the caller.
        async with asyncio.timeout(self.within):
            async with self.session.request(
                self.method, self.url, headers=sent, json=self.json,
                allow_redirects=self.redirects,
            ) as response:  # fmt: skip
                body = await response.read()
                headers = CIMultiDict(response.headers)
                return Answer(status=response.status, headers=headers, body=body)
