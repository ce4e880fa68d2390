"""One check at the edge for every text a request carries: the path (so each path
parameter), each query parameter, each header value and each string, key and number of a
JSON body. Anything the store could not keep and give back (`cronlink.storable`), or that
is not UTF-8, is refused with 400 before any handler runs, and the refusal is audited
with the bad characters escaped, so the audit line itself can be written."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from fastapi import Request

from cronlink.storable import MAX_INT, escaped, flaw, json_flaw
from cronlink.web.guards import replayed, whole_body

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from cronlink.web.service import WebService


class _Refused(Exception):
    pass


class Edge:
    def __init__(self, app: ASGIApp, service: WebService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _check_path(scope)
            _check_query(scope["query_string"])
            _check_headers(scope["headers"])
            kind = _content_type(scope)
            if b"json" in kind or kind.startswith(b"application/x-www-form-urlencoded"):
                body = await whole_body(receive)
                if b"json" in kind:
                    _check_json(body)
                else:
                    _check_query(body)
                receive = replayed(body, receive)
        except _Refused as refused:
            await self._refuse(scope, str(refused), send)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, problem: str, send: Send) -> None:
        raw = unquote_to_bytes(scope.get("raw_path") or scope["path"].encode())
        shown = escaped(raw.decode("utf-8", "backslashreplace"))
        await self.service.refused(Request(scope), "request", f"{scope['method']} {shown}",
                                   "invalid")  # fmt: skip
        body = json.dumps({"error": "invalid_request", "detail": problem}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _text(raw: bytes, where: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(f"{where} is not UTF-8") from None
    found = flaw(text)
    if found is not None:
        raise _Refused(f"{where} holds {found}")
    return text


def _check_path(scope: Scope) -> None:
    _text(unquote_to_bytes(scope.get("raw_path") or scope["path"].encode()), "the path")


def _check_query(query: bytes) -> None:
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        shown = _text(unquote_to_bytes(name.replace(b"+", b" ")), "a query parameter's name")
        where = f"query parameter {escaped(shown)[:40]!r}"
        _text(unquote_to_bytes(value.replace(b"+", b" ")), where)


def _check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if b"\x00" in value:
            raise _Refused(f"header {name.decode('latin-1')[:40]!r} holds a NUL character")


def _content_type(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value).lower()
    return b""


def _check_json(body: bytes) -> None:
    """A body that does not parse is left to the route, which says where it breaks."""
    if not body:
        return
    text = _text(body, "the body")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_int=_bounded)
    except _Refused:
        raise
    except ValueError:
        return
    problem = json_flaw(value, "body")
    if problem is not None:
        raise _Refused(problem)


def _no_constant(name: str) -> Any:
    raise _Refused(f"the body holds {name}, which is not JSON")


def _bounded(digits: str) -> int:
    if len(digits.lstrip("-")) > len(str(MAX_INT)) or abs(int(digits)) > MAX_INT:
        raise _Refused("the body holds an integer out of range")
    return int(digits)
