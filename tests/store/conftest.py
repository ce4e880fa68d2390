from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cronlink.store import Store, store_for
from tests.postgres import fresh_schema


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened = store_for(f"sqlite:///{tmp_path / 'cronlink.db'}")
        await opened.open()
        yield opened
        await opened.close()
        return
    with fresh_schema() as url:
        opened = store_for(url)
        await opened.open()
        yield opened
        await opened.close()
