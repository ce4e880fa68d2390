from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cronlink.egress import ALLOW_PRIVATE_ENV, PRIVATE_NETWORKS_ENV
from cronlink.store import Store, store_for
from tests import leftovers
from tests.postgres import fresh_schema

# The tests' peers (the sandbox, their own servers) listen on 127.0.0.1: settings read from
# the environment, in this process and in the commands it starts, reach that and no other
# private address. Tests of the default (public only) take these variables away.
os.environ[PRIVATE_NETWORKS_ENV] = "127.0.0.0/8"
os.environ.pop(ALLOW_PRIVATE_ENV, None)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cronlink.db'}"


@pytest.fixture
async def sqlite_store(db_url: str) -> AsyncIterator[Store]:
    opened = store_for(db_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database on each engine: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cronlink.db'}"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
async def any_store(any_url: str) -> AsyncIterator[Store]:
    opened = store_for(any_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(autouse=True, scope="session")
def _no_process_outlives_the_session() -> Iterator[None]:
    with leftovers.owned("the test session"):
        yield


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    with leftovers.owned(request.node.nodeid):
        yield
