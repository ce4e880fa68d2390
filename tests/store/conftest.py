from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cronlink.store import Store, store_for


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = store_for(f"sqlite:///{tmp_path / 'cronlink.db'}")
    await opened.open()
    yield opened
    await opened.close()
