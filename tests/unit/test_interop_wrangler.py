"""Cloudflare cron triggers in and out: cronlink fires imported triggers when Cloudflare
would have (checked against `cloudflare_reference`), and exports give them back."""

from __future__ import annotations

import itertools
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomli_w

from cronlink.compose import build_app
from cronlink.config import load_settings
from cronlink.cron import iter_fires, parse
from cronlink.interop import wrangler
from cronlink.interop.carry import Binding, Imported
from cronlink.interop.dialects import Untranslatable, from_cloudflare, to_cloudflare
from cronlink.jobs import HttpTarget, Job, build_job
from tests.unit import cloudflare_reference

EXAMPLE = Path(__file__).parents[2] / "examples" / "migration" / "wrangler.toml"
START = datetime(2026, 11, 28, 13, 7, tzinfo=UTC)
# Every construct Cloudflare documents, and the numbering traps between the dialects.
CLOUDFLARE = [
    "0 17 * * sun", "0 17 * * 1", "10 7 * * mon-fri", "10 7 * * 2-6", "0 18 * * 6L",
    "0 18 * * friL", "59 23 LW * *", "0 9 * * 6#3", "0 0 * * FRI-SUN", "0 0 * * 7-2",
    "0 0 * * L", "0 12 15W * *", "0 12 1,15 * 2", "*/20 8-18/2 * jan-mar *", "0 0 L * *",
    "0 0 * * 1-7/3", "0 0 * * 2/2", "0 0 * * 6/2", "0 0 */2 * 2", "0 0 1 * */2",
]  # fmt: skip


def first(expression: str, count: int) -> list[datetime]:
    return list(itertools.islice(cloudflare_reference.fires(expression, START), count))


def cronlink_fires(expression: str, count: int) -> list[datetime]:
    return list(itertools.islice(iter_fires(parse(expression), START, UTC), count))


def imported(text: str | None = None, **options: object) -> Imported:
    config = wrangler.read_config(EXAMPLE.read_text() if text is None else text, "wrangler.toml")
    return wrangler.import_triggers(config, "wrangler.toml", Binding(), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("expression", CLOUDFLARE)
def test_cronlink_fires_an_imported_trigger_when_cloudflare_would(expression: str) -> None:
    translated = from_cloudflare(expression)
    assert cronlink_fires(translated, 40) == first(expression, 40)


@pytest.mark.parametrize("expression", CLOUDFLARE)
def test_exporting_gives_back_an_expression_cloudflare_fires_the_same(expression: str) -> None:
    back = to_cloudflare(parse(from_cloudflare(expression)), "UTC", START)
    assert first(back, 40) == first(expression, 40)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [("0 0 * * 0", r"1 \(Sunday\) to 7"), ("0 0 L-2 * *", "no cronlink form"),
     ("0 0 * *", "5 fields"), ("0 0 * * 8", r"1 \(Sunday\) to 7")],
)  # fmt: skip
def test_triggers_without_a_cronlink_meaning_are_refused(expression: str, reason: str) -> None:
    with pytest.raises(Untranslatable, match=reason) as refused:
        from_cloudflare(expression)
    assert refused.value.expression == expression


def test_the_example_imports_as_utc_jobs_bound_to_app_url() -> None:
    result = imported()
    assert [job["schedule"] for job in result.jobs] == [
        "0 * * * *", "*/5 * * * *", "* * * * *", "0 17 * * SUN", "30 6 * * MON-FRI",
        "59 23 LW * *", "0 9 * * 5#3",
    ]  # fmt: skip
    job = result.jobs[4]
    assert job["name"] == "connections-cron-cron-5"
    assert job["timezone"] == "UTC"
    assert job["max_attempts"] == 1  # Cloudflare does not retry a scheduled invocation
    assert (
        job["target"]["url"] == "${APP_URL:-https://app.example.com}/cron/connections-cron-cron-5"
    )
    assert job["target"]["headers"] == {"Authorization": "Bearer ${CRON_SECRET}"}
    # The app can dispatch on the original string, as it did on controller.cron.
    assert json.loads(job["target"]["body"]) == {"cron": "30 6 * * 2-6"}
    assert result.left_out == [
        "[vars] LOG_LEVEL: not a cronlink setting; set it where the code that reads it runs"
    ]


def test_an_environment_brings_its_own_triggers_and_vars() -> None:
    result = imported(env="staging")
    [job] = result.jobs
    assert (job["name"], job["schedule"]) == ("connections-cron-staging-cron-1", "*/10 * * * *")
    assert job["target"]["url"].startswith("${APP_URL:-https://staging.example.com}/")
    with pytest.raises(ValueError, match=r"no \[env.prod\] \(environments: staging\)"):
        imported(env="prod")


def test_a_named_handler_replaces_the_target() -> None:
    config = wrangler.read_config(EXAMPLE.read_text(), "wrangler.toml")
    result = wrangler.import_triggers(config, "w", Binding(handler="myapp.cron:{name}"))
    assert result.jobs[0]["handler"] == "myapp.cron:connections_cron_cron_1"
    assert "target" not in result.jobs[0]


def test_an_untranslatable_trigger_is_listed_and_the_rest_imported() -> None:
    result = imported('[triggers]\ncrons = ["0 0 * * 0", "0 1 * * *"]\n')
    assert [job["schedule"] for job in result.jobs] == ["0 1 * * *"]
    assert result.left_out == [
        "cron '0 0 * * 0': weekday '0': Cloudflare counts 1 (Sunday) to 7 (Saturday)"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [('triggers = ["x"]', "triggers is not a table"), ("vars = 1", "vars is not a table"),
     ("env = 2", "env is not a table"), ("[triggers]\ncrons = 1", r"\[triggers\] crons is not")],
)  # fmt: skip
def test_misshapen_sections_are_named(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        imported(text)


@pytest.mark.parametrize(
    ("text", "name", "problem"),
    [("[triggers\n", "wrangler.toml", "not TOML"), ("{", "wrangler.json", "not JSON"),
     ('{"a": 1 "b"}', "wrangler.jsonc", "not JSON"),
     ("[1]", "wrangler.json", "top level is not a table")],
)  # fmt: skip
def test_unreadable_files_say_what_is_wrong(text: str, name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        wrangler.read_config(text, name)


def jobs_of(result: Imported, folder: Path) -> list[Job]:
    """The imported jobs as cronlink loads them from cronlink.toml."""
    path = folder / "cronlink.toml"
    path.write_text(tomli_w.dumps({"jobs": result.jobs}))
    return list(build_app(load_settings(path)).jobs.values())


def job(name: str, schedule: str, timezone: str = "UTC", jitter: str = "0s") -> Job:
    target = HttpTarget(url="http://x")
    return build_job(
        name=name, schedules=[schedule], timezone=timezone, jitter=jitter, target=target
    )


def test_import_then_export_gives_back_equivalent_triggers(tmp_path: Path) -> None:
    jobs = jobs_of(imported(), tmp_path)
    url = "https://cron.example.com"
    exported = wrangler.export_triggers(jobs, url, pack=False, quota=5, now=START)
    config = tomllib.loads(exported.text)
    assert exported.left_out == ["7 cron triggers: the plan has 5; --pack needs one for them all"]
    original = tomllib.loads(EXAMPLE.read_text())["triggers"]["crons"]
    bound = config["vars"]["CRONLINK_JOBS"]
    assert sorted(config["triggers"]["crons"]) == sorted(bound)
    for n, cron in enumerate(original, start=1):
        [back] = [c for c, names in bound.items() if f"connections-cron-cron-{n}" in names]
        assert first(back, 30) == first(cron, 30)
    assert config["vars"]["APP_URL"] == "https://cron.example.com"
    assert "CRON_SECRET" not in config["vars"]


def test_packing_needs_one_trigger_and_keeps_zones(tmp_path: Path) -> None:
    jobs = [*jobs_of(imported(), tmp_path), job("paris", "0 9 * * *", timezone="Europe/Paris")]
    unpacked = wrangler.export_triggers(jobs, "https://c", pack=False, quota=5, now=START)
    assert "job paris (0 9 * * *): Cloudflare runs cron triggers in UTC" in unpacked.left_out[0]
    assert "paris" not in tomllib.loads(unpacked.text)["vars"]["CRONLINK_JOBS"].get("0 9 * * *", [])
    packed = wrangler.export_triggers(jobs, "https://c", pack=True, quota=5, now=START)
    config = tomllib.loads(packed.text)
    assert config["triggers"]["crons"] == ["* * * * *"]
    assert "CRONLINK_JOBS" not in config["vars"]  # the Worker then calls /cron/tick
    assert packed.left_out == []


def test_seconds_and_jitter_are_listed_when_they_cannot_be_kept() -> None:
    seconds = job("s", "*/10 * * * * *")
    assert (
        "no seconds field"
        in wrangler.export_triggers([seconds], "u", pack=False, quota=5, now=START).left_out[0]
    )
    jittered = job("w", "0 * * * *", jitter="5s")
    assert wrangler.export_triggers([jittered], "u", pack=False, quota=5, now=START).left_out == [
        "job w: jitter (Cloudflare fires on the minute)"
    ]
    packed = wrangler.export_triggers([seconds], "u", pack=True, quota=5, now=START)
    assert packed.left_out == [
        "schedules with seconds: a minute tick fires them up to a minute late"
    ]


def test_wrangler_jsonc_reads_with_its_comments() -> None:
    text = """{
      // Cloudflare's default configuration format for new projects
      "name": "edge",
      "triggers": { "crons": ["0 17 * * sun", /* weekly */ "*/5 * * * *",] },
      "vars": { "APP_URL": "https://edge.example.com" },
    }"""
    config = wrangler.read_config(text, "wrangler.jsonc")
    result = wrangler.import_triggers(config, "wrangler.jsonc", Binding())
    assert [(job["name"], job["schedule"]) for job in result.jobs] == [
        ("edge-cron-1", "0 17 * * SUN"), ("edge-cron-2", "*/5 * * * *"),
    ]  # fmt: skip


@pytest.mark.parametrize("expression", ["0 0 1-10 * */2", "0 0 */2 * 1-5"])
def test_days_cronlink_requires_both_of_are_not_exported_as_either(expression: str) -> None:
    """cronlink matches both day fields when one starts with `*`; Cloudflare would match
    either, so the export refuses rather than fire on other days."""
    with pytest.raises(Untranslatable, match="would match days by either"):
        to_cloudflare(parse(expression), "UTC", START)
