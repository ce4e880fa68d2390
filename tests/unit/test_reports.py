"""Rendering reports: each format, CSV that survives commas, quotes and line breaks, JSON
that must be JSON, templates that are strict (a misspelt name is named, with its line)
and sandboxed (no way from a template into Python), and steps refused when added, naming
the step and the key."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cronlink.automations.steps import parse_steps
from cronlink.errors import ConfigError
from cronlink.reports import render
from cronlink.reports.delivery import shown

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
VALUES: dict[str, Any] = {
    "event": {"subject": "Q1 <numbers> & more", "id": 7},
    "steps": {"summary": "Sales are up.", "fetch": {"records": []}},
    "params": {"team": "sales"},
    "now": NOW,
}


def test_a_markdown_report_sees_event_steps_params_now_and_its_title() -> None:
    report = render(
        {
            "format": "markdown", "title": "{{ params.team | title }} on {{ now.date() }}",
            "template": "# {{ title }}\n\n{{ event.subject }}: {{ steps.summary }}\n",
        },
        VALUES,
    )  # fmt: skip
    assert report.title == "Sales on 2026-03-01"
    assert report.body == "# Sales on 2026-03-01\n\nQ1 <numbers> & more: Sales are up.\n"
    assert (report.extension, report.content_type) == ("md", "text/markdown; charset=utf-8")


def test_an_html_report_escapes_what_it_is_given_and_markdown_does_not() -> None:
    template = "<h1>{{ event.subject }}</h1>"
    html = render({"format": "html", "template": template}, VALUES)
    assert html.body == "<h1>Q1 &lt;numbers&gt; &amp; more</h1>"
    assert html.content_type == "text/html; charset=utf-8"
    markdown = render({"format": "markdown", "template": template}, VALUES)
    assert markdown.body == "<h1>Q1 <numbers> & more</h1>"


def test_a_csv_report_from_rows_quotes_commas_quotes_and_line_breaks() -> None:
    rows = [
        {"id": 1, "name": "Smith, Jane", "note": 'said "hi"'},
        {"id": 2, "note": "two\nlines", "extra": {"a": [1, 2]}, "vip": True},
        {"id": 3, "name": None, "when": NOW},
    ]
    report = render({"format": "csv", "rows": "{steps.fetch.records}"},
                    {**VALUES, "steps": {"fetch": {"records": rows}}})  # fmt: skip
    assert report.body.startswith('id,name,note,extra,vip,when\r\n1,"Smith, Jane",')
    assert list(csv.reader(io.StringIO(report.body, newline=""))) == [
        ["id", "name", "note", "extra", "vip", "when"],
        ["1", "Smith, Jane", 'said "hi"', "", "", ""],
        ["2", "", "two\nlines", '{"a": [1, 2]}', "true", ""],
        ["3", "", "", "", "", "2026-03-01T09:30:00+00:00"],
    ]
    assert (report.extension, report.content_type) == ("csv", "text/csv; charset=utf-8")


def test_csv_rows_that_are_not_a_list_of_dicts_are_refused_naming_the_row() -> None:
    with pytest.raises(ConfigError, match=r"^report: rows: row 1 is a str, not a dict"):
        render({"format": "csv", "rows": "{rows}"}, {"rows": [{"a": 1}, "b"]})
    with pytest.raises(ConfigError, match=r"^report: rows: a dict, not a list of rows"):
        render({"format": "csv", "rows": "{rows}"}, {"rows": {"a": 1}})


def test_a_csv_template_writes_what_it_renders() -> None:
    report = render(
        {"format": "csv", "rows": "{rows}",
         "template": "n\n{% for row in rows %}{{ row.n * 2 }}\n{% endfor %}"},
        {"rows": [{"n": 1}, {"n": 2}]},
    )  # fmt: skip
    assert report.body == "n\n2\n4\n"


def test_a_json_report_dumps_data_or_renders_a_template_that_must_be_json() -> None:
    data = render({"format": "json", "data": "{steps.fetch}"}, VALUES)
    assert json.loads(data.body) == {"records": []}
    assert data.content_type == "application/json"
    made = render({"format": "json", "template": '{"n": {{ event.id }}}'}, VALUES)
    assert json.loads(made.body) == {"n": 7}
    with pytest.raises(ConfigError, match=r"^report: template: the output is not JSON: "):
        render({"format": "json", "template": "{{ event.subject }}"}, VALUES)


def test_a_misspelt_name_is_named_with_its_line_and_where_it_was_written() -> None:
    template = "# Report\n\n{{ event.subject }}\n{{ steps.sumary }}\n"
    with pytest.raises(ConfigError) as raised:
        render({"format": "markdown", "template": template}, VALUES, where="step weekly")
    assert str(raised.value) == (
        "step weekly: template: line 4: 'dict object' has no attribute 'sumary'"
    )
    with pytest.raises(ConfigError, match=r"^report: title: line 1: 'nme' is undefined$"):
        render({"format": "markdown", "template": "x", "title": "{{ nme }}"}, VALUES)


@pytest.mark.parametrize(
    "template",
    [
        "{{ event.subject.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ now.__class__.__init__.__globals__ }}",
    ],
)
def test_the_sandbox_refuses_a_way_from_the_template_into_python(template: str) -> None:
    with pytest.raises(ConfigError, match=r"line 1: access to attribute '__\w+__' .* is unsafe"):
        render({"format": "markdown", "template": template}, VALUES)


def test_a_template_file_is_read_relative_to_the_base_folder(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "weekly.md").write_text("Hello {{ params.team }}\n{{ x }}")
    options = {"format": "markdown", "template_file": "templates/weekly.md"}
    with pytest.raises(ConfigError) as raised:
        render(options, VALUES, base=tmp_path)
    assert str(raised.value) == (
        f"report: template_file {tmp_path}/templates/weekly.md: line 2: 'x' is undefined"
    )
    gone = {"format": "markdown", "template_file": "templates/gone.md"}
    with pytest.raises(ConfigError, match=r"templates/gone.md: cannot be read \(FileNotFound"):
        render(gone, VALUES, base=tmp_path)
    (tmp_path / "templates" / "weekly.md").write_text("Hello {{ params.team }}")
    assert render(options, VALUES, base=tmp_path).body == "Hello sales"


def test_the_summary_holds_the_size_digest_and_a_bounded_excerpt() -> None:
    report = render({"format": "json", "data": "{rows}"}, {"rows": ["é" * 10] * 500})
    summary = report.summary(["file /tmp/x.json"])
    content = report.body.encode()
    assert summary == {
        "format": "json", "title": "Report", "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(), "excerpt": report.body[:2000],
        "delivered": ["file /tmp/x.json"],
    }  # fmt: skip
    assert len(report.body) > 2000


def step(**report: Any) -> list[dict[str, Any]]:
    return [{"name": "weekly", "report": report}]


@pytest.mark.parametrize(
    ("report", "problem"),
    [
        ({"format": "pdf", "template": "x"},
         "steps[0] (weekly).report.format: Input should be 'markdown', 'html', 'csv' or 'json'"),
        ({"format": "markdown"},
         "steps[0] (weekly).report: a markdown report needs 'template' or 'template_file'"),
        ({"format": "csv"},
         "steps[0] (weekly).report: a csv report needs 'template', 'template_file' or 'rows'"),
        ({"format": "html", "template": "x", "template_file": "x.html"},
         "steps[0] (weekly).report: give 'template' or 'template_file', not both"),
        ({"format": "markdown", "template": "# Hi\n{% for x in %}"},
         "steps[0] (weekly).report.template: line 2: Expected an expression"),
        ({"format": "markdown", "template": "x", "title": "{{ a"},
         "steps[0] (weekly).report.title: line 1: unexpected end of template"),
        ({"format": "markdown", "template": "x", "deliver": [{"file": "a.md"}, {}]},
         "steps[0] (weekly).report.deliver.1: give exactly one of 'apprise', 'http' or 'file'"),
        ({"format": "markdown", "template": "x",
          "deliver": [{"file": "a.md", "http": {"url": "http://127.0.0.1/"}}]},
         "steps[0] (weekly).report.deliver.0: give exactly one of 'apprise', 'http' or 'file' "
         "(this one has http and file)"),
        ({"format": "markdown", "template": "x", "deliver": [{"file": "a.md", "attach": True}]},
         "steps[0] (weekly).report.deliver.0: 'attach' goes with 'apprise' only"),
        ({"format": "markdown", "template": "x", "deliver": [{"apprise": "nope://host/"}]},
         "steps[0] (weekly).report.deliver.0.apprise: not a URL apprise can send to (scheme "
         "'nope')"),
        ({"format": "markdown", "template": "x", "deliver": [{"http": {"url": "http://a/",
                                                                       "method": "GET"}}]},
         "steps[0] (weekly).report.deliver.0.http.method: Input should be 'POST', 'PUT' or"),
        ({"format": "markdown", "template": "x", "deliver": [{"file": "{{ now.date( }}"}]},
         "steps[0] (weekly).report.deliver.0.file: line 1: unexpected"),
        ({"format": "markdown", "template": "x", "to": "me"},
         "steps[0] (weekly).report.to: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_bad_report_step_is_refused_naming_the_step_and_the_key(
    report: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_steps(step(**report))
    assert str(raised.value).startswith(problem)


def test_a_good_report_step_parses_with_its_destinations() -> None:
    [parsed] = parse_steps(step(
        format="markdown", template="x",
        deliver=[{"apprise": "json://127.0.0.1:9/", "attach": True}, {"file": "r.md"},
                 {"http": {"url": "http://127.0.0.1:9/in", "headers": {"X-Key": "${KEY}"}}}],
    ))  # fmt: skip
    assert parsed.report is not None
    assert [d.attach for d in parsed.report.deliver] == [True, False, False]
    assert parsed.report.deliver[2].http is not None
    assert parsed.report.deliver[2].http.method == "POST"


def test_the_report_steps_in_the_docs_parse() -> None:
    text = (Path(__file__).parents[2] / "docs" / "automations.md").read_text()
    section = text.partition("## The `report` step")[2].partition("## Commands and Python")[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2
    parsed = [parse_steps(tomllib.loads(block)["steps"]) for block in blocks]
    assert [[s.name for s in steps] for steps in parsed] == [["weekly"], ["summarise", "report"]]
    ai_report = parsed[1][1].report
    assert ai_report is not None
    assert [d.http is not None for d in ai_report.deliver] == [True, False, False]


@pytest.mark.parametrize(
    ("destination", "seen"),
    [
        ({"apprise": "json://user:hunter2-pass@127.0.0.1:9/in"}, "apprise json://user:****@"),
        ({"apprise": "json://${HOOK_HOST}/in"}, "apprise json://${HOOK_HOST}/in"),
        ({"http": {"url": "https://bob:hunter2-pass@hooks.example.com/in?sig=hunter2-pass"}},
         "http POST https://hooks.example.com/in"),
        ({"http": {"url": "https://hooks.example.com/${PATH_SECRET}?sig=${SIG}"}},
         "http POST https://hooks.example.com/${PATH_SECRET}"),
        ({"file": "reports/{{ now.date() }}.md"}, "file reports/{{ now.date() }}.md"),
    ],
)  # fmt: skip
def test_a_destination_is_shown_without_its_secrets(destination: dict[str, Any], seen: str) -> None:
    [parsed] = parse_steps(step(format="markdown", template="x", deliver=[destination]))
    assert parsed.report is not None
    said = shown(parsed.report.deliver[0])
    assert said.startswith(seen)
    assert "hunter2" not in said
