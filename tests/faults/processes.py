"""Real `cronlink` role processes for the fault tests, their output kept in files, and the
store the test watches them through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cronlink.store import Store, store_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Role:
    """One `cronlink` process (`scheduler`, `worker --tier light` …), restartable."""

    args: tuple[str, ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = self.cwd / f"{'-'.join(self.args)}-{id(self)}-{self.starts}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cronlink", *self.args],
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, wait for a graceful exit; its exit code (None if it was already gone)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise
        return self.process.returncode

    def output(self) -> str:
        logs = sorted(self.cwd.glob(f"{'-'.join(self.args)}-{id(self)}-*.log"))
        return "\n".join(log.read_text(errors="replace") for log in logs)


class Roles:
    """Every role a test starts, made here so that each is stopped when the test ends,
    however it ends (the `roles` fixture)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.made: list[Role] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Role:
        role = Role(args, self.cwd, env or {})
        self.made.append(role)
        return role

    def stop_all(self) -> None:
        for role in self.made:
            if role.alive():
                role.kill()


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    """A store closed even when the test fails (an open pool would hang the loop's exit)."""
    store = store_for(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
