"""A PostgreSQL schema per test, on the server this machine runs (or CRONLINK_TEST_POSTGRES).

Missing PostgreSQL skips those tests with one loud line, except in CI (`CI=true`), where it
fails them: the PostgreSQL tests must run there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

BASE_URL = os.environ.get("CRONLINK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A database URL whose tables land in a new, empty schema, dropped afterwards."""
    try:
        admin = psycopg.connect(BASE_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        message = f"PostgreSQL is not reachable at {BASE_URL}: {error}".strip()
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{BASE_URL}?options=-csearch_path%3D{schema}"
    finally:
        # A connection of its own: the test may have restarted the server meanwhile.
        with psycopg.connect(BASE_URL, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
