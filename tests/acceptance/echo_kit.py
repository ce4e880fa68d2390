"""A server on 127.0.0.1 that quotes back what it is sent in every form a peer may: as sent
(URL-encoded), re-encoded with `+` or lower-case hex, JSON-escaped, base64 (standard and
URL-safe, padded or not) and inside a Basic credential; and a token endpoint that does the
same with the client secret it was sent."""

from __future__ import annotations

import base64
import json
import re
from contextlib import AbstractAsyncContextManager
from urllib.parse import quote, quote_plus, unquote

from aiohttp import web

from tests.acceptance.egress_kit import serving


def forms(value: str) -> dict[str, str]:
    """`value` as peers quote it."""
    encoded = value.encode()
    percent = quote(value, safe="")
    return {
        "raw": value,
        "percent": percent,
        "percent_lower": re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), percent),
        "plus": quote_plus(value),
        "json": json.dumps(value)[1:-1],
        "json_raw": json.dumps(value, ensure_ascii=False)[1:-1],
        "base64": base64.b64encode(encoded).decode(),
        "base64_bare": base64.b64encode(encoded).decode().rstrip("="),
        "base64_url": base64.urlsafe_b64encode(encoded).decode(),
        "base64_url_bare": base64.urlsafe_b64encode(encoded).decode().rstrip("="),
        "basic": base64.b64encode(b"user:" + encoded).decode(),
    }


def leaks(text: str, *values: str) -> list[str]:
    """The forms of `values` found in `text` (empty: none leaked)."""
    return sorted({name for v in values for name, form in forms(v).items() if form in text})


def quoting(value: str) -> str:
    return " | ".join(f"{name}={form}" for name, form in forms(value).items())


async def _echo(request: web.Request) -> web.Response:
    key = request.query.get("key", "")
    said = f"you sent {request.raw_path} | {quoting(key)}"
    return web.Response(status=int(request.match_info["status"]), text=said)


async def _token(request: web.Request) -> web.Response:
    """An OAuth token endpoint that refuses the client and quotes what it got."""
    credential = request.headers.get("Authorization", "").removeprefix("Basic ")
    client_secret = unquote(base64.b64decode(credential).decode().partition(":")[2])
    sent = f"{request.headers.get('Authorization')} {await request.text()}"
    said = f"got {sent} {quoting(client_secret)}"
    return web.json_response({"error": "invalid_client", "error_description": said}, status=401)


def echo_server() -> AbstractAsyncContextManager[str]:
    """Its base URL: `/echo/{status}?key=…` and `/oauth/token`."""
    return serving([web.route("*", "/echo/{status}", _echo), web.post("/oauth/token", _token)])
