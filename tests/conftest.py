from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cronlink.store import Store, store_for


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cronlink.db'}"


@pytest.fixture
async def sqlite_store(db_url: str) -> AsyncIterator[Store]:
    opened = store_for(db_url)
    await opened.open()
    yield opened
    await opened.close()
