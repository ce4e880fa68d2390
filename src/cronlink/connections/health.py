"""Health checks: probe a connection the way its provider says, then move its health
through `healthy`, `degraded`, `down` and `auth_failed` with damping.

A probe's answer is only evidence: one failure makes a healthy connection `degraded`, it
takes `down_after` failures in a row to call it `down`, and `up_after` successes in a row
to bring a `down` or `auth_failed` one back. A 429 means the provider answered: it counts
as reachable (and pauses the account, as every caller's 429 does). A 401 is retried once
with renewed tokens (`Account.request`) before it counts as `auth_failed`; a 403 (missing
scope, revoked consent) is `auth_failed` at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from cronlink.errors import AddressRefusedError
from cronlink.records.connections import Health

if TYPE_CHECKING:
    from cronlink.connections.account import Account
    from cronlink.connections.providers import Provider

TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Policy:
    down_after: int = 3
    up_after: int = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class Probe:
    """What one probe saw: `ok` (reachable and working), `auth` (the token was refused)."""

    ok: bool
    auth: bool = False
    status: int | None = None
    latency_ms: int
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Judged:
    health: Health
    failures: int
    successes: int


async def probe(session: aiohttp.ClientSession, provider: Provider, account: Account) -> Probe:
    """One probe through the account (a 401 renews its token once; a paused account is
    not probed: `AccountPausedError` is the caller's)."""
    spec = provider.health
    url = provider.url("base_url").rstrip("/") + spec.path
    headers = {"Accept": "application/json", **spec.headers}
    started = time.monotonic()
    try:
        answer = await account.request(
            session, spec.method, url, headers=headers, within=TIMEOUT, redirects=False
        )
    except TimeoutError:
        return Probe(ok=False, latency_ms=_since(started), detail=f"no answer in {TIMEOUT:g}s")
    except aiohttp.ClientError as error:
        return Probe(ok=False, latency_ms=_since(started), detail=type(error).__name__)
    except AddressRefusedError as error:
        return Probe(ok=False, latency_ms=_since(started), detail=str(error))
    latency, status = _since(started), answer.status
    if status in (401, 403):
        detail = f"token refused (HTTP {status})"
        return Probe(ok=False, auth=True, status=status, latency_ms=latency, detail=detail)
    if status == 429:
        return Probe(ok=True, status=status, latency_ms=latency, detail="throttled (HTTP 429)")
    if status not in spec.healthy:
        return Probe(ok=False, status=status, latency_ms=latency, detail=f"HTTP {status}")
    if spec.json_true and not _field_true(answer.body, spec.json_true):
        detail = f"HTTP {status} but {spec.json_true} is not true"
        return Probe(ok=False, auth=True, status=status, latency_ms=latency, detail=detail)
    return Probe(ok=True, status=status, latency_ms=latency, detail=f"HTTP {status}")


def judge(current: Health, failures: int, successes: int, seen: Probe, policy: Policy) -> Judged:
    """The health after `seen`, given the current health and the streaks so far."""
    if seen.ok:
        successes, failures = successes + 1, 0
        if current in (Health.DOWN, Health.AUTH_FAILED) and successes < policy.up_after:
            return Judged(health=current, failures=0, successes=successes)
        return Judged(health=Health.HEALTHY, failures=0, successes=successes)
    failures, successes = failures + 1, 0
    if seen.auth or current is Health.AUTH_FAILED:
        return Judged(health=Health.AUTH_FAILED, failures=failures, successes=0)
    if failures >= policy.down_after or current is Health.DOWN:
        return Judged(health=Health.DOWN, failures=failures, successes=0)
    return Judged(health=Health.DEGRADED, failures=failures, successes=0)


def _field_true(body: bytes, name: str) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get(name) is True


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
