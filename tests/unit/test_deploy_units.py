"""docs/deploy.md holds what it says: units systemd accepts, commands cronlink accepts,
and sizing figures that are the benchmarks' own.

Each ```ini block of the guide is a systemd unit whose first line names its file
(`# /etc/systemd/system/NAME.service`). `systemd-analyze verify` checks each, with
ExecStart pointing at the cronlink installed beside these tests (verify requires the
program to exist; the guide's /srv/cronlink/.venv is that same program on a server).
Where systemd-analyze is missing the check skips, except in CI (`CI=true`), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cronlink.cli import cli

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deploy.md"
DOCUMENTED = "/srv/cronlink/.venv/bin/cronlink"
INSTALLED = Path(sys.executable).parent / "cronlink"
NAMED = re.compile(r"# /etc/systemd/system/(?P<name>[\w@.-]+\.service)\n")


def _units() -> dict[str, str]:
    blocks = re.findall(r"^```ini\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), re.S | re.M)
    units = {}
    for block in blocks:
        named = NAMED.match(block)
        assert named, f"an ini block of docs/deploy.md does not name its unit:\n{block}"
        units[named["name"]] = block
    assert len(units) == len(blocks), "two blocks name the same unit"
    return units


UNITS = _units()


def test_the_guide_has_its_units() -> None:
    assert {"cronlink.service", "cronlink-scheduler.service"} <= UNITS.keys()
    assert any("--tier heavy" in unit for unit in UNITS.values())


@pytest.mark.parametrize("name", UNITS)
def test_comments_stand_on_lines_of_their_own(name: str) -> None:
    # systemd takes "90   # note" as the value itself, and verify lets some such pass.
    settings = [line for line in UNITS[name].splitlines() if "=" in line and line[0] not in "#;"]
    assert settings
    assert [line for line in settings if re.search(r"\s[#;]", line)] == []


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not os.access(found, os.X_OK):
        message = "systemd-analyze is missing (Debian's systemd package): units not verified"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.parametrize("name", UNITS)
def test_systemd_accepts_the_unit(name: str, tmp_path: Path) -> None:
    assert INSTALLED.is_file()
    unit = tmp_path / name
    unit.write_text(UNITS[name].replace(DOCUMENTED, str(INSTALLED)), encoding="utf-8")
    verified = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", "--recursive-errors=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # A setting systemd ignores is only a line of output, with exit status 0.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def _parse(args: list[str]) -> None:
    """Parse `cronlink ARGS` as the command line would, without running it."""
    command: click.Command = cli
    parent = click.Context(cli, info_name="cronlink")
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        found = command.get_command(parent, args[0])
        assert found is not None, args[0]
        command, args = found, args[1:]
        parent = click.Context(command, info_name=command.name, parent=parent)
    # Options and their values are parsed and converted: a wrong one raises a UsageError.
    command.make_context(command.name, args, parent=parent.parent)


@pytest.mark.parametrize("name", UNITS)
def test_cronlink_accepts_the_command(name: str) -> None:
    started = re.findall(r"^ExecStart=(.*)$", UNITS[name], re.M)
    assert len(started) == 1
    program, *args = shlex.split(started[0])
    assert program == DOCUMENTED
    _parse(args)


def test_cronlink_accepts_the_kubernetes_commands() -> None:
    given = re.findall(r"^\s+args: (\[.*\])", GUIDE.read_text(encoding="utf-8"), re.M)
    assert len(given) >= 3
    for args in given:
        _parse(json.loads(args))


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_sizing_figures_are_those_of_the_benchmarks() -> None:
    measured = (ROOT / "README.md").read_text(encoding="utf-8")
    page = ROOT / "docs" / "benchmarks.md"
    if page.exists():
        measured += page.read_text(encoding="utf-8")
    sizing = _section(GUIDE.read_text(encoding="utf-8"), "Sizing")
    figures = {f.rstrip(",.") for f in re.findall(r"(?<![\w.])\d[\d,.]*", sizing)}
    # Small whole numbers are counts (cores, processes, connections), not measurements.
    checked = {f for f in figures if not (f.isdigit() and int(f) <= 16)}
    missing = {
        figure
        for figure in checked
        if not re.search(rf"(?<![\d.,]){re.escape(figure)}(?![\d]|[.,]\d)", measured)
    }
    assert missing == set(), "figures of docs/deploy.md's sizing found in no benchmark"
