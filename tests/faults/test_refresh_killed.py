"""A refreshing process SIGKILLed after the provider rotated the token but before it stored
the answer. The next refresh presents the previous refresh token once the dead process's
lease lapses: a provider with a grace period accepts it and nothing is lost; a strict one
revokes the grant and the connection lands in `needs_reauth`, saying why."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from cronlink.errors import RefreshError
from cronlink.records.connections import ConnectionState
from tests.faults.processes import ROOT
from tests.faults.sandboxed import Setup, sandboxed

LEASE = 3.0
pytestmark = pytest.mark.slow


async def _killed_mid_refresh(setup: Setup, url: str, connection_id: int) -> None:
    env = {**os.environ, **setup.env, "PYTHONPATH": str(ROOT)}
    victim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.faults.refresher", url, str(connection_id), "1000000",
        str(LEASE), env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    setup.sandbox.configure(hold_ms=2_000)  # rotated at once, answered too late
    async with asyncio.timeout(30):
        while setup.sandbox.grants.stats.refreshes < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    setup.sandbox.configure(hold_ms=0)


@pytest.mark.timeout(60)
async def test_with_a_grace_period_the_next_refresh_recovers(
    tmp_path: Path, any_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sandboxed(any_url, tmp_path, refresh_lease=timedelta(seconds=LEASE)) as setup:
        monkeypatch.setenv("CRONLINK_SANDBOX_URL", setup.sandbox.url)
        tokens = setup.sandbox.grants.mint("victim")
        added = await setup.connections.add(
            provider="sandbox", owner="victim", access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=3600,
        )  # fmt: skip
        await _killed_mid_refresh(setup, any_url, added.id)
        after = await setup.connections.refresh(added.id)  # waits out the dead one's lease
        assert (after.state, after.version) == (ConnectionState.ACTIVE, 2)
        stats = setup.sandbox.grants.stats
        assert (stats.refreshes, stats.grace_reuses, stats.reuse_revocations) == (2, 1, 0)
        grant = next(iter(setup.sandbox.grants.grants.values()))
        sealed = await setup.connections.store.connections.sealed(added.id)
        stored = setup.connections.vault.open(added.id, sealed.ciphertext)
        assert stored.refresh_token == grant.refresh_token
        assert (await setup.connections.refresh(added.id)).version == 3  # and it goes on


@pytest.mark.timeout(60)
async def test_without_one_the_connection_needs_reauth_saying_why(
    tmp_path: Path, any_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sandboxed(any_url, tmp_path, refresh_lease=timedelta(seconds=LEASE)) as setup:
        monkeypatch.setenv("CRONLINK_SANDBOX_URL", setup.sandbox.url)
        setup.sandbox.configure(grace_seconds=0)
        tokens = setup.sandbox.grants.mint("victim")
        added = await setup.connections.add(
            provider="sandbox", owner="victim", access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=3600,
        )  # fmt: skip
        await _killed_mid_refresh(setup, any_url, added.id)
        with pytest.raises(RefreshError) as caught:
            await setup.connections.refresh(added.id)
        assert caught.value.kind == "grant"
        after = await setup.connections.get(added.id)
        assert after.state is ConnectionState.NEEDS_REAUTH
        assert after.last_error == "sandbox refused the refresh: invalid_grant"
        assert setup.sandbox.grants.stats.reuse_revocations == 1
        assert next(iter(setup.sandbox.grants.grants.values())).revoked
