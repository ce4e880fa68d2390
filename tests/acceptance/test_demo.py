"""`cronlink demo`: a newcomer sees refreshes, health checks and a needs_reauth quickly; each
new email classified by the sandbox's chat model through an `ai` step, a daily report
summarised by it and delivered as Markdown to a webhook, and what the model cost, a line
each in aligned columns; the dashboard, `/metrics` and the API served with a read-only
token to log in with; the model's key never shown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cronlink.connections.crypto import ENV
from cronlink.demo import MODEL_KEY, demo, demo_key, demo_settings
from tests.acceptance.dashboard_kit import Visitor

KEY = "demo-test-model-key-5f0c2e"
EXPECTED = {
    "Welcome to the demo": "other", "Outage: eu-west is down": "urgent",
    "Invoice 1042": "invoice", "Lunch on Friday?": "meeting",
    "This week at cronlink": "newsletter",
}  # fmt: skip
"""The label the sandbox model's rules give each email the demo sends."""


def fresh_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Unset what the demo sets for itself, restored after the test (set first, so that
    monkeypatch records a variable that was absent)."""
    monkeypatch.chdir(tmp_path)
    for name in (ENV, "CRONLINK_SANDBOX_URL", MODEL_KEY):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


NARRATED = re.compile(r"\d\d:\d\d:\d\d  \S.{13} \S.{12} \S.*")
"""A line of what happened: time, what it happened to, what happened, the detail."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_demo_shows_refreshes_health_reauth_ai_automations_a_report_and_a_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_environment(monkeypatch, tmp_path)
    demo_key()
    key_file = tmp_path / ".cronlink-demo.key"
    assert key_file.stat().st_mode & 0o077 == 0
    monkeypatch.setenv("DATABASE_URL", "postgresql://production.invalid/db")  # not used
    monkeypatch.setenv(MODEL_KEY, KEY)  # the sandbox takes the key it is given
    (tmp_path / "cronlink.toml").write_text('[[jobs]]\nname = "real"\nhandler = "x:y"\n')
    settings = demo_settings()
    assert settings.database_url == "sqlite:///cronlink-demo.db"
    assert settings.jobs == ()
    lines: list[str] = []
    stop = asyncio.Event()
    wanted = [
        " refreshed ", "unknown -> healthy", " needs_reauth ", " classified    urgent ",
        "daily report   delivered ", "nightly sync   copied        10,000 records to the CRM in 20",
    ]  # fmt: skip
    served = f"http://127.0.0.1:{free_port()}"
    watcher = asyncio.create_task(sandbox_after(wanted, lines, stop, served))
    async with asyncio.timeout(120):
        await demo(
            settings, port=0, serve_port=int(served.rpartition(":")[2]), lifetime=4,
            say=lines.append, stop=stop,
        )  # fmt: skip
    url, sandbox = await watcher
    assert lines[0] == "cronlink demo: Ctrl-C stops"
    assert lines[1] == f"  dashboard  {served}/dashboard  (log in with the read-only token below)"
    told = lines[: lines.index("")]
    narrated = lines[len(told) + 1 :]
    assert narrated
    assert all(NARRATED.fullmatch(x) for x in narrated), narrated
    assert any(
        re.search(r"connection 5 +needs_reauth +sandbox refused the refresh", x) for x in lines
    )
    # One line per refresh: the log's own lines are not among them.
    refreshed = [x for x in narrated if " refreshed " in x]
    assert len(refreshed) == len(set(refreshed))
    assert not any(x.lstrip().startswith("{") for x in lines)
    assert (tmp_path / "cronlink-demo.db").exists()
    assert sandbox["served"] == {"dashboard": 200, "runs": 200, "metrics": 200, "trigger": 403}
    assert (tmp_path / "cronlink-demo.db").exists()

    summaries = sandbox["summaries"]
    assert {s["subject"]: s["label"] for s in summaries}.items() <= EXPECTED.items()
    assert all(
        re.fullmatch(r".+[.?!] \(\d+ words, \d+ sentences\)", s["summary"]) for s in summaries
    )
    # What was said by the time the webhook was read (the demo says more as it stops).
    said = "\n".join(sandbox["said"])
    classified = dict(re.findall(r"email (\d+) +classified +(\w+) ", said))
    assert classified
    assert classified.items() <= {(str(s["email"]), s["label"]) for s in summaries}
    model = sandbox["stats"]["model"]
    assert model["requests"] >= len(classified) + 1  # each email, and the report's summary
    assert (model["ok"], model["unauthorized"]) == (model["requests"], 0)

    # The first report (a second one only if the test runs at the report's 18:00 UTC).
    delivered = next(x for x in lines if "daily report   delivered " in x)
    found = re.search(r"delivered +(\d+) emails? summarised by model sandbox: "
                      r"([\d,]+) bytes of Markdown to http POST (\S+)$", delivered)  # fmt: skip
    assert found, delivered
    emails, size, destination = int(found[1]), int(found[2].replace(",", "")), found[3]
    assert destination == f"{url}/api/hooks/reports"
    report = sandbox["reports"][0]
    assert len(report.encode()) == size
    assert report.startswith("# Inbox, 20")
    bullets = [x for x in report.splitlines() if x.startswith("- **")]
    assert len(bullets) == emails >= 1
    for bullet, email in zip(bullets, summaries, strict=False):
        assert bullet.startswith(f"- **{email['label']}** {email['subject']} (")
        assert bullet.endswith(f"UTC): {email['summary']}")

    spent = [x for x in lines if re.search(r"AI spend +this month +model sandbox:", x)]
    assert len(spent) >= 2  # after the report, and at the end
    assert lines[-1] == spent[-1]
    calls = re.search(r"(\d+) calls \(0 failed\), ([\d,]+) tokens in, ([\d,]+) out, \$(\S+)",
                      lines[-1])  # fmt: skip
    assert calls, lines[-1]
    assert int(calls[1]) >= len(classified) + 1
    assert float(calls[4]) > 0
    assert KEY not in "\n".join(lines)
    assert KEY not in repr(sandbox["summaries"]) + sandbox["reports"][0]


async def test_the_command_run_again_tells_its_story_and_logs_to_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cronlink demo` as a newcomer runs it, output redirected: plain lines only, the log
    in cronlink-demo.log. The second demo replaces the first one's connections: the new
    ones get new ids, so their refresh runs are queued (their dedupe keys are new) and their
    tokens renewed. Without a model key of its own, the demo uses the sandbox's, never
    shown."""
    fresh_environment(monkeypatch, tmp_path)
    for first_id in (1, 7):  # five mail connections and a CRM one a run
        command = [sys.executable, "-m", "cronlink", "demo", "--port", "0",
                   "--serve-port", str(free_port()), "--lifetime", "4"]  # fmt: skip
        wanted = [rf"connection {first_id} +refreshed ",
                  rf"connection {first_id + 4} +needs_reauth", r" classified "]  # fmt: skip
        out = await asyncio.to_thread(_until_said, command, tmp_path, wanted)
        assert out[0] == "cronlink demo: Ctrl-C stops"
        narrated = out[out.index("") + 1 :]
        assert all(NARRATED.fullmatch(x) for x in narrated), out
        assert re.search(r"AI spend +this month", narrated[-1])
        assert "sandbox-model-key" not in "\n".join(out)
    logged = (tmp_path / "cronlink-demo.log").read_text().splitlines()
    assert logged
    assert all(x.startswith('{"at": ') for x in logged)
    assert "sandbox-model-key" not in "\n".join(logged)


def _until_said(command: list[str], cwd: Path, wanted: list[str]) -> list[str]:
    """Run `command` until each pattern of `wanted` is in a line it printed (at most 90 s),
    then SIGINT it; its output, every line."""
    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, text=True) as demo:
        assert demo.stdout is not None
        lines: list[str] = []
        for printed in demo.stdout:
            lines.append(printed.rstrip("\n"))
            if all(any(re.search(w, x) for x in lines) for w in wanted):
                break
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, lines
    return lines + rest.splitlines()


async def sandbox_after(
    wanted: list[str], lines: list[str], stop: asyncio.Event, served: str
) -> tuple[str, dict[str, Any]]:
    """Once each of `wanted` is in a line, the demo's sandbox's URL, its stats and what its
    `summaries` and `reports` webhooks got, and the statuses of the served pages with the
    token the demo printed; then stop the demo."""
    while not all(any(w in line for line in lines) for w in wanted):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    url = os.environ["CRONLINK_SANDBOX_URL"]
    got: dict[str, Any] = {"said": list(lines)}
    async with aiohttp.ClientSession() as session:
        for name, path in (("stats", "stats"), ("summaries", "sink/summaries"),
                           ("reports", "sink/reports")):  # fmt: skip
            async with session.get(f"{url}/sandbox/{path}") as answer:
                got[name] = await answer.json()
        token = next(x.split()[1] for x in lines if x.startswith("  token "))
        bearer = {"Authorization": f"Bearer {token}"}
        statuses = {}
        asked = (("runs", "GET", "/api/v1/runs"), ("metrics", "GET", "/metrics"),
                 ("trigger", "POST", "/api/v1/jobs/poll-triggers/trigger"))  # fmt: skip
        for name, method, path in asked:
            async with session.request(method, served + path, headers=bearer) as answer:
                statuses[name] = answer.status
    visitor = Visitor(served)
    async with visitor.http:
        await visitor.login(token)
        await visitor.get("/dashboard")
        statuses["dashboard"] = 200
    got["served"] = statuses
    stop.set()
    return url, got
