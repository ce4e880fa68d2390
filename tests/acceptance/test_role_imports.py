"""Each role loads only what it runs: no web stack, interop, sandbox or alert channels in a
role that does not use them. Read from the real command's own import log (`-X importtime`),
up to the line that says the roles are running."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cronlink.store import migrate

WEB_STACK = {"fastapi", "starlette", "uvicorn", "jinja2", "cronlink.web.app"}
"""What only a role that serves uses: the HTTP service, its dashboard and API."""
UNUSED = {"cronlink.interop", "cronlink.sandbox", "cronlink.demo", "apprise", "alembic"}
"""What no role uses here: import/export, the sandbox provider, the demo, alert channels
(no [alerts]) and migrations (the database is at head)."""
OAUTH = {"authlib", "cryptography", "cronlink.connections.service"}
"""The connection domain: a role without [connections] has no use for it (the HTTP
service's connection routes still load it)."""
TOML = (
    'database_url = "sqlite:///{db}"\n'
    '[[jobs]]\nname = "nightly"\nhandler = "cronlink.examples:heartbeat"\n'
    'schedule = "0 3 * * *"\n'
)


def loaded(*args: str, cwd: Path) -> set[str]:
    """The modules `cronlink ARGS` imported by the time its roles run (then it is stopped)."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "cronlink", *args],
        cwd=cwd,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "CRONLINK_PORT": "0", "CRONLINK_LOG_FORMAT": "text"},
    )
    assert proc.stderr is not None
    modules: set[str] = set()
    try:
        for line in proc.stderr:
            if line.startswith("import time:"):
                modules.add(line.rpartition("|")[2].strip())
            elif "cronlink running" in line:
                break
        else:
            pytest.fail(f"cronlink {' '.join(args)} stopped before its roles ran")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    return modules


def within(modules: set[str], packages: set[str]) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(f"{p}.") for p in packages)}


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    """A folder with a cronlink.toml whose database is already at the newest schema."""
    (tmp_path / "cronlink.toml").write_text(TOML.format(db=tmp_path / "cronlink.db"))
    subprocess.run(
        [sys.executable, "-m", "cronlink", "db", "upgrade"], cwd=tmp_path, check=True,
        capture_output=True,
    )  # fmt: skip
    return tmp_path


@pytest.mark.parametrize(
    "role",
    [
        ("worker", "--tier", "light"),
        ("worker", "--tier", "heavy"),
        ("scheduler",),
        ("run", "--no-serve"),
    ],
    ids=lambda role: " ".join(role),
)
def test_a_role_that_serves_nothing_loads_no_web_stack(
    migrated: Path, role: tuple[str, ...]
) -> None:
    modules = loaded(*role, cwd=migrated)
    assert "cronlink.engine.worker" in modules or "cronlink.engine.scheduler" in modules
    assert within(modules, WEB_STACK | UNUSED | OAUTH) == set()


def test_run_loads_the_web_stack_and_nothing_it_does_not_use(migrated: Path) -> None:
    modules = loaded("run", cwd=migrated)
    assert modules >= WEB_STACK
    assert within(modules, UNUSED) == set()


def test_a_role_on_a_new_database_migrates_it_without_keeping_alembic(tmp_path: Path) -> None:
    # Alembic and the migrations cost a role ~13 MiB it would keep for good; they run in
    # a process of their own that ends when the schema is there.
    database = tmp_path / "cronlink.db"
    (tmp_path / "cronlink.toml").write_text(TOML.format(db=database))
    modules = loaded("worker", "--tier", "light", cwd=tmp_path)
    assert "cronlink.engine.worker" in modules
    assert within(modules, {"alembic"}) == set()
    with sqlite3.connect(database) as db:
        [(revision,)] = db.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision == migrate.head_revision()
