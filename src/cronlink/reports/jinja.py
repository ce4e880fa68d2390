"""Jinja2 for templates that are user data: sandboxed, strict, and errors that name the line.

The sandbox refuses `__class__` and the like (the way out of a template into Python), and
bounds `range`; `StrictUndefined` makes a misspelt name an error naming it, never an empty
string in a report someone reads. Autoescape is on for HTML reports only: a Markdown or
CSV report escaped for HTML would be wrong.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from cronlink.errors import ConfigError

if TYPE_CHECKING:
    from types import TracebackType

    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

SOURCE = "<template>"
"""The file name Jinja2 gives a template made from text, which its traceback frames carry."""


@cache
def environment(autoescape: bool) -> SandboxedEnvironment:
    # Imported here: Jinja2 loads only in a process that renders a report (or serves).
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
    )


def compiled(source: str, *, autoescape: bool, where: str = "") -> Template:
    """`source` compiled; `ConfigError` naming `where` and the line when it does not."""
    # Imported here: as in `environment`.
    from jinja2 import TemplateSyntaxError

    try:
        return environment(autoescape).from_string(source)
    except TemplateSyntaxError as error:
        raise ConfigError(f"{_at(where)}line {error.lineno}: {error.message}") from None


def rendered(template: Template, values: dict[str, Any], where: str) -> str:
    """`template`'s output; `ConfigError` naming `where` and the template's line when a
    name is missing, an attribute is refused, or a filter fails."""
    # Imported here: as in `environment`.
    from jinja2 import TemplateError

    try:
        return template.render(values)
    except TemplateError as error:
        line = _line(error.__traceback__)
        at = f"line {line}: " if line else ""
        raise ConfigError(f"{_at(where)}{at}{error.message or type(error).__name__}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:
        line = _line(error.__traceback__)
        at = f"line {line}: " if line else ""
        raise ConfigError(f"{_at(where)}{at}{type(error).__name__}: {error}") from None


def _line(trace: TracebackType | None) -> int | None:
    """The template line the error was raised at: Jinja2 rewrites its frames to carry it."""
    line = None
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == SOURCE:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def _at(where: str) -> str:
    return f"{where}: " if where else ""
