"""`cronlink import` and `cronlink export` from the command line, on the examples under
examples/migration: jobs land in cronlink.toml without disturbing it, `cronlink next`
agrees with the source scheduler, and the exported Worker really calls cronlink (run by
node against a real `cronlink serve` on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cronlink.cli import cli
from cronlink.compose import build_app
from cronlink.config import load_settings
from cronlink.records.runs import Reason
from cronlink.store import RunFilter, Store
from cronlink.web.server import serving
from tests.unit import cloudflare_reference

EXAMPLES = Path(__file__).parents[2] / "examples" / "migration"
START = "2026-11-28T13:07:00+00:00"
EXISTING = """\
# our own settings: kept as they are
database_url = "sqlite:///cronlink.db"

[[jobs]]
name = "nightly"
handler = "cronlink.examples:heartbeat"
schedule = "0 3 * * *"  # keep this comment
"""


def cronlink(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_import_adds_jobs_to_an_existing_file_and_lists_what_it_left(tmp_path: Path) -> None:
    config = tmp_path / "cronlink.toml"
    config.write_text(EXISTING)
    code, out, err = cronlink("import", str(EXAMPLES / "wrangler.toml"), "-o", str(config))
    assert code == 0, err
    assert out.startswith(f"added 7 jobs to {config}: connections-cron-cron-1, ")
    assert "not carried over:\n  - [vars] LOG_LEVEL: not a cronlink setting" in err
    text = config.read_text()
    assert text.startswith(EXISTING.rstrip())  # comments and all
    settings = load_settings(config)
    jobs = build_app(settings).jobs
    assert {"nightly", "connections-cron-cron-7"} <= set(jobs)
    assert jobs["connections-cron-cron-7"].schedules[0].cron.source == "0 9 * * 5#3"


def test_importing_twice_is_refused_and_the_file_is_untouched(tmp_path: Path) -> None:
    config = tmp_path / "cronlink.toml"
    assert cronlink("import", str(EXAMPLES / "wrangler.toml"), "-o", str(config))[0] == 0
    before = config.read_bytes()
    code, _, err = cronlink("import", "wrangler", str(EXAMPLES / "wrangler.toml"), "-o",
                            str(config))  # fmt: skip
    assert code == 2  # bad input
    assert f"{config} already has jobs named connections-cron-cron-1, " in err
    assert config.read_bytes() == before


def test_the_file_keeps_its_link_and_mode_and_is_untouched_when_nothing_comes(
    tmp_path: Path,
) -> None:
    real = tmp_path / "settings" / "cronlink.toml"
    real.parent.mkdir()
    real.write_text(EXISTING)
    real.chmod(0o640)
    link = tmp_path / "cronlink.toml"
    link.symlink_to(real)
    nothing = tmp_path / "wrangler.toml"
    nothing.write_text('[triggers]\ncrons = ["0 0 L-2 * *"]\n')
    code, out, err = cronlink("import", str(nothing), "-o", str(link))
    assert (code, out) == (0, f"nothing to add to {link}\n")
    assert "cron '0 0 L-2 * *': 'L-2' (days before the month's last)" in err
    assert real.read_text() == EXISTING
    assert cronlink("import", str(EXAMPLES / "wrangler.toml"), "-o", str(link))[0] == 0
    assert link.is_symlink()
    assert real.stat().st_mode & 0o777 == 0o640
    assert "connections-cron-cron-1" in real.read_text()


def test_a_file_of_unknown_kind_or_bad_content_is_named(tmp_path: Path) -> None:
    code, _, err = cronlink("import", str(tmp_path / "jobs.yaml"))
    assert code == 2
    assert "name what" in err
    assert "{wrangler|cloud-scheduler|k8s}" in err
    broken = tmp_path / "wrangler.toml"
    broken.write_text("[triggers\n")
    code, _, err = cronlink("import", str(broken), "-o", "-")
    assert code == 2  # bad input
    assert f"{broken}: not TOML" in err
    code, _, err = cronlink("import", "wrangler", str(tmp_path / "missing.toml"))
    assert code == 2  # bad input
    assert "missing.toml: No such file or directory" in err


def test_cronlink_next_agrees_with_cloudflare_on_every_imported_trigger() -> None:
    code, out, _ = cronlink("import", str(EXAMPLES / "wrangler.toml"), "-o", "-", "--json")
    assert code == 0
    originals = tomllib.loads((EXAMPLES / "wrangler.toml").read_text())["triggers"]["crons"]
    for job, cron in zip(json.loads(out)["jobs"], originals, strict=True):
        code, listed, _ = cronlink("next", job["schedule"], "--tz", job["timezone"], "--from",
                                   START, "--count", "25", "--json")  # fmt: skip
        assert code == 0
        expected = cloudflare_reference.fires(cron, datetime.fromisoformat(START))
        assert json.loads(listed) == [at.isoformat() for at in itertools.islice(expected, 25)]


def node() -> str:
    """node from the system, else the one playwright ships (a test dependency)."""
    found = shutil.which("node")
    if found:
        return found
    import playwright

    bundled = Path(playwright.__file__).parent / "driver" / "node"
    assert bundled.exists(), "node is needed to run the exported Worker"
    return str(bundled)


HARNESS = """
import worker from "./cronlink-triggers.mjs";
const [cron, env] = [process.argv[2], JSON.parse(process.argv[3])];
await worker.scheduled({ cron, scheduledTime: Date.parse("2026-11-28T13:00:00Z") }, env);
"""


async def run_worker(folder: Path, cron: str, env: dict[str, object]) -> None:
    process = await asyncio.create_subprocess_exec(
        node(), str(folder / "harness.mjs"), cron, json.dumps(env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()


@pytest.mark.parametrize("pack", [False, True])
async def test_the_exported_worker_calls_cronlink(
    pack: bool, tmp_path: Path, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "cronlink.toml"
    assert cronlink("import", str(EXAMPLES / "wrangler.toml"), "-o", str(config))[0] == 0
    out = tmp_path / "worker"
    flags = ["--pack"] if pack else []
    code, _, err = cronlink("export", "wrangler", "--app-url", "http://127.0.0.1:1", "--out",
                            str(out), "--config", str(config), *flags)  # fmt: skip
    assert code == 0, err
    exported = tomllib.loads((out / "wrangler.toml").read_text())
    shutil.copy(out / "cronlink-triggers.js", out / "cronlink-triggers.mjs")
    (out / "harness.mjs").write_text(HARNESS)
    secret = "s3cret-for-the-worker-41d9"
    monkeypatch.setenv("CRON_SECRET", secret)
    app = build_app(load_settings(config))
    async with serving(sqlite_store, app, "127.0.0.1", 0) as url:
        env = {**exported["vars"], "APP_URL": url, "CRON_SECRET": secret}
        cron = exported["triggers"]["crons"][0]
        await run_worker(out, cron, env)
        if not pack:
            await run_worker(out, cron, env)  # Cloudflare retried: still one run
        wrong = {**env, "CRON_SECRET": "not-it"}
        with pytest.raises(AssertionError, match="cronlink answered 401"):
            await run_worker(out, cron, wrong)
    calls = [(e.action, e.target, e.outcome) for e in await sqlite_store.audit.find()]
    if pack:
        assert exported["triggers"]["crons"] == ["* * * * *"]
        assert sorted(calls) == [("cron.tick", "schedules", "accepted"),
                                 ("cron.tick", "schedules", "denied")]  # fmt: skip
    else:
        [bound] = exported["vars"]["CRONLINK_JOBS"][cron]
        runs = await sqlite_store.list_runs(RunFilter(limit=50))
        assert [(run.job, run.reason) for run in runs] == [(bound, Reason.API)]
        assert runs[0].scheduled_for == datetime(2026, 11, 28, 13, tzinfo=UTC)
        assert ("cron.run", bound, "denied") in calls
    assert secret not in (out / "wrangler.toml").read_text()


@pytest.mark.parametrize(
    ("kind", "example", "written", "marker"),
    [("k8s", "k8s-cronjobs.yaml", "cronjobs.yaml", "secretKeyRef"),
     ("cloud-scheduler", "cloud-scheduler.yaml", "cloud-scheduler.sh",
      "gcloud secrets versions access")],
)  # fmt: skip
def test_import_then_export_from_the_command_line(
    kind: str, example: str, written: str, marker: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    config = tmp_path / "cronlink.toml"
    code, out, err = cronlink("import", kind, str(EXAMPLES / example), "-o", str(config))
    assert code == 0, err
    assert out.startswith("added ")
    assert "not carried over:" in err
    secret = "s3cret-never-written-7c1e"
    monkeypatch.setenv("CRON_SECRET", secret)
    code, _, err = cronlink("export", kind, "--app-url", "https://cron.example.com", "--out",
                            str(tmp_path / "out"), "--config", str(config))  # fmt: skip
    assert code == 0, err
    text = (tmp_path / "out" / written).read_text()
    assert marker in text
    assert "https://cron.example.com" in text
    assert secret not in text
    code, _, err = cronlink("export", kind, "--pack", "--app-url", "u", "--config", str(config))
    assert code == 2
    assert "--pack is for wrangler" in err


async def test_the_exported_cronjob_command_names_its_instant(
    tmp_path: Path, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CronJob's shell command, run by sh with the real curl against `cronlink serve`:
    a Job named by the controller (`<cronjob>-<minutes since the epoch>`) queues the run of
    that instant, once however often its pod retries; a Job made by hand queues by name."""
    config = tmp_path / "cronlink.toml"
    assert cronlink("import", "k8s", str(EXAMPLES / "k8s-cronjobs.yaml"), "-o", str(config))[0] == 0
    code, out, err = cronlink(
        "export", "k8s", "--app-url", "http://unused", "--config", str(config)
    )
    assert code == 0, err
    [cronjob] = [d for d in yaml.safe_load_all(out) if d["metadata"]["name"] == "refresh-tokens"]
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    secret = "s3cret-one-for-k8s-5a1c, s3cret-old-77b2e0f"
    monkeypatch.setenv("CRON_SECRET", secret)
    instant = datetime(2026, 11, 28, 13, tzinfo=UTC)
    minutes = int(instant.timestamp()) // 60
    async with serving(sqlite_store, build_app(load_settings(config)), "127.0.0.1", 0) as url:
        for job_name in [f"refresh-tokens-{minutes}", f"refresh-tokens-{minutes}", "by-hand-2"]:
            env = {"PATH": os.environ["PATH"], "APP_URL": url, "CRON_SECRET": secret,
                   "JOB_NAME": job_name}  # fmt: skip
            process = await asyncio.create_subprocess_exec(
                *container["command"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            output, _ = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, output.decode()
    runs = await sqlite_store.list_runs(RunFilter(job="refresh-tokens", limit=10))
    assert sorted((run.scheduled_for is None, run.reason) for run in runs) == [
        (False, Reason.API), (True, Reason.API),
    ]  # fmt: skip
    assert {run.scheduled_for for run in runs} == {instant, None}


@pytest.mark.parametrize(
    ("args", "problem"),
    [(["import", "k8s", str(EXAMPLES / "k8s-cronjobs.yaml"), "--env", "prod"],
      "environments are wrangler's"),
     (["import", "cloud-scheduler", str(EXAMPLES / "cloud-scheduler.yaml"), "--app-url", "u"],
      "Cloud Scheduler jobs keep the URL they call"),
     (["export", "wrangler", "--app-url", "u", "--secret", "s"], "wrangler secret put")],
)  # fmt: skip
def test_options_that_mean_nothing_for_the_kind_are_refused(args: list[str], problem: str) -> None:
    code, _, err = cronlink(*args, *(["-o", "-"] if args[0] == "import" else []))
    assert code == 2
    assert problem in err
