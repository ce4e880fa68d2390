"""Canary tokens: every token the sandbox ever issued, searched for in every log line, CLI
output, event, run result and error after refreshes, checks and failures of every kind."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from cronlink.cli import cli
from cronlink.errors import CronlinkError
from cronlink.store import RunFilter
from tests.acceptance.sandbox_kit import Kit, kit

__all__ = ["kit"]


def issued(kit: Kit) -> set[str]:
    grants = kit.sandbox.grants
    return set(grants.access) | set(grants.by_refresh) | set(grants.retired)


async def test_no_token_reaches_a_log_an_error_an_event_or_the_cli(
    kit: Kit, caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    said: list[str] = []
    ids = [await kit.connect(f"user{i}") for i in range(4)]
    await kit.connections.refresh(ids[0])
    await kit.connections.check_all()
    for switches in (
        # Retry-After: 0, so that the 429's pause of the accounts is over by the next round.
        {"token_status": 503}, {"token_status": 429, "retry_after": 0}, {"malformed": True},
        {"leaky_errors": True},
        {"api_status": 500},
    ):  # fmt: skip
        kit.sandbox.configure(**switches)
        for cid in ids[:2]:
            try:
                await kit.connections.refresh(cid)
            except CronlinkError as error:
                said.append(str(error))
            await kit.connections.check(cid)
        kit.sandbox.configure(
            token_status=None, malformed=False, leaky_errors=False, api_status=None
        )
    monkeypatch.setenv("CRONLINK_SANDBOX_CLIENT_SECRET", "client-secret-canary")
    try:
        await kit.connections.refresh(ids[2])
    except CronlinkError as error:
        said.append(str(error))
    monkeypatch.delenv("CRONLINK_SANDBOX_CLIENT_SECRET")
    kit.sandbox.grants.revoke_all()
    for cid in ids[2:]:
        for act in (kit.connections.refresh, kit.connections.check):
            try:
                await act(cid)
            except CronlinkError as error:
                said.append(str(error))
    assert any("bad token ***" in line for line in said)  # the leak was scrubbed, not absent

    store = kit.connections.store
    events = await kit.connections.events()
    runs = await store.list_runs(RunFilter(limit=1000))
    db_url = store.url
    (tmp_path / "cronlink.toml").write_text(f'database_url = "{db_url}"\n[connections]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRONLINK_SECRET_KEY", kit.key)
    outputs = [
        (await asyncio.to_thread(CliRunner().invoke, cli, args, catch_exceptions=False)).output
        for args in (
            ["connections", "list", "--json"], ["connections", "list"],
            ["connections", "events", "--json"], ["connections", "show", "1", "--json"],
            ["runs", "--json"],
        )
    ]  # fmt: skip
    haystack = "\n".join(
        [
            caplog.text, *said, *outputs,
            json.dumps([[e.kind, e.detail] for e in events]),
            json.dumps([[r.result, r.error and r.error.message] for r in runs]),
        ]
    )  # fmt: skip
    canaries = issued(kit) | {"client-secret-canary"}
    assert len(canaries) >= 12
    leaked = sorted(c for c in canaries if c in haystack)
    assert leaked == []
    assert "needs_reauth" in haystack  # the failures did happen and were reported
    assert "HTTP 503" in haystack
