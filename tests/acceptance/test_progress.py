"""Long commands show how far they have got on a terminal (rich bars on stderr) and
nothing when their output goes to a program: `db upgrade`, `db copy`, `connections
refresh --all`."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cronlink.connections.crypto import generate_key

CLI = [sys.executable, "-m", "cronlink"]


def _on_a_terminal(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, bytes]:
    """Run `command` with stderr on a pseudo-terminal: its exit code, stdout and what the
    terminal got."""
    master, slave = pty.openpty()
    drawn = bytearray()

    def pump() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal's last writer has gone
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=pump)
    reader.start()
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave,
                          text=True) as process:  # fmt: skip
        os.close(slave)
        out, _ = process.communicate(timeout=120)
    reader.join(10)
    os.close(master)
    return process.returncode, out, bytes(drawn)


def _piped(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "cronlink.toml").write_text(
        f'database_url = "sqlite:///{tmp_path / "c.db"}"\nallow_private_networks = true\n'
        "[connections]\n"
    )
    return {**os.environ, "CRONLINK_SECRET_KEY": generate_key(), "DATABASE_URL": ""}


def test_db_upgrade_and_copy_draw_bars_on_a_terminal_and_none_when_piped(
    tmp_path: Path, env: dict[str, str]
) -> None:
    code, out, drawn = _on_a_terminal([*CLI, "db", "upgrade"], tmp_path, env)
    assert code == 0, out
    assert b"upgrading the schema" in drawn
    assert _piped([*CLI, "db", "upgrade"], tmp_path, env).stderr == ""  # up to date: quiet
    for _ in range(3):
        assert _piped([*CLI, "trigger", "watch-alerts"], tmp_path, env).returncode != 2
    copy = [*CLI, "db", "copy", "--from", f"sqlite:///{tmp_path / 'c.db'}", "--to"]
    code, out, drawn = _on_a_terminal([*copy, f"sqlite:///{tmp_path / 't1.db'}"], tmp_path, env)
    assert code == 0, out
    assert b"copying runs" in drawn
    assert b"copying connections" in drawn
    assert "copied" in out
    piped = _piped([*copy, f"sqlite:///{tmp_path / 't2.db'}"], tmp_path, env)
    assert piped.returncode == 0, piped.stderr
    assert "copying" not in piped.stderr
    assert "\x1b" not in piped.stderr + piped.stdout


@pytest.fixture
def sandbox(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [*CLI, "sandbox", "--port", str(port)]
    quiet = subprocess.DEVNULL
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=quiet, stderr=quiet) as server:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/sandbox/stats", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.1)
        env["CRONLINK_SANDBOX_URL"] = url
        try:
            yield url
        finally:
            server.terminate()


def _mint(url: str, user: str) -> str:
    asked = urllib.request.Request(
        f"{url}/sandbox/grants", data=json.dumps({"user": user}).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(asked, timeout=5) as answer:
        body: bytes = answer.read()
    return body.decode()


def test_refresh_all_refreshes_each_active_connection_and_names_those_that_failed(
    tmp_path: Path, env: dict[str, str], sandbox: str
) -> None:
    add = [*CLI, "connections", "add", "--provider", "sandbox", "--tokens", "-", "--owner"]
    for owner in ("ana", "ben", "chen"):
        tokens = _mint(sandbox, owner)
        if owner == "chen":  # a refresh token the provider never issued
            tokens = json.dumps({**json.loads(tokens), "refresh_token": "rt_unknown"})
        added = subprocess.run([*add, owner], cwd=tmp_path, env=env, input=tokens,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert added.returncode == 0, added.stderr
    code, out, drawn = _on_a_terminal([*CLI, "connections", "refresh", "--all"], tmp_path, env)
    assert code == 1, (out, drawn.decode(errors="replace")[-2000:])
    assert b"refreshing connections" in drawn
    assert out.splitlines()[0] == "refreshed 2 of 3 active connections"
    assert "connection 3: " in out
    assert "invalid_grant" in out
    listed = _piped([*CLI, "connections", "list", "--json"], tmp_path, env)
    states = {c["owner"]: c["state"] for c in json.loads(listed.stdout)}
    assert states == {"ana": "active", "ben": "active", "chen": "needs_reauth"}
    again = _piped([*CLI, "connections", "refresh", "--all", "--json"], tmp_path, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r["refreshed"] for r in json.loads(again.stdout)] == [True, True]
    assert "\x1b" not in again.stderr


def test_an_import_of_many_jobs_counts_them_on_a_terminal(
    tmp_path: Path, env: dict[str, str]
) -> None:
    crons = [f'"{minute} {hour} * * *"' for hour in range(24) for minute in range(60)]
    (tmp_path / "wrangler.toml").write_text(
        f'name = "many"\n[triggers]\ncrons = [{", ".join(crons)}]\n'
    )
    command = [*CLI, "import", "wrangler.toml", "--app-url", "https://app.example.com",
               "--output", "imported.toml"]  # fmt: skip
    code, out, drawn = _on_a_terminal(command, tmp_path, env)
    assert code == 0, out
    assert out.startswith("added 1,440 jobs to imported.toml: ")
    assert b"importing wrangler.toml" in drawn
    assert b"1440" in drawn.replace(b",", b"")
