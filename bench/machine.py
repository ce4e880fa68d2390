"""What every benchmark's JSON says about where and how it ran, so that a figure on
docs/benchmarks.md always comes with its machine, its load and the command that made it."""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_PASSWORD = re.compile(r"(://[^:/@]+:)[^@/]+@")


def machine() -> dict[str, Any]:
    """Cores, CPU model, Python, and the load when the measurement began: a figure taken on
    a busy machine says so."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def command(argv: list[str] | None = None) -> str:
    """The command line that produced this result, as run from the repository's root."""
    args = list(sys.argv if argv is None else argv)
    script = Path(args[0])
    if script.suffix == ".py":
        args[0] = f"bench/{script.name}"
    # A database URL's password stays out of the JSON and the page.
    return shlex.join([".venv/bin/python", *(_PASSWORD.sub(r"\1***@", a) for a in args)])


def stamped(result: dict[str, Any]) -> dict[str, Any]:
    """`result` with the machine and command in front (a bench's own keys win)."""
    return {"machine": machine(), "command": command(), **result}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
