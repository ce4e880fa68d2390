"""A `call` step that makes a report with the helper any handler can use (imported by name,
in heavy children too)."""

from __future__ import annotations

from typing import Any

from cronlink.reports import deliver, render


async def weekly_csv(event: dict[str, Any], ctx: Any) -> list[str]:
    records = [{"id": event["id"], "subject": event["subject"]}, {"id": 0, "note": "a, b"}]
    report = render({"format": "csv", "rows": "{records}", "title": "Week {{ n }}"},
                    {"records": records, "n": 9})  # fmt: skip
    return await deliver(
        report,
        [{"http": {"url": ctx.params["hook"]}}, {"file": ctx.params["folder"] + "/{{ n }}.csv"}],
        session=ctx.session, values={"n": 9}, idempotency_key=ctx.idempotency_key,
    )  # fmt: skip
