"""Steps the automation tests run (imported by name, in heavy children too). They leave
their traces in files in the folder named by the automation's `trace` parameter (heavy
children are forked from a server started earlier: its environment may be another test's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp


def _trace(ctx: Any, name: str, entry: Any) -> None:
    with (Path(ctx.params["trace"]) / name).open("a") as out:
        out.write(json.dumps(entry) + "\n")


def remember(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
    seen = event.get("id", event.get("scheduled_for"))
    _trace(ctx, "remember", {"event": seen, "key": ctx.idempotency_key})
    return {"seen": seen}


def classify(event: dict[str, Any], ctx: Any) -> dict[str, str]:
    label = "urgent" if "urgent" in str(event.get("subject", "")) else "normal"
    _trace(ctx, "classify", event["id"])
    return {"label": label}


def flaky(event: dict[str, Any], ctx: Any) -> str:
    """Fails on its first attempt at each event."""
    _trace(ctx, "flaky", {"event": event["id"], "attempt": ctx.attempt, "key": ctx.idempotency_key})
    if ctx.attempt == 1:
        raise ConnectionError("the API hiccupped")
    return "ok"


def gated(event: dict[str, Any], ctx: Any) -> str:
    """Fails until the file `open` exists in the trace folder."""
    _trace(ctx, "gated", event["id"])
    if not (Path(ctx.params["trace"]) / "open").exists():
        raise ValueError(f"event {event['id']} cannot be handled yet")
    return "passed"


def double(record: dict[str, Any]) -> dict[str, Any]:
    if record["id"] % 1000 == 7:
        raise ValueError("a record this transform cannot take")
    return {**record, "amount": record["amount"] * 2}


def traced(folder: Path, name: str) -> list[Any]:
    path = folder / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def _echo_token(ctx: Any) -> str:
    """What the echo server (`params.echo`) quotes back of the connection's token."""
    token = (await ctx.credentials()).access_token
    url = f"{ctx.params['echo']}/echo/200"
    async with aiohttp.ClientSession() as http, http.get(url, params={"key": token}) as answer:
        return await answer.text()


async def echo_token(event: dict[str, Any], ctx: Any) -> dict[str, str]:
    return {"said": await _echo_token(ctx)}


async def echo_token_fails(event: dict[str, Any], ctx: Any) -> None:
    raise ValueError(await _echo_token(ctx))


def to_contact(record: dict[str, Any]) -> dict[str, Any]:
    """A mail sandbox record as a CRM contact (upserted by its external id)."""
    return {"external_id": f"rec-{record['id']}", "email": record["email"], "name": record["name"]}
