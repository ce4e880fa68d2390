"""The command line: output, exit codes, errors that name file, key and problem."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cronlink.cli import COMMANDS, cli
from cronlink.engine.scheduler import Scheduler
from cronlink.jobs import build_job
from cronlink.store import store_for

TOML_HEAD = 'database_url = "sqlite:///{db}"\n'


def invoke(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    runner = CliRunner()
    if cwd is not None:
        os.chdir(cwd)
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(autouse=True)
def _keep_cwd() -> object:
    before = os.getcwd()
    yield
    os.chdir(before)


def test_help_lists_every_command_and_each_has_its_own() -> None:
    code, out = invoke("--help")
    assert code == 0
    listed = out.partition("Commands:")[2]
    for name in COMMANDS:
        assert f"\n  {name} " in listed
        assert invoke(name, "--help")[0] == 0


def test_next_json_carries_the_zone_offset() -> None:
    code, out = invoke(
        "next", "30 1 * * *", "--tz", "America/New_York", "--from", "2024-11-02T12:00",
        "--count", "2", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]


def test_explain() -> None:
    assert invoke("explain", "30 2 * * 1-5") == (0, "At 02:30, Monday through Friday\n")


@pytest.mark.parametrize("zone", ["America", "Europe"])
def test_a_zone_that_is_no_zone_exits_2_naming_it(zone: str) -> None:
    code, out = invoke("next", "* * * * *", "--tz", zone)
    assert code == 2
    assert f"unknown time zone {zone!r}" in out


def test_bad_expression_exits_2_naming_field_and_reason() -> None:
    code, out = invoke("next", "61 * * * *")
    assert code == 2
    assert "minute field: 61 is out of range 0-59" in out


@pytest.mark.timeout(30)
@pytest.mark.parametrize("command", ["next", "explain"])
def test_an_expression_that_never_fires_in_its_zone_exits_2(command: str) -> None:
    code, out = invoke(command, "* * 2 * 3 0#2", "--tz", "America/New_York")
    assert code == 2
    assert out.startswith("error: never fires in America/New_York: every time it matches (")
    code, out = invoke(command, "0 0 LW * */7")
    assert code == 2
    assert "never fires: no day of any month matches both day-of-month 'LW'" in out


def test_bad_zone_exits_2() -> None:
    code, out = invoke("next", "* * * * *", "--tz", "Mars/Olympus")
    assert code == 2
    assert "unknown time zone 'Mars/Olympus'" in out


def test_without_a_configuration_a_command_says_so_and_creates_nothing(tmp_path: Path) -> None:
    for command in (("jobs",), ("run", "--no-serve"), ("runs",)):
        code, out = invoke(*command, cwd=tmp_path)
        assert code == 2, out
        assert f"error: no configuration found: no cronlink.toml in {tmp_path}" in out
        assert "`cronlink init` writes a starter cronlink.toml" in out
    assert list(tmp_path.iterdir()) == []
    code, out = invoke("jobs", "--database-url", f"sqlite:///{tmp_path}/c.db", cwd=tmp_path)
    assert code == 0, out  # a database named is configuration enough


def test_init_writes_a_starter_and_never_overwrites(tmp_path: Path) -> None:
    code, _ = invoke("init", cwd=tmp_path)
    assert code == 0
    text = (tmp_path / "cronlink.toml").read_text()
    assert "handler = " in text
    assert "target = " in text
    (tmp_path / "cronlink.toml").write_text(text + "\n# mine\n")
    code, out = invoke("init", cwd=tmp_path)
    assert code == 1
    assert "error: cronlink.toml exists; left as it is (--force to overwrite)" in out
    assert (tmp_path / "cronlink.toml").read_text().endswith("# mine\n")
    code, out = invoke("jobs", "--json", cwd=tmp_path)
    assert code == 0
    assert [j["name"] for j in json.loads(out)] == ["crunch", "heartbeat"]


BAD_CONFIGS = [
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\nschedul = "* * * * *"\n',
     "jobs[0] (a).schedul: unknown key"),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\nmax_attempts = "3"\n',
     "jobs[0] (a).max_attempts: Input should be a valid integer"),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\nschedule = "61 * * * *"\n',
     "jobs[0] (a).schedule: minute field: 61 is out of range 0-59"),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\n'
     'timezone = "America/New_York"\nschedule = "* * 2 * 3 0#2"\n',
     "jobs[0] (a).schedule: never fires in America/New_York: every time it matches ("),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\n'
     'schedules = ["@daily", "0 0 LW * */7"]\n',
     "jobs[0] (a).schedules: [1] never fires: no day of any month matches both"),
    ('[connections]\nhealth_schedule = "0 0 31 2 *"\n',
     "connections.health_schedule: day-of-month field: day 31 never occurs in February"),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.nowhere:job"\n',
     "jobs[0] (a): handler: cannot load 'cronlink.nowhere:job'"),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:hearbeat"\n',
     "jobs[0] (a): handler: cannot load 'cronlink.examples:hearbeat' (module "
     "'cronlink.examples' has no attribute 'hearbeat'; did you mean heartbeat?)"),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\n'
     '[[jobs]]\nname = "a"\nhandler = "cronlink.examples:crunch"\n',
     "jobs[1] (a): job 'a' is defined twice"),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\ntimeout = "30x"\n',
     "jobs[0] (a).timeout: '30x' is not a duration"),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\ntimezone = "Mars/X"\n'
     'schedule = "* * * * *"\n',
     "jobs[0] (a).timezone: unknown time zone 'Mars/X'"),
    # A folder of zones is no zone (zoneinfo raises IsADirectoryError for it).
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\ntimezone = "America"\n'
     'schedule = "* * * * *"\n',
     "jobs[0] (a).timezone: unknown time zone 'America'"),
    ('[[jobs]]\nname = "a"\nhandler = "cronlink.examples:heartbeat"\n'
     'schedules = ["*/5 * * * *", "*/5 * * * *"]\n',
     "jobs[0] (a): schedule '*/5 * * * *' is listed twice"),
    ('[serve]\naddress_burst = 9223372036854775807\n', "serve.address_burst: Input should be less"),
    ('[serve]\naddress_rate = inf\n', "serve.address_rate: Input should be less"),
    ('[[jobs]]\nname = "a"\n', "jobs[0] (a): give exactly one of 'handler'"),
    ("jobs = [", "not valid TOML"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), BAD_CONFIGS)
def test_bad_config_names_file_key_and_problem(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "cronlink.toml").write_text(TOML_HEAD.format(db=tmp_path / "c.db") + body)
    code, out = invoke("jobs", cwd=tmp_path)
    assert code == 2
    assert out.startswith("error: cronlink.toml: ")
    assert out.count("cronlink.toml") == 1, out
    assert message in out
    assert len(out.strip().splitlines()) == 1


def test_unknown_job_exits_1_with_suggestions(tmp_path: Path) -> None:
    invoke("init", cwd=tmp_path)
    code, out = invoke("trigger", "heartbeet", cwd=tmp_path)
    assert code == 1
    assert "unknown job 'heartbeet'; did you mean heartbeat?" in out


def test_runs_of_an_unknown_job_exit_1_with_suggestions(tmp_path: Path) -> None:
    invoke("init", cwd=tmp_path)
    code, out = invoke("runs", "--job", "heartbeet", cwd=tmp_path)
    assert code == 1
    assert "unknown job 'heartbeet'; did you mean heartbeat?" in out
    assert invoke("runs", "--job", "heartbeat", cwd=tmp_path)[0] == 0


def test_bad_payload_exits_2(tmp_path: Path) -> None:
    invoke("init", cwd=tmp_path)
    code, out = invoke("trigger", "heartbeat", "--payload", "{nope", cwd=tmp_path)
    assert code == 2
    assert "not valid JSON" in out


def test_corrupt_database_is_reported_and_left_alone(tmp_path: Path) -> None:
    invoke("init", cwd=tmp_path)
    db = tmp_path / "cronlink.db"
    db.write_bytes(b"garbage" * 1000)
    code, out = invoke("jobs", cwd=tmp_path)
    assert code == 1
    assert "is not a SQLite database" in out
    assert db.read_bytes() == b"garbage" * 1000


def test_pause_and_resume(tmp_path: Path) -> None:
    invoke("init", cwd=tmp_path)
    assert invoke("pause", "heartbeat", cwd=tmp_path) == (0, "heartbeat paused\n")
    _, out = invoke("jobs", "--json", cwd=tmp_path)
    assert {j["name"]: j["paused"] for j in json.loads(out)} == {"crunch": False, "heartbeat": True}
    assert invoke("resume", "heartbeat", cwd=tmp_path)[0] == 0


ROOT = Path(__file__).resolve().parents[2]


def cronlink(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """A real `cronlink` process that can import the test handlers."""
    return subprocess.Popen(
        [sys.executable, "-m", "cronlink", *args],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # Several `cronlink run` at once: each serves on a free port.
        env={**os.environ, "PYTHONPATH": str(ROOT), "CRONLINK_PORT": "0"},
    )


def output(*args: str, cwd: Path) -> str:
    proc = cronlink(*args, cwd=cwd)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


WORKER_TOML = (
    'database_url = "{url}"\napp = "tests.acceptance.handlers:app"\n'
    '[worker]\nlease = "1s"\nheartbeat = "200ms"\npoll = "50ms"\n'
)


@pytest.mark.slow
def test_sigkilled_worker_run_is_retried_after_its_lease(tmp_path: Path, any_url: str) -> None:
    (tmp_path / "cronlink.toml").write_text(WORKER_TOML.format(url=any_url))
    run_id = json.loads(output("trigger", "stalls-first", "--json", cwd=tmp_path))["run_id"]
    doomed = cronlink("worker", "--tier", "light", "--concurrency", "4", cwd=tmp_path)
    deadline = time.monotonic() + 30
    while "running" not in output("run", "show", str(run_id), cwd=tmp_path):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=10)
    rescuer = cronlink("run", cwd=tmp_path)
    try:
        while '"succeeded"' not in output("run", "show", str(run_id), "--json", cwd=tmp_path):
            assert time.monotonic() < deadline, "run was not rescued"
            time.sleep(0.2)
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.communicate(timeout=30)
    run = json.loads(output("run", "show", str(run_id), "--json", cwd=tmp_path))
    assert run["attempt"] == 2
    assert run["result"] == "2"


@pytest.mark.slow
def test_run_fires_every_second_exactly_once(tmp_path: Path, any_url: str) -> None:
    (tmp_path / "cronlink.toml").write_text(
        WORKER_TOML.format(url=any_url)
        + '[[jobs]]\nname = "tick"\nhandler = "cronlink.examples:heartbeat"\n'
        'schedule = "* * * * * *"\noverlap = "allow"\n'
    )
    proc = cronlink("run", cwd=tmp_path)
    assert proc.stdout is not None
    for line in proc.stdout:  # the roles are up: count from here
        if "cronlink running" in line:
            break
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    runs = json.loads(output("runs", "--job", "tick", "--json", cwd=tmp_path))
    instants = [r["run"]["scheduled_for"] for r in runs]
    assert len(instants) >= 2
    assert len(instants) == len(set(instants))
    # Fired up to a second ahead: the run of the instant after the stop may wait queued.
    newest, *older = [r["run"]["state"] for r in runs]  # newest first
    assert set(older) == {"succeeded"}
    assert newest in ("queued", "succeeded")


@pytest.mark.slow
def test_test_scheduled_runs_bound_jobs_now(tmp_path: Path) -> None:
    (tmp_path / "cronlink.toml").write_text(
        f'database_url = "sqlite:///{tmp_path / "c.db"}"\n'
        '[[jobs]]\nname = "tick"\nhandler = "cronlink.examples:heartbeat"\n'
        'schedule = "*/5 * * * *"\n'
    )
    out = output("test-scheduled", "*/5 * * * *", cwd=tmp_path)
    assert "\ntick: succeeded (run 1)" in out
    proc = cronlink("test-scheduled", "0 3 * * *", cwd=tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "no job is scheduled at '0 3 * * *'" in out


def test_runs_since_lists_missed_and_skipped_instants(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    (tmp_path / "cronlink.toml").write_text(
        f'database_url = "sqlite:///{db}"\n'
        '[[jobs]]\nname = "tick"\nhandler = "cronlink.examples:heartbeat"\n'
        'schedule = "*/10 * * * *"\n'
    )

    async def three_hours_down() -> None:
        store = store_for(f"sqlite:///{db}")
        await store.open()
        job = build_job(name="tick", schedules=["*/10 * * * *"])
        scheduler = Scheduler(store, {"tick": job})
        start = datetime(2025, 1, 1, 12, tzinfo=UTC)
        await scheduler.sync(start)
        await scheduler.tick(start + timedelta(hours=3))
        await store.close()

    asyncio.run(three_hours_down())
    code, out = invoke("runs", "--since", "2025-01-01T12:00:00+00:00", "--json", cwd=tmp_path)
    assert code == 0
    entries = json.loads(out)
    fates = [e["fate"] for e in entries]
    assert fates[0] == "run"
    assert fates[1:] == ["missed"] * 17
    assert entries[0]["run"]["scheduled_for"] == "2025-01-01T15:00:00+00:00"
    code, out = invoke("runs", "--since", "2025-01-01T12:00", cwd=tmp_path)
    assert code == 0
    assert out.count("missed") == 17


def test_db_upgrade_and_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    code, out = invoke("db", "upgrade", "--database-url", f"sqlite:///{db}", cwd=tmp_path)
    assert code == 0
    assert "schema up to date" in out
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    before = db.read_bytes()
    code, out = invoke("jobs", "--database-url", f"sqlite:///{db}", cwd=tmp_path)
    assert code == 1
    assert "schema revision 'ffff'" in out
    assert db.read_bytes() == before


def test_trigger_wait_gives_up_after_its_timeout(tmp_path: Path) -> None:
    invoke("init", cwd=tmp_path)
    code, out = invoke("trigger", "heartbeat", "--wait", "--timeout", "0.3", cwd=tmp_path)
    assert code == 1  # no worker is running: the run is still queued
    assert "queued" in out


@pytest.mark.slow
def test_run_serves_the_cron_endpoint(tmp_path: Path) -> None:
    (tmp_path / "cronlink.toml").write_text(WORKER_TOML.format(url=f"sqlite:///{tmp_path}/c.db"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cronlink", "run"],
        cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CRONLINK_PORT": "0",
             "CRON_SECRET": "a-secret-of-sixteen-or-more"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if "serving http://" in line:
                url = line.split("serving ")[1].split(",")[0]
                break
        assert url.startswith("http://127.0.0.1:"), url
        request = urllib.request.Request(
            f"{url}/cron/ok?wait=true", method="POST",
            headers={"Authorization": "Bearer a-secret-of-sixteen-or-more"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read())
        assert answer.status == 200
        assert body["state"] == "succeeded"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "cronlink.toml").write_text(WORKER_TOML.format(url=f"sqlite:///{tmp_path}/c.db"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "cronlink", "run", "--port", str(port)],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    assert proc.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}: the port is in use" in proc.stderr
    assert "Traceback" not in proc.stderr
