"""An automation's steps as data: a Python callable (`call`), an HTTP request through the
connection (`http`) or a bulk copy (`sync`), each retried on its own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cronlink.durations import parse_duration
from cronlink.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class HttpStep(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    """A path on the connection's provider (`/api/…`), or a full URL."""
    connection: bool = True
    """Send the connection's access token (`Authorization: Bearer …`)."""
    headers: dict[str, str] = {}
    json_body: Any = Field(default=None, alias="json")
    """A JSON body; strings in it are templates: `{event.subject}`, `{steps.NAME.field}`."""


class SyncSource(_Strict):
    path: str
    items: str = "records"
    next: str = "next_page_token"
    """Where the next page's token is in an answer (absent: the last page)."""
    param: str = "page_token"
    page_size: int = Field(default=500, ge=1, le=10_000)


class SyncDestination(_Strict):
    path: str
    batch_size: int = Field(default=500, ge=1, le=10_000)
    rejected: str = "rejected"
    """Where the per-record rejections (`{index, error}`) are in an answer."""


class SyncStep(_Strict):
    source: SyncSource
    destination: SyncDestination
    transform: str | None = None
    """`module:function` applied to each record; a record it raises on is set aside."""


class StepModel(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    call: str | None = None
    """`module:function`, called as `function(event, ctx)`; may be async."""
    http: HttpStep | None = None
    sync: SyncStep | None = None
    max_attempts: int = Field(default=3, ge=1, le=20)
    backoff: str = "1s"
    """The first retry's delay; it doubles each attempt, up to a minute."""

    @field_validator("backoff")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("call", "transform", check_fields=False)
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError(f"{value!r} must look like package.module:function")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> StepModel:
        kinds = [k for k in ("call", "http", "sync") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of 'call', 'http' or 'sync'")
        return self

    @property
    def first_backoff(self) -> timedelta:
        return parse_duration(self.backoff)


def parse_steps(steps: list[dict[str, Any]]) -> list[StepModel]:
    """Checked steps; errors name the step and the key (`steps[1] (notify).http.url`)."""
    if not steps:
        raise ConfigError("an automation needs at least one step")
    parsed: list[StepModel] = []
    names: set[str] = set()
    for index, step in enumerate(steps):
        name = step.get("name") if isinstance(step, dict) else None
        label = f"steps[{index}]" + (f" ({name})" if isinstance(name, str) else "")
        try:
            model = StepModel.model_validate(step)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"{label}{'.' + key if key else ''}: {message}") from None
        if model.name in names:
            raise ConfigError(f"{label}: another step is named {model.name!r}")
        names.add(model.name)
        parsed.append(model)
    return parsed
