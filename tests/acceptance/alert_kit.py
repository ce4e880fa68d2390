"""Real alert channels on 127.0.0.1: an SMTP server (aiosmtpd) and a JSON webhook
receiver (aiohttp), each on a thread of its own so that sync tests (the command line)
and async ones alike can use them; and runs ended as a scripted failure needs."""

from __future__ import annotations

import asyncio
import email
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from cronlink.records.runs import NewRun, Reason, RunError, RunState, Tier
from cronlink.store import Done, Outcome, Store

HOOK_PASSWORD = "hook-password-canary-5e1f"
"""The webhook URL's password: it must never show in a message, a log line or output."""


@dataclass
class Receivers:
    smtp_port: int
    hook_port: int
    mails: list[Message] = field(default_factory=list)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    hook_auth: list[str] = field(default_factory=list)
    refuse: bool = False
    """The webhook answers 503 (and records nothing) while set."""

    @property
    def mail_url(self) -> str:
        return f"mailto://127.0.0.1:{self.smtp_port}?from=cronlink@example.com&to=ops@example.com"

    @property
    def hook_url(self) -> str:
        return f"json://ops:{HOOK_PASSWORD}@127.0.0.1:{self.hook_port}/hook"

    def mail_titles(self) -> list[str]:
        return [str(m["Subject"]) for m in self.mails]

    def hook_titles(self) -> list[str]:
        return [str(h["title"]) for h in self.hooks]

    def everything(self) -> str:
        """All that was received, as text, for canary searches."""
        return "\n".join([m.as_string() for m in self.mails] + [json.dumps(self.hooks)])


class _Mailbox:
    def __init__(self, into: list[Message]) -> None:
        self.into = into

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content
        assert isinstance(raw, bytes)
        self.into.append(email.message_from_bytes(raw))
        return "250 OK"


def free_port() -> int:
    """A port nothing listens on (a channel that refuses every message)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def receivers() -> Iterator[Receivers]:
    got = Receivers(smtp_port=free_port(), hook_port=0)
    smtp = Controller(_Mailbox(got.mails), hostname="127.0.0.1", port=got.smtp_port)
    smtp.start()
    loop = asyncio.new_event_loop()

    async def hook(request: web.Request) -> web.Response:
        if got.refuse:
            return web.Response(status=503)
        got.hooks.append(await request.json())
        got.hook_auth.append(request.headers.get("Authorization", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        got.hook_port = runner.addresses[0][1]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield got
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        smtp.stop()


async def end_run(
    store: Store, job: str, state: RunState, at: datetime, *, ms: int = 100, why: str = ""
) -> int:
    """A run of `job` that ended `state` at `at` (its error message: `why`)."""
    queued = NewRun(job=job, tier=Tier.LIGHT, reason=Reason.MANUAL, max_attempts=3)
    run_id = await store.enqueue(queued, at)
    [run] = await store.claim("w", Tier.LIGHT, 1, timedelta(minutes=1), at)
    assert run.id == run_id
    error = None
    if state is not RunState.SUCCEEDED:
        error = RunError(type="SyncError", message=why, reason="exception")
    outcome = Outcome(state=state, error=error, duration_ms=ms)
    await store.complete(
        [Done(run_id=run_id, lease_token=run.lease_token or "", outcome=outcome)], at
    )
    return run_id
