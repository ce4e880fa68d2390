"""Rendering a report: the title and the body from a template, or a CSV or JSON file
straight from data, into a `Report` that knows its file extension and content type.

A template sees what it is given (a step gives `event`, `steps`, `params` and `now`) plus
`rows` and `data` when the report names them, and `title` once rendered. Its output is the
report in any format; a JSON report's output must parse as JSON. Without a template a
CSV report writes `rows` (a list of dicts: the header is every key in the order first
seen, a missing value an empty cell, a nested one JSON) and a JSON report dumps `data`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cronlink.automations.template import render as fill
from cronlink.errors import ConfigError
from cronlink.reports.jinja import compiled, rendered
from cronlink.reports.spec import ReportSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cronlink.reports.spec import Format

EXCERPT_CHARS = 2000
MAX_BYTES = 20 * 1024 * 1024
"""A report larger than this is refused: it would not fit a message, nor a run record's
neighbourhood, and is more likely a template looping wrongly than a report to read."""
CONTENT_TYPES = {
    "markdown": ("md", "text/markdown; charset=utf-8"),
    "html": ("html", "text/html; charset=utf-8"),
    "csv": ("csv", "text/csv; charset=utf-8"),
    "json": ("json", "application/json"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """A rendered report."""

    format: Format
    title: str
    body: str

    @property
    def content(self) -> bytes:
        return self.body.encode()

    @property
    def extension(self) -> str:
        return CONTENT_TYPES[self.format][0]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format][1]

    def summary(self, delivered: list[str]) -> dict[str, Any]:
        """What a step keeps of the report: its size and digest, the start of it, and
        where it went (each destination redacted) — never a large body."""
        content = self.content
        return {
            "format": self.format, "title": self.title, "bytes": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "excerpt": self.body[:EXCERPT_CHARS], "delivered": delivered,
        }  # fmt: skip


def spec_of(options: ReportSpec | Mapping[str, Any]) -> ReportSpec:
    """`options` checked (a dict with the keys of a `report` step); `ConfigError` names
    the key."""
    if isinstance(options, ReportSpec):
        return options
    try:
        return ReportSpec.model_validate(dict(options))
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"report{'.' + key if key else ''}: {message}") from None


def render(
    options: ReportSpec | Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    *,
    base: Path | None = None,
    where: str = "report",
) -> Report:
    """The report `options` describe, from `values` (the template's names; `now` is the
    current time unless given). `template_file` is read relative to `base` (default: the
    working directory). `ConfigError`, naming `where` and the template's line, for a
    report that cannot be rendered."""
    spec = spec_of(options)
    names: dict[str, Any] = {"now": datetime.now(UTC), **(values or {})}
    if spec.rows is not None:
        names["rows"] = _rows(fill(spec.rows, names, f"{where}: rows"), f"{where}: rows")
    if spec.data is not None:
        names["data"] = fill(spec.data, names, f"{where}: data")
    title = compiled(spec.title, autoescape=False, where=f"{where}: title")
    names["title"] = rendered(title, names, f"{where}: title").strip()
    body = _body(spec, names, where, base or Path())
    if len(body.encode()) > MAX_BYTES:
        raise ConfigError(f"{where}: the report is over {MAX_BYTES // (1024 * 1024)} MiB")
    return Report(format=spec.format, title=names["title"], body=body)


def _body(spec: ReportSpec, names: dict[str, Any], where: str, base: Path) -> str:
    source, label = spec.template, f"{where}: template"
    if spec.template_file is not None:
        path = base / spec.template_file
        label = f"{where}: template_file {path}"
        try:
            source = path.read_text()
        except (OSError, UnicodeError) as error:
            raise ConfigError(f"{label}: cannot be read ({type(error).__name__})") from None
    if source is None:
        if spec.format == "csv":
            return csv_text(names["rows"])
        return json.dumps(names["data"], indent=2, ensure_ascii=False, default=str) + "\n"
    text = rendered(compiled(source, autoescape=spec.format == "html", where=label), names, label)
    if spec.format == "json":
        try:
            json.loads(text)
        except ValueError as error:
            raise ConfigError(f"{label}: the output is not JSON: {error}") from None
    return text


def csv_text(rows: list[dict[str, Any]]) -> str:
    """`rows` as CSV (RFC 4180: quoted as needed, CRLF line ends): a header of every key
    in the order first seen, an empty cell where a row has no value."""
    header: dict[str, None] = {}
    for row in rows:
        header.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(key)) for key in header])
    return out.getvalue()


def _rows(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: a {type(value).__name__}, not a list of rows")
    for index, row in enumerate(value):
        if not isinstance(row, dict):
            raise ConfigError(
                f"{where}: row {index} is a {type(row).__name__}, not a dict of columns"
            )
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
