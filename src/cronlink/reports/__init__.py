"""Reports: data rendered through a Jinja2 template into Markdown, HTML, CSV or JSON, and
delivered to apprise channels, HTTP endpoints and files.

The `report` automation step is this, and any handler can do the same:

    from cronlink.reports import deliver, render

    report = render({"format": "csv", "rows": "{records}"}, {"records": records})
    await deliver(report, [{"file": "reports/{{ now.date() }}.csv"}], session=session)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cronlink.errors import ConfigError
from cronlink.reports import delivery
from cronlink.reports.rendering import Report, csv_text, render, spec_of
from cronlink.reports.spec import Delivery, HttpDelivery, ReportSpec

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import aiohttp

__all__ = [
    "Delivery", "HttpDelivery", "Report", "ReportSpec", "csv_text", "deliver", "render",
    "spec_of",
]  # fmt: skip


async def deliver(
    report: Report,
    destinations: Sequence[Delivery | Mapping[str, Any]],
    *,
    session: aiohttp.ClientSession,
    values: Mapping[str, Any] | None = None,
    base: Path | None = None,
    idempotency_key: str | None = None,
) -> list[str]:
    """Send `report` to each destination (a `Delivery`, or a dict with the keys of a
    `report` step's `deliver` entry); returns them, shown redacted. A failure is a
    `StepError` whose `retryable` says whether trying again may help; see
    `cronlink.reports.delivery` for the details and for skipping those already done."""
    checked = [_delivery(d, i) for i, d in enumerate(destinations)]
    return await delivery.deliver(
        report, checked, session=session, values=values, base=base,
        idempotency_key=idempotency_key,
    )  # fmt: skip


def _delivery(destination: Delivery | Mapping[str, Any], index: int) -> Delivery:
    if isinstance(destination, Delivery):
        return destination
    try:
        return spec_of({"format": "json", "data": "{x}", "deliver": [dict(destination)]}).deliver[0]
    except ConfigError as error:
        raise ConfigError(str(error).replace("deliver.0", f"deliver[{index}]", 1)) from None
