"""The built-in `sync` step: page through a source, write to a destination in batches,
and checkpoint after every batch. Each end goes through a connection of its own choosing
(`source.connection`, `destination.connection`: the automation's own unless named), so a
sync can read one provider and write another, each on its own account.

The checkpoint is the source page being copied (its token) and how far into it the
writes went. A run killed between a write and its checkpoint writes that batch again with
the same idempotency key, which the destination answers from its record of the first
write: no batch lands twice. A record the transform raises on, or the destination
rejects, is set aside with its error while the rest of its batch goes through.
"""

from __future__ import annotations

import inspect
import json as jsonlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from yarl import URL

from cronlink.automations.template import dig
from cronlink.errors import ConfigError, StepError
from cronlink.loading import resolve

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.automations.steps import StepContext, SyncStep
    from cronlink.connections.names import Ref

TIMEOUT = 60.0
REJECTS_KEPT = 1000


@dataclass(kw_only=True, slots=True)
class Progress:
    page_token: str | None = None
    offset: int = 0
    """Records of the current page already written."""
    copied: int = 0
    pages: int = 0
    rejected_count: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


async def copy(step: SyncStep, ctx: StepContext) -> dict[str, Any]:
    progress = _resume(ctx)
    transform = resolve(step.transform) if step.transform else None
    while True:
        records, following = await _read(step, ctx, progress.page_token)
        batch_size = step.destination.batch_size
        for start in range(progress.offset, len(records), batch_size):
            batch = records[start : start + batch_size]
            kept = await _transformed(batch, transform, progress)
            await _write(step, ctx, kept, key=f"{progress.page_token}:{start}", progress=progress)
            progress.offset = start + len(batch)
            await ctx.checkpoint(asdict(progress))
        progress.pages += 1
        if following is None:
            return {k: v for k, v in asdict(progress).items() if k not in ("page_token", "offset")}
        progress.page_token, progress.offset = following, 0
        await ctx.checkpoint(asdict(progress))


def _resume(ctx: StepContext) -> Progress:
    saved = ctx.outputs.get(ctx.step)
    if isinstance(saved, dict) and isinstance(saved.get("checkpoint"), dict):
        return Progress(**saved["checkpoint"])
    return Progress()


async def _read(
    step: SyncStep, ctx: StepContext, token: str | None
) -> tuple[list[Any], str | None]:
    query = {"limit": str(step.source.page_size)}
    if token is not None:
        query[step.source.param] = token
    body = await _request(
        ctx, "GET", step.source.path, step.source.connection, "sync.source.connection",
        params=query,
    )  # fmt: skip
    try:
        records = dig(body, step.source.items, "sync source answer")
    except ConfigError as error:
        raise StepError(str(error), retryable=False) from None
    if not isinstance(records, list):
        raise StepError(f"sync source answer: {step.source.items!r} is not a list", retryable=False)
    following = body.get(step.source.next) if isinstance(body, dict) else None
    return records, None if following in (None, "") else str(following)


async def _transformed(
    batch: list[Any], transform: Callable[[Any], Any] | None, progress: Progress
) -> list[Any]:
    if transform is None:
        return batch
    kept = []
    for record in batch:
        try:
            changed = transform(record)
            if inspect.isawaitable(changed):
                changed = await changed
        except Exception as error:
            _reject(progress, record, f"transform: {type(error).__name__}: {error}")
            continue
        kept.append(changed)
    return kept


async def _write(
    step: SyncStep, ctx: StepContext, batch: list[Any], *, key: str, progress: Progress
) -> None:
    if not batch:
        return
    headers = {"Idempotency-Key": f"{ctx.idempotency_key}:{key}"}
    destination = step.destination
    answer = await _request(
        ctx, "POST", destination.path, destination.connection, "sync.destination.connection",
        json={"records": batch}, headers=headers,
    )  # fmt: skip
    refused = answer.get(step.destination.rejected, []) if isinstance(answer, dict) else []
    for entry in refused:
        index = entry.get("index") if isinstance(entry, dict) else None
        record = batch[index] if isinstance(index, int) and 0 <= index < len(batch) else None
        _reject(
            progress,
            record,
            str(entry.get("error", entry)) if isinstance(entry, dict) else str(entry),
        )
    progress.copied += len(batch) - len(refused)


def _reject(progress: Progress, record: Any, error: str) -> None:
    progress.rejected_count += 1
    if len(progress.rejected) < REJECTS_KEPT:
        ident = record.get("id") if isinstance(record, dict) else None
        progress.rejected.append({"id": ident, "error": error[:300]})


async def _request(
    ctx: StepContext,
    method: str,
    path: str,
    connection: bool | Ref,
    key: str,
    *,
    params: dict[str, str] | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    link = await ctx.link(connection, key)
    assert link is not None  # a sync's ends always have a connection (`SyncStep`)
    url = URL(link.base_url.rstrip("/") + path)
    answer = await ctx.request(
        method, str(url.update_query(params) if params else url), headers=headers, json=json,
        connection=connection, within=TIMEOUT,
    )  # fmt: skip
    try:
        return jsonlib.loads(answer.body)
    except ValueError:
        raise StepError(f"{method} {path}: the answer is not JSON") from None
