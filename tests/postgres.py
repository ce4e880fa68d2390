"""A PostgreSQL schema per test, on the server this machine runs (or CRONLINK_TEST_POSTGRES).

Where no server answers but the PostgreSQL binaries are installed, a throwaway server is
started in a temporary directory for the session. Where there is no PostgreSQL at all,
those tests skip with one loud line, except in CI (`CI=true`), where they fail: the
PostgreSQL tests must run there.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
import pytest

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"


@cache
def base_url() -> str:
    """The server the PostgreSQL tests use, started here if need be."""
    chosen = os.environ.get("CRONLINK_TEST_POSTGRES")
    if chosen or _answers(LOCAL_URL) or os.environ.get("CI") == "true":
        return chosen or LOCAL_URL
    return _throwaway_server() or LOCAL_URL


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A database URL whose tables land in a new, empty schema, dropped afterwards."""
    url = base_url()
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        message = f"PostgreSQL is not reachable at {url}: {error}".strip()
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        # A connection of its own: the test may have restarted the server meanwhile.
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def _throwaway_server() -> str | None:
    """initdb + pg_ctl in a temporary directory on a free port, stopped at exit."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    pg_ctl = str(found[-1]) if found else shutil.which("pg_ctl")
    if pg_ctl is None:
        return None
    binaries = Path(pg_ctl).parent
    folder = Path(tempfile.mkdtemp(prefix="cronlink-pg-"))
    # PostgreSQL refuses to run as root: run it as the `postgres` account when we are root.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    subprocess.run(
        [*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
    start = [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w"]
    subprocess.run([*start, "start"], check=True, capture_output=True)
    atexit.register(_stop, [*as_user, pg_ctl, "-D", str(data), "-m", "immediate"], folder)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE test")
    print(f"\nno PostgreSQL answered at {LOCAL_URL}: started a throwaway server on port {port}")
    return f"postgresql://postgres@127.0.0.1:{port}/test"


def _stop(stop: list[str], folder: Path) -> None:
    subprocess.run([*stop, "stop"], check=False, capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
