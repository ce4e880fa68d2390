"""`cronlink demo`: a newcomer sees refreshes, health checks and a needs_reauth quickly; each
new email classified by the sandbox's chat model through an `ai` step, a daily report
summarised by it and delivered as Markdown to a webhook, and what the model cost; the
model's key never shown."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cronlink.connections.crypto import ENV
from cronlink.demo import MODEL_KEY, demo, demo_key, demo_settings

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
        "refreshed", "health: unknown -> healthy", "needs_reauth",
        "classified urgent by model sandbox, summary posted", "daily report of",
        "nightly sync: copied 10000 records to the CRM in 20 pages",
    ]  # fmt: skip
    watcher = asyncio.create_task(sandbox_after(wanted, lines, stop))
    async with asyncio.timeout(90):
        await demo(settings, port=0, lifetime=4, say=lines.append, stop=stop)
    url, sandbox = await watcher
    assert lines[0].startswith("demo: sandbox provider at http://127.0.0.1:")
    assert any("connection 5: needs_reauth: sandbox refused the refresh" in x for x in lines)
    assert (tmp_path / "cronlink-demo.db").exists()

    summaries = sandbox["summaries"]
    assert {s["subject"]: s["label"] for s in summaries}.items() <= EXPECTED.items()
    assert all(
        re.fullmatch(r".+[.?!] \(\d+ words, \d+ sentences\)", s["summary"]) for s in summaries
    )
    classified = dict(
        re.findall(r"email (\d+) classified (\w+) by model sandbox", "\n".join(lines))
    )
    assert classified
    assert classified.items() <= {(str(s["email"]), s["label"]) for s in summaries}
    model = sandbox["stats"]["model"]
    assert model["requests"] >= len(classified) + 1  # each email, and the report's summary
    assert (model["ok"], model["unauthorized"]) == (model["requests"], 0)

    # The first report (a second one only if the test runs at the report's 18:00 UTC).
    delivered = next(x for x in lines if "daily report of" in x)
    found = re.search(r"report of (\d+) emails, summarised by model sandbox, delivered: "
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

    spent = [x for x in lines if "AI this month: model sandbox:" in x]
    assert len(spent) >= 2  # after the report, and at the end
    assert lines[-1] == spent[-1]
    calls = re.search(r"(\d+) calls \(0 failed\), ([\d,]+) tokens in and ([\d,]+) out, \$(\S+)",
                      lines[-1])  # fmt: skip
    assert calls, lines[-1]
    assert int(calls[1]) >= len(classified) + 1
    assert float(calls[4]) > 0
    assert KEY not in "\n".join(lines)
    assert KEY not in repr(sandbox["summaries"]) + sandbox["reports"][0]


async def test_the_demo_run_again_on_its_database_refreshes_its_new_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second demo replaces the first one's connections: the new ones get new ids, so
    their refresh runs are queued (their dedupe keys are new) and their tokens renewed.
    Without a model key of its own, the demo uses the sandbox's, never shown."""
    fresh_environment(monkeypatch, tmp_path)
    demo_key()
    for first_id in (1, 7):  # five mail connections and a CRM one a run
        lines: list[str] = []
        stop = asyncio.Event()
        wanted = [
            f"connection {first_id}: refreshed", f"connection {first_id + 4}: needs_reauth",
            "classified",
        ]  # fmt: skip
        watcher = asyncio.create_task(seen(wanted, lines, stop))
        async with asyncio.timeout(90):
            await demo(demo_settings(), port=0, lifetime=4, say=lines.append, stop=stop)
        await watcher
        assert os.environ[MODEL_KEY] == "sandbox-model-key"
        assert "sandbox-model-key" not in "\n".join(lines)


async def seen(wanted: list[str], lines: list[str], stop: asyncio.Event) -> None:
    """Stop the demo once each of `wanted` is in a line it said."""
    while not all(any(w in line for line in lines) for w in wanted):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    stop.set()


async def sandbox_after(
    wanted: list[str], lines: list[str], stop: asyncio.Event
) -> tuple[str, dict[str, Any]]:
    """Once each of `wanted` is in a line, the demo's sandbox's URL, its stats and what its
    `summaries` and `reports` webhooks got; then stop the demo."""
    while not all(any(w in line for line in lines) for w in wanted):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    url = os.environ["CRONLINK_SANDBOX_URL"]
    got: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        for name, path in (("stats", "stats"), ("summaries", "sink/summaries"),
                           ("reports", "sink/reports")):  # fmt: skip
            async with session.get(f"{url}/sandbox/{path}") as answer:
                got[name] = await answer.json()
    stop.set()
    return url, got
