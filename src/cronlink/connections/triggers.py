"""Triggers as data, declared in a provider's file under `[triggers.NAME]`.

A trigger says which request lists new items (templated from the cursor), where the items
are in the answer, which fields make an item's key, what the cursor is (`timestamp`, `id`
or a provider `token`, possibly a delta link) and how to reach the next page (`token`,
`link`, `page`, `url`, `has_more`).
Providers must return items oldest first; the cursor logic relies on it (as Airbyte's).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from cronlink.durations import parse_duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PaginationModel(_Strict):
    kind: Literal["token", "link", "page", "url", "has_more", "none"] = "none"
    """`token`: a next-page token in the body; `link`: a `Link: <…>; rel="next"` header;
    `page`: page numbers, while pages come back full; `url`: the next page's URL in the
    body (Graph's `@odata.nextLink`); `has_more`: a boolean in the body says more pages
    follow, asked for by the last item's `item_field` (Stripe's `starting_after`)."""
    field: str | None = None
    """`token`, `url` and `has_more`: where the token, URL or boolean is in the body (a
    dotted path; a name holding dots, like `@odata.nextLink`, is reached whole)."""
    param: str | None = None
    """`token`, `page` and `has_more`: the query parameter that carries it."""
    item_field: str | None = None
    """`has_more`: the item field whose value, in the page's last item, asks for the next."""
    keep_query: bool = True
    """`token`: later pages repeat the first page's query. False for providers that refuse
    it there: later pages carry the token and the page size (the parameters templated
    `{page_size}`) only."""

    @model_validator(mode="after")
    def _complete(self) -> PaginationModel:
        needs = {
            "token": ("field", "param"),
            "page": ("param",),
            "url": ("field",),
            "has_more": ("field", "param", "item_field"),
        }.get(self.kind, ())
        if not all(getattr(self, name) for name in needs):
            *first, last = (repr(name) for name in needs)
            names = f"{', '.join(first)} and {last}" if first else last
            raise ValueError(f"{self.kind} pagination needs {names}")
        if not self.keep_query and self.kind != "token":
            raise ValueError("keep_query applies to token pagination only")
        return self


class TriggerModel(_Strict):
    description: str = ""
    method: Literal["GET", "POST"] = "GET"
    path: str
    query: dict[str, str] = {}
    """Query parameters, templated: `{cursor}`, `{page_size}` and `{params.NAME}`. A
    parameter whose value is empty (no cursor yet) is left out."""
    items: str = ""
    """Where the list of items is in the JSON answer (dotted path; empty: the answer)."""
    key: list[str] = ["id"]
    """The item fields that make its event key (`id` and `updated_at` for updates)."""
    cursor: Literal["timestamp", "id", "token"]
    cursor_field: str | None = None
    """`timestamp` and `id`: the item field the cursor follows."""
    cursor_format: Literal["iso", "epoch", "epoch_ms", "url"] = "iso"
    """`timestamp`: how `{cursor}` is sent (ISO 8601 in UTC, or epoch seconds or ms).
    `token`: `url` when the delta token is a link the next poll requests as it is (Graph's
    `@odata.deltaLink`) instead of sending it in the query."""
    delta_field: str | None = None
    """`token`: where the next delta token is in the last page's answer."""
    lookback: str = "0s"
    """`timestamp`: read this far behind the watermark, for items that arrive late."""
    page_size: int = 100
    max_pages: int = 5
    """Pages read per poll; a longer burst is continued by the next poll."""
    expired_statuses: list[int] = [410]
    """Statuses meaning the cursor is gone: the trigger resyncs (duplicates are absorbed)."""
    pagination: PaginationModel = PaginationModel()

    @field_validator("lookback")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _cursor(self) -> TriggerModel:
        if self.cursor in ("timestamp", "id") and not self.cursor_field:
            raise ValueError(f"a {self.cursor} cursor needs 'cursor_field'")
        if self.cursor == "token" and not self.delta_field:
            raise ValueError("a token cursor needs 'delta_field'")
        if self.cursor_format == "url" and self.cursor != "token":
            raise ValueError("cursor_format 'url' is for token cursors (a delta link)")
        if not 1 <= self.max_pages <= 100 or not 1 <= self.page_size <= 10_000:
            raise ValueError("max_pages must be 1-100 and page_size 1-10000")
        return self

    @property
    def lookback_delta(self) -> timedelta:
        return parse_duration(self.lookback)
