"""1,000 refreshes of one rotating connection by two processes racing, on both engines:
no invalid_grant, no revoked grant, no grace-period retry, the newest token stored."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from cronlink.records.connections import ConnectionState
from tests.faults.processes import ROOT
from tests.faults.sandboxed import sandboxed

REFRESHES = 1000
pytestmark = pytest.mark.slow


@pytest.mark.timeout(240)
async def test_two_processes_racing_never_lose_a_rotation(tmp_path: Path, any_url: str) -> None:
    async with sandboxed(any_url, tmp_path) as setup:
        tokens = setup.sandbox.grants.mint("racer")
        connection = await setup.connections.add(
            provider="sandbox", owner="racer", access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=3600,
        )  # fmt: skip
        env = {**os.environ, **setup.env, "PYTHONPATH": str(ROOT)}
        racers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.faults.refresher",
                any_url,
                str(connection.id),
                str(REFRESHES),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        async with asyncio.timeout(200):
            outputs = [(await racer.communicate())[0].decode() for racer in racers]
        assert [racer.returncode for racer in racers] == [0, 0], outputs
        stats = setup.sandbox.grants.stats
        assert stats.refreshes >= REFRESHES
        assert (stats.invalid_grants, stats.reuse_revocations, stats.grace_reuses) == (0, 0, 0)
        grant = next(iter(setup.sandbox.grants.grants.values()))
        assert not grant.revoked
        after = await setup.connections.store.connections.sealed(connection.id)
        assert after.connection.state is ConnectionState.ACTIVE
        assert after.connection.version == stats.refreshes + 1
        stored = setup.connections.vault.open(connection.id, after.ciphertext)
        assert stored.refresh_token == grant.refresh_token
        assert all("refreshed" in out for out in outputs)  # both processes did refresh
        assert not any(tokens["refresh_token"] in out for out in outputs)
