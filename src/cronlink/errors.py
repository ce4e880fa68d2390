"""Every error cronlink raises on purpose.

    CronlinkError
    ├── CronSyntaxError        an expression is refused: field, token, reason
    ├── ConfigError            cronlink.toml or the environment is wrong: file, key, reason
    │   └── AddressRefusedError  an outbound request's host is not a public address
    ├── UnknownJobError        a job name that is not registered (with close names)
    ├── RunNotFoundError       a run id that does not exist
    ├── SecretKeyError         CRONLINK_SECRET_KEY is missing, malformed or not the key used
    ├── ConnectionNotFoundError  a connection id that does not exist
    ├── ConnectionUnusableError  a connection that needs reauth or is disabled
    ├── TokenUnavailableError  the access token expired and no new one can be had yet
    ├── AccountPausedError     the provider asked for a pause (429): no request may start
    ├── RefreshError           a token refresh failed (`kind`: transient, grant or config)
    ├── PollError              a trigger's poll failed (`throttled_for` set on a 429)
    ├── AutomationNotFoundError  an automation or event that does not exist
    ├── StepError              an automation step failed (`retryable`, `wait`)
    ├── ModelError             a chat model gave no valid answer (`retryable`, `wait`)
    └── StoreError             the database cannot be used as asked
        ├── SchemaTooNewError  the database was written by a newer cronlink
        ├── CorruptDatabaseError  the file is not a usable database
        └── UnstorableError    a value no engine can hold (a NUL, a lone surrogate, NaN)

Each class's docstring is its default message. Driver errors (sqlite3, psycopg) are
translated into these inside `cronlink.store`: nothing above it imports a driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime


class CronlinkError(Exception):
    """cronlink failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())


class CronSyntaxError(CronlinkError, ValueError):
    """The cron expression is not valid."""

    def __init__(self, field: str, token: str, reason: str) -> None:
        self.field = field
        self.token = token
        self.reason = reason
        super().__init__(f"{field} field: {reason}" if field else reason)


class ConfigError(CronlinkError):
    """The configuration is not valid."""


class AddressRefusedError(ConfigError):
    """An outbound request was refused before connecting: its host is not a public address.

    A configuration matter (the URL, or `allow_private_networks` / `private_networks`):
    retrying does not help. The message names the host, never the URL's path or query.
    """

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        named = host if host == address else f"{host} ({address})"
        super().__init__(f"refused to connect to {named}: {reason}")


class UnknownJobError(CronlinkError, LookupError):
    """No job has that name."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown job {name!r}{hint}")


class RunNotFoundError(CronlinkError, LookupError):
    """No run has that id."""


class SecretKeyError(ConfigError):
    """CRONLINK_SECRET_KEY cannot be used; no credential was read or written."""


class ConnectionNotFoundError(CronlinkError, LookupError):
    """No connection has that id."""


class TokenNotFoundError(CronlinkError, LookupError):
    """No API token has this id."""


class ConnectionUnusableError(CronlinkError):
    """The connection cannot be used until its owner reconnects or an operator enables it."""


class TokenUnavailableError(CronlinkError):
    """The connection's access token has expired and no new one can be had yet (its
    refresh is failing, backing off or paused); `until` is when to ask again (None: not
    known). A pause for the caller, not a failure of the connection."""

    def __init__(self, message: str, *, until: datetime | None) -> None:
        self.until = until
        super().__init__(message)


class AccountPausedError(CronlinkError):
    """The provider answered 429 to a call through this connection: no request to its
    account may start before `until`, whoever makes it."""

    def __init__(self, message: str, *, until: datetime) -> None:
        self.until = until
        super().__init__(message)


class RefreshError(CronlinkError):
    """The provider did not refresh the token.

    `kind` says what it means: `transient` (a network error, a timeout, 408/425/429/5xx,
    a garbled answer: retry later, the connection stays active), `grant` (the provider
    refuses the grant for good, `invalid_grant`: the user must reconnect) or `config` (the
    provider refuses our client, `invalid_client`: an operator must fix the provider's
    settings; users' connections are left as they are). `throttled`: the provider answered
    429 (the account is paused).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retry_after: float | None = None,
        throttled: bool = False,
    ) -> None:
        self.kind = kind
        self.retry_after = retry_after
        self.throttled = throttled
        super().__init__(message)


class PollError(CronlinkError):
    """A trigger's poll failed; the cursor was left where it was."""

    def __init__(self, message: str, *, throttled_for: float | None = None) -> None:
        self.throttled_for = throttled_for
        """Seconds the provider asked us to wait (429 Retry-After), None otherwise."""
        super().__init__(message)


class AutomationNotFoundError(CronlinkError, LookupError):
    """No automation or event has that id."""


class StepError(CronlinkError):
    """An automation step failed; `retryable` says whether another attempt may succeed,
    `wait` how long the provider asked for (seconds)."""

    def __init__(self, message: str, *, retryable: bool = True, wait: float = 0.0) -> None:
        self.retryable = retryable
        self.wait = wait
        super().__init__(message)


class ModelError(CronlinkError):
    """A chat model gave no valid answer; `retryable` says whether a later call may get
    one (it was unreachable, throttled or failing), `wait` how long it asked for (seconds)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        wait: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        requests: int = 0,
    ) -> None:
        self.retryable = retryable
        self.wait = wait
        # What the failed call was billed for all the same (answers that never validated).
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.requests = requests
        super().__init__(message)


class BudgetSpentError(ModelError):
    """A model's monthly budget is spent: no new call is made to it this month."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class StoreError(CronlinkError):
    """The database cannot be used."""


class UnstorableError(StoreError, ValueError):
    """The value cannot be stored: it holds a NUL character, a lone surrogate, a number
    that is not finite or one out of range.

    Refused before the statement runs, on both engines alike, so the transaction it was
    part of ends cleanly and the next write on the connection is not affected.
    """


class SchemaTooNewError(StoreError):
    """The database was written by a newer cronlink; upgrade cronlink to use it."""


class CorruptDatabaseError(StoreError):
    """The database file is corrupt or not a cronlink database; it was left untouched."""


def first_line(error: BaseException | None) -> str:
    """A driver error's first line, for messages that name the database but no SQL."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def carried(error: CronlinkError) -> tuple[str, str, dict[str, Any]]:
    """An error as plain values, to cross a process boundary (a heavy run's pipe)."""
    return type(error).__name__, str(error), dict(vars(error))


def rebuilt(name: str, message: str, attributes: dict[str, Any]) -> CronlinkError:
    """The error `carried` describes, as its own class when it is one of these."""
    kind = globals().get(name)
    if not (isinstance(kind, type) and issubclass(kind, CronlinkError)):
        kind = CronlinkError
    error = kind.__new__(kind)
    Exception.__init__(error, message)
    vars(error).update(attributes)
    return error
