"""Connections against the sandbox provider, a real OAuth2 server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cronlink import compose
from cronlink.app import App
from cronlink.builtin_jobs import connection_jobs
from cronlink.config_models import ConnectionsModel
from cronlink.connections.crypto import Vault, generate_key
from cronlink.engine.tiers import LightTier
from cronlink.engine.worker import Worker
from cronlink.errors import (
    ConnectionUnusableError,
    RefreshError,
    SecretKeyError,
    TokenUnavailableError,
)
from cronlink.records.connections import ConnectionState, Health, Secrets
from cronlink.records.runs import RunState, Tier
from cronlink.sandbox import Sandbox
from cronlink.store import RunFilter
from tests.acceptance.sandbox_kit import Kit, kit
from tests.acceptance.worker_kit import enqueue, finished, running_worker

__all__ = ["kit"]


async def _refresh_token(kit: Kit, connection_id: int) -> str | None:
    sealed = await kit.connections.store.connections.sealed(connection_id)
    return kit.connections.vault.open(connection_id, sealed.ciphertext).refresh_token


async def test_refresh_stores_the_rotated_token_and_schedules_the_next(kit: Kit) -> None:
    cid = await kit.connect()
    before = await _refresh_token(kit, cid)
    after = await kit.connections.refresh(cid)
    assert after.version == 2
    assert after.refreshed_at is not None
    assert after.expires_at is not None
    assert after.refresh_due_at == after.expires_at - timedelta(minutes=10)
    rotated = await _refresh_token(kit, cid)
    assert rotated != before
    assert rotated == next(iter(kit.sandbox.grants.by_refresh))
    runs = await kit.connections.store.list_runs(RunFilter(job="refresh-connection"))
    assert {r.not_before for r in runs} >= {after.refresh_due_at}
    # Each run names the tokens it was queued for: 1 for the first, 2 for the next.
    assert sorted(r.payload["version"] for r in runs) == [1, 2]
    assert all(r.payload["connection_id"] == cid for r in runs)
    creds = await kit.connections.credentials(cid)
    async with kit.session.get(
        f"{kit.sandbox.url}/api/me", headers={"Authorization": creds.authorization}
    ) as response:
        assert response.status == 200


async def test_a_response_without_refresh_token_keeps_the_old_one(kit: Kit) -> None:
    kit.sandbox.configure(rotation=False)
    cid = await kit.connect()
    before = await _refresh_token(kit, cid)
    await kit.connections.refresh(cid)
    await kit.connections.refresh(cid)
    assert await _refresh_token(kit, cid) == before
    assert (await kit.stats())["refreshes"] == 2


async def test_concurrent_refreshes_in_one_process_make_one_request(kit: Kit) -> None:
    cid = await kit.connect()
    kit.sandbox.configure(latency_ms=100)
    results = await asyncio.gather(*(kit.connections.refresh(cid) for _ in range(10)))
    assert {r.version for r in results} == {2}
    stats = await kit.stats()
    assert stats["refreshes"] == 1
    assert stats["invalid_grants"] == 0


async def test_credentials_refresh_first_inside_the_margin(kit: Kit) -> None:
    clock = kit.clock
    tokens = await kit.mint()
    added = await kit.connections.add(
        provider="sandbox", owner="alice", access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"], expires_in=1800,
    )  # fmt: skip
    creds = await kit.connections.credentials(added.id)
    assert creds.access_token == tokens["access_token"]  # 30 minutes left: used as it is
    clock.ahead = timedelta(minutes=21)  # 9 minutes left, inside the 10-minute margin
    creds = await kit.connections.credentials(added.id)
    assert creds.access_token != tokens["access_token"]
    assert (await kit.connections.get(added.id)).version == 2
    again = await kit.connections.credentials(added.id)
    assert again.access_token == creds.access_token  # outside the margin now: no refresh


async def test_short_lived_tokens_refresh_half_way_not_at_once(kit: Kit) -> None:
    tokens = await kit.mint()
    added = await kit.connections.add(
        provider="sandbox", owner="alice", access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"], expires_in=300,
    )  # fmt: skip
    assert added.expires_at is not None
    assert added.refresh_due_at == added.expires_at - timedelta(seconds=150)
    creds = await kit.connections.credentials(added.id)
    assert creds.access_token == tokens["access_token"]


async def test_invalid_grant_needs_reauth_with_the_reason(kit: Kit) -> None:
    cid = await kit.connect()
    assert (await kit.connections.check(cid)).health is Health.HEALTHY
    kit.sandbox.grants.revoke_all()
    with pytest.raises(RefreshError) as caught:
        await kit.connections.refresh(cid)
    assert caught.value.kind == "grant"
    after = await kit.connections.get(cid)
    assert after.state is ConnectionState.NEEDS_REAUTH
    assert after.health is Health.AUTH_FAILED  # no longer probed: not left "healthy"
    assert after.last_error is not None
    assert "invalid_grant" in after.last_error
    assert "needs_reauth" in [e.kind for e in await kit.connections.events(cid)]
    with pytest.raises(ConnectionUnusableError, match="needs_reauth"):
        await kit.connections.credentials(cid)
    with pytest.raises(ConnectionUnusableError, match="reconnect"):
        await kit.connections.enable(cid)


async def test_reusing_a_rotated_token_revokes_the_grant(kit: Kit) -> None:
    kit.sandbox.configure(grace_seconds=0)
    cid = await kit.connect()
    old = await _refresh_token(kit, cid)
    await kit.connections.refresh(cid)
    assert old is not None
    assert kit.sandbox.grants.credential(old) is None  # a replayed, rotated token
    assert (await kit.stats())["reuse_revocations"] == 1
    with pytest.raises(RefreshError):
        await kit.connections.refresh(cid)
    assert (await kit.connections.get(cid)).state is ConnectionState.NEEDS_REAUTH


@pytest.mark.parametrize(
    ("switches", "expected"),
    [
        ({"token_status": 503}, "HTTP 503"),
        ({"malformed": True}, "without a JSON object"),
        ({"latency_ms": 0, "token_status": 500}, "HTTP 500"),
    ],
)
async def test_transient_failures_keep_the_connection_and_back_off(
    kit: Kit, switches: dict[str, object], expected: str
) -> None:
    cid = await kit.connect()
    kit.sandbox.configure(**switches)
    with pytest.raises(RefreshError, match=expected) as caught:
        await kit.connections.refresh(cid)
    assert caught.value.kind == "transient"
    after = await kit.connections.get(cid)
    assert after.state is ConnectionState.ACTIVE
    assert after.refresh_failures == 1
    assert after.refresh_due_at is not None
    wait = after.refresh_due_at - after.updated_at
    assert timedelta(seconds=1) <= wait <= timedelta(seconds=2)  # soon: the first retries
    runs = await kit.connections.store.list_runs(RunFilter(job="refresh-connection"))
    assert after.refresh_due_at in {r.not_before for r in runs}
    kit.sandbox.configure(token_status=None, malformed=False)
    assert (await kit.connections.refresh(cid)).refresh_failures == 0


async def test_a_429_at_the_token_endpoint_pauses_the_account_and_counts_nothing(
    kit: Kit,
) -> None:
    cid = await kit.connect()
    kit.sandbox.configure(token_status=429, retry_after=120)
    with pytest.raises(RefreshError, match="HTTP 429") as caught:
        await kit.connections.refresh(cid)
    assert caught.value.kind == "transient"
    after = await kit.connections.get(cid)
    assert (after.state, after.refresh_failures) == (ConnectionState.ACTIVE, 0)
    assert after.paused_until is not None
    assert after.refresh_due_at == after.paused_until
    assert after.paused_until - after.updated_at > timedelta(seconds=119)
    runs = await kit.connections.store.list_runs(RunFilter(job="refresh-connection"))
    assert after.paused_until in {r.not_before for r in runs}  # the chain goes on from there
    kit.sandbox.configure(token_status=None)
    with pytest.raises(RefreshError, match="paused until"):  # not asked again meanwhile
        await kit.connections.refresh(cid)
    assert (await kit.stats())["refreshes"] == 0


async def test_a_refused_client_is_the_operators_problem_not_the_users(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = await kit.connect()
    monkeypatch.setenv("CRONLINK_SANDBOX_CLIENT_SECRET", "wrong-secret")
    with pytest.raises(RefreshError, match="invalid_client") as caught:
        await kit.connections.refresh(cid)
    assert caught.value.kind == "config"
    assert "wrong-secret" not in str(caught.value)
    after = await kit.connections.get(cid)
    assert after.state is ConnectionState.ACTIVE
    assert "config_error" in [e.kind for e in await kit.connections.events(cid)]


async def test_an_unreachable_provider_is_transient(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = await kit.connect()
    monkeypatch.setenv("CRONLINK_SANDBOX_URL", "http://127.0.0.1:9")
    with pytest.raises(RefreshError, match="unreachable") as caught:
        await kit.connections.refresh(cid)
    assert caught.value.kind == "transient"
    assert (await kit.connections.get(cid)).state is ConnectionState.ACTIVE


async def test_keys_rotate_and_the_old_key_can_go(kit: Kit) -> None:
    ids = [await kit.connect(f"user{i}") for i in range(5)]
    new = generate_key()
    kit.connections.vault = Vault.from_text(f"{new},{kit.key}")
    assert await kit.connections.rotate_keys(batch=2) == 5
    assert await kit.connections.rotate_keys() == 0
    kit.connections.vault = Vault.from_text(new)
    await kit.connections.check_keys()
    for cid in ids:
        assert (await kit.connections.credentials(cid)).access_token.startswith("at_")
    kit.connections.vault = Vault.from_text(kit.key)
    with pytest.raises(SecretKeyError, match="start-up refused"):
        await kit.connections.check_keys()


async def test_the_refresh_job_refreshes_a_due_connection(kit: Kit) -> None:
    app = App()
    for job in connection_jobs(ConnectionsModel()):
        app.add(job)
    tokens = await kit.mint()
    added = await kit.connections.add(
        provider="sandbox", owner="alice", access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"], expires_in=1,
    )  # fmt: skip
    store = kit.connections.store
    worker = Worker(
        store, app.jobs, app.get("refresh-connection").tier, LightTier(kit.session),
        connections=kit.connections, poll=0.05,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(10):
            while (await kit.connections.get(added.id)).version < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    runs = await store.list_runs(RunFilter(job="refresh-connection", state=RunState.SUCCEEDED))
    assert runs
    assert runs[-1].result is not None
    assert '"refreshed": true' in runs[-1].result


async def test_app_connections_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'py.db'}")
    monkeypatch.setenv("CRONLINK_SECRET_KEY", generate_key())
    async with Sandbox() as sandbox:
        monkeypatch.setenv("CRONLINK_SANDBOX_URL", sandbox.url)
        tokens = sandbox.grants.mint("py")
        async with compose.connections(App()) as connections:
            added = await connections.add(
                provider="sandbox", owner="py", access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"], expires_in=3600,
            )  # fmt: skip
            assert (await connections.refresh(added.id)).version == 2
            creds = await connections.credentials(added.id)
            assert creds.access_token != tokens["access_token"]
            assert [c.owner for c in await connections.find()] == ["py"]


async def test_the_sweep_finds_due_and_idle_connections(kit: Kit) -> None:
    clock = kit.clock
    due = await kit.connect("due")  # 60-minute token: due after 50 minutes
    tokens = await kit.mint("lasting")
    lasting = await kit.connections.add(
        provider="sandbox", owner="lasting", access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )  # fmt: skip
    assert await kit.connections.sweep() == ([], [])
    clock.ahead = timedelta(minutes=51)
    assert await kit.connections.sweep() == ([due], [])
    clock.ahead = timedelta(days=8)  # past sandbox.toml's idle_refresh_after (7 days)
    swept_due, swept_idle = await kit.connections.sweep()
    assert swept_due == [due]
    assert set(swept_idle) == {due, lasting.id}


async def test_a_heavy_run_gets_credentials_through_its_worker(kit: Kit) -> None:
    cid = await kit.connect("heavy-user")
    gone = await kit.connect("gone")
    await kit.connections.store.connections.set_state(
        gone, ConnectionState.NEEDS_REAUTH, "revoked for the test", datetime.now(UTC)
    )
    store = kit.connections.store
    async with running_worker(store, Tier.HEAVY, connections=kit.connections):
        ok = await enqueue(
            store, "heavy-credentials", {"connection_id": cid, "url": kit.sandbox.url}
        )
        refused = await enqueue(
            store, "heavy-credentials", {"connection_id": gone, "url": kit.sandbox.url}
        )
        worked, failed = await finished(store, ok), await finished(store, refused)
    assert (worked.state, worked.result) == (RunState.SUCCEEDED, '"heavy-user"')
    assert (await kit.connections.get(cid)).used_at is not None
    assert failed.state is RunState.FAILED
    assert failed.error is not None
    assert failed.error.type == "ConnectionUnusableError"
    assert "needs_reauth: revoked for the test" in failed.error.message


async def test_credentials_keep_a_valid_token_through_an_outage(kit: Kit) -> None:
    clock = kit.clock
    cid = await kit.connect()
    original = (await kit.connections.credentials(cid)).access_token
    clock.ahead = timedelta(minutes=55)  # inside the margin, still valid for 5 minutes
    kit.sandbox.configure(token_status=503)
    first = await kit.connections.credentials(cid)
    second = await kit.connections.credentials(cid)  # backing off: no second request
    assert first.access_token == second.access_token == original
    failures = [e for e in await kit.connections.events(cid) if e.kind == "refresh_failed"]
    assert len(failures) == 1
    clock.ahead = timedelta(minutes=61)  # expired, and the backoff is over
    with pytest.raises(TokenUnavailableError, match="expired") as caught:
        await kit.connections.credentials(cid)  # never the expired token
    assert caught.value.until is not None
    assert caught.value.until > clock.now()  # when the next refresh will be tried


async def test_one_broken_connection_does_not_stop_the_health_sweep(kit: Kit) -> None:
    ids = [await kit.connect(f"user{i}") for i in range(3)]
    broken = await kit.connections.store.connections.add(
        provider="retired-provider", owner="x", scopes="", now=datetime.now(UTC),
        seal=lambda cid: (kit.connections.vault.seal(cid, Secrets(access_token="a")),
                          kit.connections.vault.primary),
        expires_at=None, refresh_due_at=None,
    )  # fmt: skip
    counts = await kit.connections.check_all()
    assert counts["probed"] == 4
    assert {(await kit.connections.get(i)).health for i in ids} == {Health.HEALTHY}
    after = await kit.connections.get(broken.id)
    assert after.health is Health.DEGRADED
    details = [e.detail for e in await kit.connections.events(broken.id) if e.kind == "health"]
    assert details == [
        "unknown -> degraded: unknown provider 'retired-provider'; known: github, "
        "google, hubspot, microsoft, notion, salesforce, sandbox, sandbox-crm, slack, xero"
    ]
