"""What users read speaks about cronlink, not about how it was made.

README.md, docs/*.md, every command's `--help` and the strings the command line prints
must not mention issue numbers, work sessions, "the seed", the first plan, features
promised for later, or dates of when things were done (a date in a code span or block is
an example, and allowed). CHANGELOG.md keeps its release dates but no issue numbers or
work sessions. The README's statement of which commands take `--database-url`,
`--config` and `--app` is checked against the commands themselves.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cronlink.cli import cli

ROOT = Path(__file__).resolve().parents[2]
CLI_SOURCES = ROOT / "src" / "cronlink" / "cli"

WORK_TALK = {
    "an issue number": r"\bissues? #?\d+",
    "a work session": r"\b\d+(?:st|nd|rd|th) session\b|\bsession (?:of|on) \d|\bsessions? \d+\b",
    "the seed": r"\bseed(?:'s)?\b",
    "arriving with": r"\barriving with\b",
    "the first plan": r"\bfirst plan\b",
    "a decision matrix": r"\bdecision matrix\b",
    "a promise of later": r"\b(?:and|comes?|coming|arrives?|added) later\b|\bin a later \w+",
    "we or our": r"\b(?:we|our)\b",
    "a note to self": r"\b(?:TODO|FIXME|XXX)\b",
}
DATE = r"\b\d{4}-\d{2}-\d{2}\b"
"""A date in prose says when something was done: users need what cronlink does."""

CODE = re.compile(r"```.*?```|`[^`]*`", re.DOTALL)
"""Code blocks and spans: examples (an instant, a sandbox switch named `seed`), not prose."""


def _prose(text: str) -> str:
    """`text` with its code blanked out, line numbers kept."""
    return CODE.sub(lambda match: re.sub(r"[^\n]", " ", match.group()), text)


def _offences(text: str, patterns: dict[str, str]) -> list[str]:
    found = []
    for line_no, line in enumerate(_prose(text).splitlines(), start=1):
        for what, pattern in patterns.items():
            for match in re.finditer(pattern, line, re.IGNORECASE):
                found.append(f"line {line_no}: {what} ({match.group()!r}): {line.strip()}")
    return found


def _user_docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", _user_docs(), ids=lambda path: path.name)
def test_docs_speak_about_cronlink(path: Path) -> None:
    patterns = dict(WORK_TALK)
    if path.name != "benchmarks.md":  # measurements are dated: machines differ over time
        patterns["a date"] = DATE
    assert _offences(path.read_text(encoding="utf-8"), patterns) == []


def test_changelog_names_no_issue_or_session() -> None:
    patterns = {what: WORK_TALK[what] for what in ("an issue number", "a work session", "the seed")}
    assert _offences((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), patterns) == []


def test_the_check_finds_what_it_looks_for() -> None:
    text = (
        "PostgreSQL (arriving with its issue 7), per the seed's decision matrix, measured in\n"
        "the 7th session of 2026-11-29; the HTTP service comes later. `seed` is a switch.\n"
    )
    found = " ".join(_offences(text, {**WORK_TALK, "a date": DATE}))
    for what in ("issue number", "work session", "the seed", "arriving", "decision matrix",
                 "later", "a date"):  # fmt: skip
        assert what in found
    assert "line 2: the seed" not in found


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            assert sub is not None, name
            yield from _commands(sub, (*path, name))


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None, name
        command = found
    return command


COMMANDS = list(_commands(cli))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "cronlink")
def test_help_renders_and_speaks_about_cronlink(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    assert _offences(result.output, {**WORK_TALK, "a date": DATE}) == []


def _strings(source: Path) -> Iterator[tuple[int, str]]:
    """The string literals of a module but its docstring (a command's is its help)."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree, clean=False)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value != docstring
        ):
            yield node.lineno, node.value


@pytest.mark.parametrize("source", sorted(CLI_SOURCES.glob("*.py")), ids=lambda path: path.name)
def test_command_line_output_speaks_about_cronlink(source: Path) -> None:
    found = [
        f"line {line_no}: {offence}"
        for line_no, text in _strings(source)
        for offence in _offences(text, {**WORK_TALK, "a date": DATE})
    ]
    assert found == []


def _readme_commands(after: str, until: str) -> set[str]:
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    start = text.index(after) + len(after)
    named = re.findall(r"`([^`]+)`", text[start : text.index(until, start)])
    return {name for name in named if not name.startswith("-")}


def test_readme_says_which_commands_take_the_database_config_and_app() -> None:
    three = {"--database-url", "--config", "--app"}
    without = _readme_commands("These take none of the three:", "; and")
    alone = _readme_commands("; and", "takes `--database-url` alone")
    assert without
    assert alone
    assert without | alone <= {" ".join(path) for path in COMMANDS}
    for path in COMMANDS:
        command = _command(path)
        if isinstance(command, click.Group):
            continue
        taken = three & {flag for param in command.params for flag in param.opts}
        name = " ".join(path)
        if name in without:
            assert taken == set(), name
        elif name in alone:
            assert taken == {"--database-url"}, name
        else:
            assert taken == three, name
