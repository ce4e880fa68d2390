"""`cronlink usage` and `cronlink advise` over runs a real worker made."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from cronlink.records.runs import Tier
from cronlink.store import Store
from tests.acceptance.worker_kit import enqueue, finished, running_worker

ROOT = Path(__file__).resolve().parents[2]


async def cronlink_json(*args: str, cwd: Path) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronlink", *args, "--json", cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_usage_and_advice_from_real_runs(
    sqlite_store: Store, db_url: str, tmp_path: Path
) -> None:
    heavy = [await enqueue(sqlite_store, "spin", 0.3) for _ in range(2)]
    light = [await enqueue(sqlite_store, "ok") for _ in range(3)]
    async with running_worker(sqlite_store, Tier.HEAVY), running_worker(sqlite_store, Tier.LIGHT):
        for run_id in heavy + light:
            await finished(sqlite_store, run_id)
    args = ("--database-url", db_url, "--app", "tests.acceptance.handlers:app")

    usage = await cronlink_json("usage", *args, cwd=tmp_path)
    [light_day, heavy_day] = sorted(usage["days"], key=lambda d: d["tier"], reverse=True)
    assert (light_day["tier"], light_day["runs"], light_day["invocations"]) == ("light", 3, 3)
    assert (heavy_day["tier"], heavy_day["runs"]) == ("heavy", 2)
    assert heavy_day["cpu_seconds"] > 0.1
    assert heavy_day["memory_gib_s"] > 0
    assert usage["month"]["heavy"]["invocations"] == 2
    assert usage["projected_invocations"]["heavy"] >= 2
    assert usage["quotas"] == {"light_per_day": 100_000, "heavy_per_month": 2_000_000,
                               "scheduler_jobs": 3, "light_triggers": 5}  # fmt: skip

    advice = await cronlink_json("advise", *args, cwd=tmp_path)
    # `spin` runs heavy for 0.3 s in well under 128 MiB: it would fit the light tier.
    assert [a["subject"] for a in advice["recommendations"]] == ["job spin"]
    assert "MiB over 2 runs" in advice["recommendations"][0]["figures"]
    assert [c["monthly"] for c in advice["hosted_monthly"]] == [0.0, 0.0, 0.0]
    assert advice["self_hosted_monthly_heavy"]["cpu_seconds"] > 0

    # The same hour in two zones is two triggers on a light runner, which runs in UTC.
    jobs = [
        ("a", "0 * * * *", "UTC"),
        ("b", "0 * * * *", "Europe/Paris"),
        ("c", "0 * * * *", "UTC"),
    ]
    (tmp_path / "cronlink.toml").write_text("[usage]\nlight_triggers = 1\n" + "".join(
        f'[[jobs]]\nname = "{name}"\ntarget = {{ url = "http://127.0.0.1:9/" }}\n'
        f'schedule = "{cron}"\ntimezone = "{zone}"\n' for name, cron, zone in jobs
    ))  # fmt: skip
    packing = await cronlink_json("advise", *args, cwd=tmp_path)
    assert ("cron triggers", "2 distinct schedules, 1 triggers on a free plan") in [
        (a["subject"], a["figures"]) for a in packing["recommendations"]
    ]
