"""Providers as data: one TOML file each, shipped in `providers/` or in the user's folder.

A file names the provider's OAuth2 endpoints (no authorize URL for a provider without an
authorization step), how the client authenticates, whether refresh tokens rotate, how
early to refresh, how to keep idle refresh tokens alive, what a health probe is and the
provider's triggers. Client ids and secrets are never in the file: `client_secret`
must name an environment variable (`${NAME}`), read when a request is made.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cronlink.connections.triggers import TriggerModel
from cronlink.durations import parse_duration
from cronlink.envtext import VARIABLE, expand
from cronlink.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

SHIPPED = Path(__file__).with_name("providers")
DEFAULT_MARGIN = timedelta(minutes=10)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class HealthModel(_Strict):
    method: Literal["GET", "POST", "HEAD"] = "GET"
    path: str
    healthy: list[int] = [200]
    """Statuses that mean the connection works."""
    json_true: str | None = None
    """A top-level JSON field that must be true as well (Slack answers 200 with ok=false)."""
    headers: dict[str, str] = {}


class ProviderModel(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    display_name: str
    base_url: str
    authorize_url: str | None = None
    """None for providers with no authorization step (client credentials, pasted tokens):
    their connections are added with `cronlink connections add`."""
    token_url: str
    client_id: str
    client_secret: str
    client_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    scopes: list[str] = []
    pkce: bool = True
    authorize_params: dict[str, str] = {}
    rotates_refresh_tokens: bool = False
    refresh_margin: str = "10m"
    idle_refresh_after: str | None = None
    """Refresh a refresh token unused for this long, before the provider drops it."""
    default_expires_in: str | None = None
    """Lifetime of access tokens when the token response gives none (None: they last)."""
    invalid_grant_errors: list[str] = ["invalid_grant"]
    """Error codes meaning the grant is gone for good (some providers have their own)."""
    token_headers: dict[str, str] = {}
    max_poll_backoff: str = "5m"
    """The longest a failing trigger waits between polls (the wait doubles per failure)."""
    health: HealthModel
    triggers: dict[str, TriggerModel] = {}
    notes: str = ""

    @field_validator(
        "refresh_margin", "idle_refresh_after", "default_expires_in", "max_poll_backoff"
    )
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("client_secret")
    @classmethod
    def _from_env(cls, value: str) -> str:
        if not VARIABLE.search(value):
            raise ValueError("must name an environment variable, like ${ACME_CLIENT_SECRET}")
        return value


@dataclass(frozen=True, kw_only=True, slots=True)
class Provider:
    name: str
    display_name: str
    base_url: str
    authorize_url: str | None
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    """Text naming the variable that holds the secret, not the secret."""
    client_auth: str
    scopes: tuple[str, ...]
    pkce: bool
    authorize_params: dict[str, str]
    rotates_refresh_tokens: bool
    refresh_margin: timedelta
    idle_refresh_after: timedelta | None
    default_expires_in: timedelta | None
    invalid_grant_errors: frozenset[str]
    token_headers: dict[str, str]
    max_poll_backoff: timedelta
    health: HealthModel
    triggers: dict[str, TriggerModel]
    source: Path

    def url(self, which: str) -> str:
        """One of the provider's URLs with its variables filled in, or a relative path
        joined to the base URL."""
        value = getattr(self, which)
        if value is None:
            raise ConfigError(f"provider {self.name!r} has no {which}")
        text = expand(value, os.environ, f"provider {self.name}: {which}")
        if text.startswith("/"):
            return self.url("base_url").rstrip("/") + text
        return text

    def trigger(self, name: str) -> TriggerModel:
        try:
            return self.triggers[name]
        except KeyError:
            known = ", ".join(sorted(self.triggers)) or "none"
            raise ConfigError(
                f"provider {self.name!r} has no trigger {name!r}; its triggers: {known}"
            ) from None

    def client(self) -> tuple[str, str]:
        """The client id and secret, read from the environment now."""
        where = f"provider {self.name} ({self.source})"
        return (
            expand(self.client_id, os.environ, f"{where}: client_id"),
            expand(self.client_secret, os.environ, f"{where}: client_secret"),
        )


class Providers:
    """The known providers by name: the shipped ones, overridden by the user's folder."""

    def __init__(self, providers: dict[str, Provider]) -> None:
        self._providers = providers

    @classmethod
    def load(cls, folder: Path | None = None) -> Providers:
        found = {p.name: p for p in _read_folder(SHIPPED)}
        if folder is not None:
            if not folder.is_dir():
                raise ConfigError(f"providers folder {folder} does not exist")
            found |= {p.name: p for p in _read_folder(folder)}
        return cls(found)

    def get(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(sorted(self._providers))
            raise ConfigError(f"unknown provider {name!r}; known: {known}") from None

    def __iter__(self) -> Iterator[Provider]:
        return iter(sorted(self._providers.values(), key=lambda p: p.name))

    def names(self) -> list[str]:
        return sorted(self._providers)


def _read_folder(folder: Path) -> list[Provider]:
    return [read(path) for path in sorted(folder.glob("*.toml"))]


def read(path: Path) -> Provider:
    """One provider file, checked: errors name the file and the key."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    try:
        model = ProviderModel.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(step) for step in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{path}: {key}: {message}") from None
    if model.name != path.stem:
        raise ConfigError(f"{path}: name: {model.name!r} must match the file name {path.stem!r}")
    return Provider(
        name=model.name,
        display_name=model.display_name,
        base_url=model.base_url,
        authorize_url=model.authorize_url,
        token_url=model.token_url,
        client_id=model.client_id,
        client_secret=model.client_secret,
        client_auth=model.client_auth,
        scopes=tuple(model.scopes),
        pkce=model.pkce,
        authorize_params=dict(model.authorize_params),
        rotates_refresh_tokens=model.rotates_refresh_tokens,
        refresh_margin=parse_duration(model.refresh_margin),
        idle_refresh_after=None
        if model.idle_refresh_after is None
        else parse_duration(model.idle_refresh_after),
        default_expires_in=None
        if model.default_expires_in is None
        else parse_duration(model.default_expires_in),
        invalid_grant_errors=frozenset(model.invalid_grant_errors),
        token_headers=dict(model.token_headers),
        max_poll_backoff=parse_duration(model.max_poll_backoff),
        health=model.health,
        triggers=dict(model.triggers),
        source=path,
    )
