"""The sandbox's OpenAI-compatible chat endpoint: `POST /v1/chat/completions` answered by
the rule model of `model.py`, and `GET /v1/models`.

Both take `Authorization: Bearer <model_api_key>`. A completion meets, in order, the first
that answers ending it:

1. a missing or wrong key: 401 (not counted among `requests`);
2. `model_rpm`: past that many requests in the last 60 s, 429 with Retry-After until the
   oldest leaves the window (every request counts, refused ones too);
3. a drawn `model_throttle_rate`: 429 with Retry-After `retry_after`;
4. `model_status`: that status, OpenAI's error shape (429 with Retry-After);
5. a request the protocol refuses: 400; an unknown model: 404;
6. `model_latency_ms`, held without a thread (hundreds can wait at once);
7. a drawn `model_malformed_rate`: a 200 whose body is cut short, not JSON;
8. a drawn `model_invalid_rate`: a well-formed completion whose content breaks the schema or
   labels asked for; otherwise the model's answer. Both are billed in `usage` and stats.

Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, and never
quote the key.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cronlink.sandbox.model import MODELS, BadRequest, parse, reply

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.sandbox.faults import Faults, Switches
    from cronlink.sandbox.model import Reply
    from cronlink.sandbox.stats import ModelStats

COMPLETIONS, MODELS_PATH = "/v1/chat/completions", "/v1/models"
WINDOW = 60.0


class Chat:
    """The endpoint's handlers; `faults` holds the switches (replaced on each change), its
    draws and holds; `clock` times the requests-per-minute window."""

    def __init__(self, faults: Faults, stats: ModelStats, clock: Callable[[], float]) -> None:
        self.faults = faults
        self.stats = stats
        self._clock = clock
        self._arrivals: deque[float] = deque()
        self._seen: set[int] = set()
        self._billed: set[int] = set()
        self._serial = itertools.count(1)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(COMPLETIONS, self.complete)
        router.add_get(MODELS_PATH, self.models)

    @property
    def switches(self) -> Switches:
        return self.faults.switches

    async def models(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _unauthorized(request)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "sandbox"} for m in MODELS]
        return web.json_response({"object": "list", "data": data})

    async def complete(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            self.stats.unauthorized += 1
            return _unauthorized(request)
        body = await request.read()
        key = self._arrive(request.headers.get("Idempotency-Key"), body)
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        try:
            prompt = parse(json.loads(body))
        except (ValueError, BadRequest) as error:
            self.stats.bad_requests += 1
            param = error.param if isinstance(error, BadRequest) else None
            return _error(400, str(error), "invalid_request_error", param, "invalid_value")
        if prompt.model not in MODELS:
            self.stats.bad_requests += 1
            message = f"The model `{prompt.model}` does not exist; try one of {list(MODELS)}"
            return _error(404, message, "invalid_request_error", "model", "model_not_found")
        await self.faults.hold(self.switches.model_latency_ms / 1000)
        if self.faults.draw(self.switches.model_malformed_rate):
            self.stats.malformed += 1
            return web.Response(text='{"id": "chatcmpl-', content_type="application/json")
        invalid = self.faults.draw(self.switches.model_invalid_rate)
        answer = reply(prompt, invalid=invalid)
        self._bill(key, answer, invalid)
        return web.json_response(self._completion(prompt.model, answer))

    def _authorized(self, request: web.Request) -> bool:
        expected = self.switches.model_api_key.encode()
        return hmac.compare_digest(_key(request).encode(), expected)

    def _arrive(self, idempotency_key: str | None, body: bytes) -> int:
        """Count the request in the window and as a repeat; its repeat key."""
        now = self._clock()
        while self._arrivals and self._arrivals[0] <= now - WINDOW:
            self._arrivals.popleft()
        self._arrivals.append(now)
        self.stats.requests += 1
        self.stats.max_per_minute = max(self.stats.max_per_minute, len(self._arrivals))
        # 8-byte digests keep the keys of a benchmark's million requests small.
        if idempotency_key:
            key = _digest(idempotency_key.encode(), b"key")
        else:
            key = _digest(body, b"body")
        self.stats.repeats += key in self._seen
        self._seen.add(key)
        return key

    def _refusal(self) -> web.Response | None:
        """The 429 or fixed status that answers before the request is read, if any."""
        rpm, status = self.switches.model_rpm, self.switches.model_status
        if rpm is not None and len(self._arrivals) > rpm:
            self.stats.throttled += 1
            self.stats.over_rpm += 1
            wait = max(1, math.ceil(self._arrivals[0] + WINDOW - self._clock()))
            message = f"Rate limit reached for requests per min (RPM): Limit {rpm}"
            return _error(429, message, "requests", None, "rate_limit_exceeded", wait)
        if self.faults.draw(self.switches.model_throttle_rate) or status == 429:
            self.stats.throttled += 1
            message = "Rate limit reached; please try again later"
            wait = self.switches.retry_after
            return _error(429, message, "requests", None, "rate_limit_exceeded", wait)
        if status is not None:
            self.stats.errors += 1
            kind = "server_error" if status >= 500 else "invalid_request_error"
            return _error(status, "The sandbox model failed (model_status)", kind, None, None)
        return None

    def _bill(self, key: int, answer: Reply, invalid: bool) -> None:
        if invalid:
            self.stats.invalid += 1
        else:
            self.stats.ok += 1
        self.stats.prompt_tokens += answer.prompt_tokens
        self.stats.completion_tokens += answer.completion_tokens
        self.stats.billed_repeats += key in self._billed
        self._billed.add(key)

    def _completion(self, model: str, answer: Reply) -> dict[str, Any]:
        message = {"role": "assistant", "content": answer.content, "refusal": None}
        return {
            "id": f"chatcmpl-sandbox-{next(self._serial):08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
            "usage": {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            },
        }


def _digest(data: bytes, kind: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=kind).digest())


def _key(request: web.Request) -> str:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _unauthorized(request: web.Request) -> web.Response:
    if _key(request):
        return _error(401, "Incorrect API key provided.", "invalid_request_error", None,
                      "invalid_api_key")  # fmt: skip
    message = "You didn't provide an API key: send Authorization: Bearer <key>."
    return _error(401, message, "invalid_request_error", None, None)


def _error(
    status: int, message: str, kind: str, param: str | None, code: str | None,
    retry_after: int | None = None,
) -> web.Response:  # fmt: skip
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)
