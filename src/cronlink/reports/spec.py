"""A report as data: where its template is, which format it renders to, where it goes.

The same model is the `report` step's TOML and the options of the Python helper, so a
report reads the same in both. Everything that can be checked without running is checked
here: the format, one template source, inline templates that compile (naming the line),
one kind per destination, apprise URLs apprise can read.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cronlink.errors import ConfigError
from cronlink.reports.jinja import compiled

Format = Literal["markdown", "html", "csv", "json"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class HttpDelivery(_Strict):
    url: str
    """A full URL; `${NAME}` is read from the environment when sending."""
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str] = {}
    """`${NAME}` in a value is read from the environment (`Authorization = "Bearer ${T}"`)."""


class Delivery(_Strict):
    """One destination: exactly one of `apprise`, `http` or `file`."""

    apprise: str | None = None
    """An apprise URL, as alerts use (mail, Slack, Teams, `json://` webhooks…)."""
    attach: bool = False
    """apprise only: send the report as an attached file too, not only as the body."""
    http: HttpDelivery | None = None
    file: str | None = None
    """A path (a Jinja2 template: `reports/{{ now.date() }}.md`); relative to the
    directory of cronlink.toml."""

    @field_validator("apprise")
    @classmethod
    def _apprise(cls, value: str | None) -> str | None:
        # Imported here: apprise loads its ~100 plugins, which only a report using it needs.
        from cronlink.observe.notify import url_problem

        problem = url_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.strip():
                raise ValueError("an empty path")
            _compiles(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Delivery:
        kinds = [k for k in ("apprise", "http", "file") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of 'apprise', 'http' or 'file'"
                + (f" (this one has {' and '.join(kinds)})" if kinds else "")
            )
        if self.attach and self.apprise is None:
            raise ValueError("'attach' goes with 'apprise' only")
        return self


class ReportSpec(_Strict):
    """What to render and where to deliver it."""

    format: Format
    template: str | None = None
    """Jinja2 text; its output is the report, whatever the format."""
    template_file: str | None = None
    """A Jinja2 file, relative to the directory of cronlink.toml (or absolute)."""
    title: str = "Report"
    """A Jinja2 template: the message's subject, the attachment's name."""
    rows: str | None = None
    """`{steps.fetch.records}`: a list of dicts; without a template, the CSV's rows."""
    data: str | None = None
    """`{steps.summary}`: any value; without a template, the JSON's content."""
    deliver: list[Delivery] = Field(default=[], max_length=20)

    @field_validator("template", "title")
    @classmethod
    def _templates(cls, value: str | None) -> str | None:
        if value is not None:
            _compiles(value)
        return value

    @model_validator(mode="after")
    def _source(self) -> ReportSpec:
        if self.template is not None and self.template_file is not None:
            raise ValueError("give 'template' or 'template_file', not both")
        if self.template is None and self.template_file is None:
            shortcut = {"csv": "rows", "json": "data"}.get(self.format)
            if shortcut is None:
                raise ValueError(f"a {self.format} report needs 'template' or 'template_file'")
            if getattr(self, shortcut) is None:
                raise ValueError(
                    f"a {self.format} report needs 'template', 'template_file' or {shortcut!r}"
                )
        return self


def _compiles(source: str) -> None:
    """Pydantic names the key of a `ValueError` (not of cronlink's own errors)."""
    try:
        compiled(source, autoescape=False)
    except ConfigError as error:
        raise ValueError(str(error)) from None
