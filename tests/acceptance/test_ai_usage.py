"""What chat models cost, as users read it: `cronlink usage` (each model's month against
its budget), `cronlink advise` (a light job calling a model, a model that makes most of
the month's cost, a budget the pace will spend), the usage alert and `/metrics`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cronlink.ai import ChatModel, Models
from cronlink.observe.metrics import exposition
from cronlink.observe.usage import month_start
from cronlink.records.ai_calls import AiCall
from cronlink.records.runs import RunState, Tier
from cronlink.store import Store
from tests.acceptance.sandbox_kit import Kit, kit
from tests.acceptance.test_usage_cli import cronlink_json
from tests.acceptance.worker_kit import enqueue, finished, running_worker

__all__ = ["kit"]
CONFIG = """\
app = "tests.acceptance.handlers:app"
[ai.models.fast]
base_url = "{url}/v1"
model = "sandbox-model"
api_key = "${{SANDBOX_MODEL_KEY}}"
input_price = 2.0
output_price = 8.0
[ai.models.big]
base_url = "{url}/v1"
model = "sandbox-model"
api_key = "${{SANDBOX_MODEL_KEY}}"
budget_usd = {budget}
"""


def big_call(now: datetime) -> AiCall:
    return AiCall(
        model="big", at=now, job="weekly-report", run_id=None, attempt=1,
        input_tokens=4_000_000, output_tokens=500_000, cost_usd=40.0, requests=3, answered=True,
    )  # fmt: skip


async def test_usage_advice_and_metrics_show_what_models_cost(
    kit: Kit, sqlite_store: Store, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_MODEL_KEY", "sandbox-model-key")
    fast = ChatModel(
        name="fast", base_url=f"{kit.sandbox.url}/v1", model="sandbox-model",
        api_key="${SANDBOX_MODEL_KEY}", input_price=2.0, output_price=8.0,
    )  # fmt: skip
    async with running_worker(sqlite_store, Tier.LIGHT, ai=Models({"fast": fast})):
        runs = [await enqueue(sqlite_store, "ask-model", f"review {n}") for n in range(3)]
        for run_id in runs:
            assert (await finished(sqlite_store, run_id)).state is RunState.SUCCEEDED
    now = datetime.now(UTC)
    await sqlite_store.ai.record(big_call(now))
    # A budget this month's pace passes before its end, not yet spent.
    fraction = (now - month_start(now)) / (month_start(now + timedelta(days=32)) - month_start(now))
    budget = round((40.0 + 40.0 / fraction) / 2, 2)
    (tmp_path / "cronlink.toml").write_text(CONFIG.format(url=kit.sandbox.url, budget=budget))
    args = ("--database-url", db_url)

    usage = await cronlink_json("usage", *args, cwd=tmp_path)
    by_model = {m["model"]: m for m in usage["models"]}
    assert set(by_model) == {"big", "fast"}
    stats: dict[str, Any] = await kit.stats()
    billed = stats["model"]
    assert (by_model["fast"]["calls"], by_model["fast"]["input_tokens"]) == (
        3, billed["prompt_tokens"],
    )  # fmt: skip
    assert by_model["fast"]["budget_usd"] is None
    assert (by_model["big"]["cost_usd"], by_model["big"]["budget_usd"]) == (40.0, budget)
    assert by_model["big"]["projected_usd"] == pytest.approx(40.0 / fraction, rel=0.01)
    assert [w["quota"] for w in usage["near_quota"]] == (["ai:big"] if 0.8 * budget <= 40 else [])

    advice = await cronlink_json("advise", *args, cwd=tmp_path)
    said = {(a["subject"], a["recommendation"].split(":")[0]) for a in advice["recommendations"]}
    assert ("job ask-model", 'run it heavy (tier = "heavy")') in said
    assert ("model big", "it makes 100% of what models cost this month") in said
    assert ("model big", f"at this pace it spends its ${budget:,.2f} budget before the month "
            "ends, and its calls stop then") in said  # fmt: skip

    shown = await cronlink_json("run", "show", str(runs[0]), *args, cwd=tmp_path)
    [call] = shown["ai_calls"]
    assert (call["model"], call["attempt"], call["answered"], call["requests"]) == (
        "fast", 1, True, 1,
    )  # fmt: skip
    assert call["cost_usd"] == pytest.approx(fast.cost(call["input_tokens"], call["output_tokens"]))

    text = exposition(await sqlite_store.snapshot(now)).decode()
    fast_input = by_model["fast"]["input_tokens"]
    assert f'cronlink_ai_tokens_total{{kind="input",model="fast"}} {float(fast_input)}' in text
    assert 'cronlink_ai_tokens_total{kind="output",model="big"} 500000.0' in text
    assert 'cronlink_ai_cost_usd_total{model="big"} 40.0' in text
    assert 'cronlink_ai_calls_total{model="fast",outcome="answered"} 3.0' in text
    assert "sandbox-model-key" not in text
