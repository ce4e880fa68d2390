from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.processes import Roles


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[Roles]:
    """Makes the test's `cronlink` role processes; kills what is left of them after it."""
    made = Roles(tmp_path)
    try:
        yield made
    finally:
        made.stop_all()
