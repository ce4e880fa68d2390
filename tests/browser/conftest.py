"""Real Chromium for the browser tests: Debian's `/usr/bin/chromium`, installed with
apt-get when missing (Playwright never downloads a browser). When it cannot be installed
the tests fail, naming why: they never skip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_TIMEOUT = 900
"""Seconds for apt-get; the test that pays for the installation may take that long."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    first = next((i for i in items if "chromium" in getattr(i, "fixturenames", ())), None)
    if first is not None:
        first.add_marker(pytest.mark.timeout(INSTALL_TIMEOUT + 120))


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Chromium, installed from Debian's packages if need be."""
    if not CHROMIUM.exists():
        _install()
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing after `apt-get install chromium`")
    return str(CHROMIUM)


def _install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            # Waits for another apt-get (a package install elsewhere on the machine) rather
            # than failing on its lock.
            command = ["apt-get", "-o", f"DPkg::Lock::Timeout={INSTALL_TIMEOUT // 2}", *args]
            return subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            pytest.fail(f"Chromium is not installed and apt-get could not run: {error}")

    installed = apt("install", "-y", "chromium")
    if installed.returncode != 0:  # the package lists may be missing or stale
        apt("update")
        installed = apt("install", "-y", "chromium")
    if installed.returncode != 0:
        pytest.fail(
            "Chromium is not installed and `apt-get install -y chromium` failed (the browser "
            f"tests need it; run as root or install it first):\n{installed.stderr[-2000:]}"
        )
