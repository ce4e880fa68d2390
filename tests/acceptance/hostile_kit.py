"""A sandbox on 127.0.0.1 with a hand-set clock for its pauses, and a plain HTTP client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from cronlink.sandbox import Sandbox
from cronlink.sandbox.grants import CLIENT_ID, CLIENT_SECRET


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    status: int
    retry_after: str | None
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Hostile:
    sandbox: Sandbox
    session: aiohttp.ClientSession
    clock: Clock

    def mint(self, user: str) -> dict[str, Any]:
        return self.sandbox.grants.mint(user)

    async def call(self, path: str, token: str = "", form: dict[str, str] | None = None) -> Answer:
        """GET `path` with a bearer token, or POST `form`; a dropped connection raises
        `aiohttp.ClientError`."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        method = "POST" if form is not None else "GET"
        url = f"{self.sandbox.url}{path}"
        async with self.session.request(method, url, headers=headers, data=form) as response:
            return Answer(
                status=response.status, retry_after=response.headers.get("Retry-After"),
                text=await response.text(),
            )  # fmt: skip

    async def refresh(self, refresh_token: str) -> Answer:
        form = {
            "grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        }  # fmt: skip
        return await self.call("/oauth/token", form=form)

    async def switch(self, **changes: Any) -> None:
        """Set switches as a scenario runner in another process would."""
        url = f"{self.sandbox.url}/sandbox/switches"
        async with self.session.post(url, json=changes) as response:
            assert response.status == 200, await response.text()

    async def stats(self) -> dict[str, Any]:
        return dict((await self.call("/sandbox/stats")).json())


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    clock = Clock()
    async with Sandbox(clock=clock) as sandbox, aiohttp.ClientSession() as session:
        yield Hostile(sandbox, session, clock)
