"""`cronlink demo`: a newcomer sees refreshes, health checks and a needs_reauth quickly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cronlink.connections.crypto import ENV
from cronlink.demo import demo, demo_key, demo_settings


async def test_the_demo_shows_refreshes_health_reauth_automations_and_a_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV, raising=False)  # the demo sets both: restored after the test
    monkeypatch.delenv("CRONLINK_SANDBOX_URL", raising=False)
    demo_key()
    key_file = tmp_path / ".cronlink-demo.key"
    assert key_file.stat().st_mode & 0o077 == 0
    monkeypatch.setenv("DATABASE_URL", "postgresql://production.invalid/db")  # not used
    (tmp_path / "cronlink.toml").write_text('[[jobs]]\nname = "real"\nhandler = "x:y"\n')
    settings = demo_settings()
    assert settings.database_url == "sqlite:///cronlink-demo.db"
    assert settings.jobs == ()
    lines: list[str] = []
    stop = asyncio.Event()

    async def watch() -> None:
        wanted = (
            "refreshed", "health: unknown -> healthy", "needs_reauth",
            "classified urgent, summary posted", "nightly sync: copied 10000 records in 20 pages",
        )  # fmt: skip
        while not all(any(w in line for line in lines) for w in wanted):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        stop.set()

    watcher = asyncio.create_task(watch())
    async with asyncio.timeout(90):
        await demo(settings, port=0, lifetime=4, say=lines.append, stop=stop)
    await watcher
    assert lines[0].startswith("demo: sandbox provider at http://127.0.0.1:")
    assert any("connection 5: needs_reauth: sandbox refused the refresh" in x for x in lines)
    assert (tmp_path / "cronlink-demo.db").exists()


async def test_the_demo_run_again_on_its_database_refreshes_its_new_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second demo replaces the first one's connections: the new ones get new ids, so
    their refresh runs are queued (their dedupe keys are new) and their tokens renewed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("CRONLINK_SANDBOX_URL", raising=False)
    demo_key()
    for first_id in (1, 6):
        lines: list[str] = []
        stop = asyncio.Event()
        wanted = [f"connection {first_id}: refreshed", f"connection {first_id + 4}: needs_reauth"]
        watcher = asyncio.create_task(seen(wanted, lines, stop))
        async with asyncio.timeout(90):
            await demo(demo_settings(), port=0, lifetime=4, say=lines.append, stop=stop)
        await watcher


async def seen(wanted: list[str], lines: list[str], stop: asyncio.Event) -> None:
    """Stop the demo once each of `wanted` is in a line it said."""
    while not all(any(w in line for line in lines) for w in wanted):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    stop.set()
