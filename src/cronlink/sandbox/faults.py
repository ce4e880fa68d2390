"""The sandbox's fault switches, the random draws of their rates and the accounts' pauses.

Each provider the sandbox plays has its own `Faults`, whose rates are drawn from its own
`random.Random(seed)`, so a scenario replays the same faults for the same sequence of
requests. A drawn throttle pauses its account the way real
providers do: until the 429's instant plus its Retry-After, every request of that account is
answered 429 with what remains; one arriving later than `pause_tolerance` after that 429
(time for requests already on their way) is impolite, and counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cronlink.sandbox.stats import Violation

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.sandbox.stats import Stats

VIOLATIONS_KEPT = 100


@dataclass
class Switches:
    latency_ms: float = 0
    token_status: int | None = None
    """Answer the token endpoint with this status (429 carries `retry_after`)."""
    api_status: int | None = None
    retry_after: int = 1
    """Whole seconds, in every 429's Retry-After, and the length of a drawn pause."""
    malformed: bool = False
    """The token endpoint answers 200 with a body that is not JSON."""
    hold_ms: float = 0
    """Hold each token answer this long after the grant changed (a client may die meanwhile)."""
    leaky_errors: bool = False
    """The token endpoint refuses, quoting the refresh token it got (as careless ones do)."""
    rotation: bool = True
    grace_seconds: float = 120
    token_lifetime: float = 3600
    throttled_users: tuple[str, ...] = ()
    """API calls made with these users' tokens answer 429 (one account over its limit)."""
    throttle_rate: float = 0
    """Fraction of an account's token, probe and API requests answered 429, pausing it."""
    pause_tolerance: float = 0.5
    """Seconds after a pause's 429 within which its account's requests are still polite."""
    lose_token_rate: float = 0
    """Fraction of refreshes processed (the grant rotates) whose answer is never sent."""
    hang_rate: float = 0
    """Fraction of token and API requests held `hang_seconds` before their answer."""
    hang_seconds: float = 35
    hang_token: bool = True
    """Whether hangs strike the token endpoint too. A token request held past the client's
    timeout and processed afterwards rotates the grant behind a retry the client already
    made: with reuse detection that revokes the grant, whatever the client does."""
    malformed_rate: float = 0
    """Fraction of token and feed answers that are a 200 whose body is not JSON."""
    seed: int | None = None
    """Seeds the draws of every rate; setting it again restarts their sequence."""
    model_api_key: str = "sandbox-model-key"
    """The bearer `/v1/` accepts."""
    model_latency_ms: float = 0
    """Added to each chat completion answered (ok, invalid or malformed)."""
    model_status: int | None = None
    """Answer every chat completion with this status (429 carries `retry_after`)."""
    model_throttle_rate: float = 0
    """Fraction of chat completions answered 429 with Retry-After `retry_after`."""
    model_malformed_rate: float = 0
    """Fraction of chat completions answered 200 with a body that is not JSON."""
    model_invalid_rate: float = 0
    """Fraction of chat completions whose content breaks the format or schema asked for."""
    model_rpm: int | None = None
    """Chat completions accepted within any 60 s; more are answered 429 until the oldest
    leaves the window. Refused requests count too, as OpenAI's do."""
    crm_token_status: int | None = None
    """The CRM's own switches: its `token_status`, `api_status`, `throttled_users`,
    `throttle_rate`, `hang_rate`, `malformed_rate`, `rotation`, `grace_seconds` and
    `token_lifetime`; the other switches strike both providers (`crm_switches`)."""
    crm_api_status: int | None = None
    crm_throttled_users: tuple[str, ...] = ()
    crm_throttle_rate: float = 0
    crm_hang_rate: float = 0
    crm_malformed_rate: float = 0
    crm_lose_rate: float = 0
    """Fraction of the CRM's refreshes and batch writes processed whose answer is never sent."""
    crm_rotation: bool = True
    crm_grace_seconds: float = 120
    crm_token_lifetime: float = 3600
    crm_batch_limit: int = 100
    """Records one CRM batch may hold; a larger batch is refused whole (400)."""


CRM_SWITCHES = {
    "crm_token_status": "token_status", "crm_api_status": "api_status",
    "crm_throttled_users": "throttled_users", "crm_throttle_rate": "throttle_rate",
    "crm_hang_rate": "hang_rate", "crm_malformed_rate": "malformed_rate",
    "crm_lose_rate": "lose_token_rate", "crm_rotation": "rotation",
    "crm_grace_seconds": "grace_seconds", "crm_token_lifetime": "token_lifetime",
}  # fmt: skip


def crm_switches(switches: Switches) -> Switches:
    """The switches as the CRM's faults read them: its own in place of the mail provider's."""
    return dataclasses.replace(
        switches, **{own: getattr(switches, crm) for crm, own in CRM_SWITCHES.items()}
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Pause:
    started: float
    ends: float


class Faults:
    """Decides, request by request, which faults of `switches` strike, and counts them."""

    def __init__(self, stats: Stats, clock: Callable[[], float] = time.monotonic) -> None:
        self.switches = Switches()
        self.stats = stats
        self.pauses: dict[str, Pause] = {}
        self._clock = clock
        self._random = random.Random()
        self._released = asyncio.Event()

    def reseed(self, seed: int | None) -> None:
        self._random.seed(seed)

    def throttle(self, user: str | None, path: str, *, api: bool) -> int | None:
        """The Retry-After to answer 429 with, or None to go on; a request of no account
        (no token, or one unknown or expired) is never throttled, and `throttled_users`
        only on `api` requests (not at the token endpoint)."""
        if user is None:
            return None
        now = self._clock()
        pause = self.pauses.get(user)
        if pause is not None and pause.ends > now:
            if now - pause.started > self.switches.pause_tolerance:
                self.stats.paused_violations += 1
                self.stats.violations.append(
                    Violation(user=user, path=path, early_by=round(pause.ends - now, 3))
                )
                del self.stats.violations[:-VIOLATIONS_KEPT]
            self.stats.throttled += 1
            return math.ceil(pause.ends - now)
        self.pauses.pop(user, None)
        # Named users stay over their limit as long as they are named: no pause to outlast.
        if api and user in self.switches.throttled_users:
            self.stats.throttled += 1
            return self.switches.retry_after
        if self.draw(self.switches.throttle_rate):
            self.pauses[user] = Pause(started=now, ends=now + self.switches.retry_after)
            self.stats.throttled += 1
            self.stats.pauses += 1
            return self.switches.retry_after
        return None

    async def hang(self, token: bool) -> bool:
        """Hold the request `hang_seconds` if a hang is drawn (on a `token` request only
        with `hang_token`); False if the sandbox closed meanwhile (the request is then to
        be dropped, not answered)."""
        if token and not self.switches.hang_token:
            return True
        if not self.draw(self.switches.hang_rate):
            return True
        self.stats.hangs += 1
        return await self.hold(self.switches.hang_seconds)

    async def hold(self, seconds: float) -> bool:
        """Wait `seconds` (no thread: hundreds may wait at once); False if the sandbox
        closed meanwhile."""
        if seconds <= 0:
            return True
        try:
            await asyncio.wait_for(self._released.wait(), seconds)
        except TimeoutError:
            return True
        return False

    def release(self) -> None:
        """End every hold now (the sandbox is closing); later holds wait again."""
        released, self._released = self._released, asyncio.Event()
        released.set()

    def malformed(self) -> bool:
        struck = self.draw(self.switches.malformed_rate)
        self.stats.malformed += struck
        return struck

    def lose(self) -> bool:
        struck = self.draw(self.switches.lose_token_rate)
        self.stats.lost_answers += struck
        return struck

    def draw(self, rate: float) -> bool:
        # A rate of 0 draws nothing: a scenario's sequence depends on the faults it turns on.
        return rate > 0 and self._random.random() < rate
