"""Limits every request lives under, so a huge, deep or slow one cannot pin the service:

- headers over `max_headers` bytes in all (or over `MAX_HEADER_COUNT` of them): 431;
- a body larger than `max_body`, whether or not it says its length: 413;
- a JSON body nested deeper than `max_depth`: 400, before any parser recurses into it;
- a request not answered within `timeout` (a client trickling its body): 408.
"""

from __future__ import annotations

import asyncio
import json
import re
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_HEADER_COUNT = 100
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


class _TooLarge(Exception):
    pass


class Guards:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        timeout: float,
        max_headers: int = 16 * 1024,
        max_depth: int = 32,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.timeout = timeout
        self.max_headers = max_headers
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        size = sum(len(name) + len(value) for name, value in headers)
        if size > self.max_headers or len(headers) > MAX_HEADER_COUNT:
            await _answer(send, 431, "request_headers_too_large")
            return
        named = dict(headers)
        declared = named.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _answer(send, 413, "request_too_large")
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.timeout):
                inner: Receive = counted
                if b"json" in named.get(b"content-type", b""):
                    body = await whole_body(counted)
                    if too_deep(body, self.max_depth):
                        await _answer(send, 400, "json_too_deep")
                        return
                    inner = replayed(body, receive)
                await self.app(scope, inner, tracked)
        except _TooLarge:
            if not started:
                await _answer(send, 413, "request_too_large")
        except TimeoutError:
            if not started:
                await _answer(send, 408, "request_timeout")


async def whole_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def replayed(body: bytes, receive: Receive) -> Receive:
    """The body once more, then whatever the client sends next (its disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


def too_deep(body: bytes, limit: int) -> bool:
    """Whether the JSON's arrays and objects nest deeper than `limit` (brackets inside
    strings do not count). Cheap for the usual body: fewer brackets than the limit."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    steps = (1 if b in b"[{" else -1 for b in brackets)
    return max(accumulate(steps, initial=0)) > limit


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
