"""A PostgreSQL schema per test, on the server this machine runs (or CRONLINK_TEST_POSTGRES).

Where no server answers but the PostgreSQL binaries are installed, a throwaway server is
started in a temporary directory for the session. Where there is no PostgreSQL at all,
those tests skip with one loud line, except in CI (`CI=true`), where they fail: the
PostgreSQL tests must run there. A test that restarts its server starts one of its own
(`private_server`): the tests running beside it share the other.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    """A server of the session's own, stopped at exit."""
    started = _start_server()
    if started is None:
        return None
    url, stop = started
    atexit.register(stop)
    print(f"\nno PostgreSQL answered at {LOCAL_URL}: started a throwaway server at {url}")
    return url


@dataclass(frozen=True, slots=True)
class PrivateServer:
    """A server only one test uses, which it may restart."""

    url: str
    restart: Callable[[], None]


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    """A PostgreSQL server of the test's own (its `test` database), stopped afterwards: for
    a test that restarts the server, which would break the tests running beside it on the
    shared one."""
    started = _start_server()
    if started is None:
        message = "no PostgreSQL binaries (initdb, pg_ctl) to start a private server with"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    url, stop = started
    try:
        yield PrivateServer(url=url, restart=lambda: _pg_ctl(url, "restart"))
    finally:
        stop()


_CONTROL: dict[str, list[str]] = {}
"""The `pg_ctl -D … -o …` command of each server started here, by its URL."""


def _start_server() -> tuple[str, Callable[[], None]] | None:
    """initdb + pg_ctl in a temporary directory on a free port: its `test` database's URL,
    and how to stop it and remove the directory."""
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
    url = f"postgresql://postgres@127.0.0.1:{port}/test"
    _CONTROL[url] = [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log")]
    _pg_ctl(url, "start")
    with psycopg.connect(url.removesuffix("/test") + "/postgres", autocommit=True) as admin:
        admin.execute("CREATE DATABASE test")

    def stop() -> None:
        _pg_ctl(url, "stop", "-m", "immediate", check=False)
        shutil.rmtree(folder, ignore_errors=True)

    return url, stop


def _pg_ctl(url: str, action: str, *more: str, check: bool = True) -> None:
    subprocess.run([*_CONTROL[url], "-w", *more, action], check=check, capture_output=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
