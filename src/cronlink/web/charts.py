"""Charts drawn on the server as inline SVG: no script, and they scale with the page.

Colours come from the stylesheet by class (`ok`, `bad`, `other`), so the markup holds only
numbers, known class names and escaped titles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from markupsafe import Markup, escape

from cronlink.records.runs import RunState, Tier

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import date

    from cronlink.records.runs import DayUsage
    from cronlink.store.dashboard_queries import HourCount, RunPoint

WIDTH = 600
HEIGHT = 100
BAD = {RunState.FAILED.value, RunState.TIMED_OUT.value, RunState.DEAD.value}


def durations(points: Sequence[RunPoint]) -> Markup:
    """One bar per run, oldest on the left, as tall as its duration; a run without one
    (queued, running, cancelled before it started) is a short grey mark."""
    ordered = list(reversed(points))
    if not ordered:
        return Markup("")
    longest = max((p.duration_ms or 0 for p in ordered), default=0) or 1
    step = WIDTH / len(ordered)
    bars = []
    for index, point in enumerate(ordered):
        shown = point.duration_ms if point.duration_ms is not None else 0
        height = max(2.0, HEIGHT * shown / longest)
        kind = _kind(point.state) if point.duration_ms is not None else "other"
        took = f"{point.duration_ms} ms" if point.duration_ms is not None else "no duration"
        title = f"run {point.id} ({point.enqueued_at:%Y-%m-%d %H:%M} UTC): {point.state}, {took}"
        bars.append(_bar(index * step, height, step, kind, title))
    label = f"longest {_ms(longest)}"
    return _svg(bars, f"Durations of the last {len(ordered)} runs", label)


def hourly(hours: Sequence[HourCount]) -> Markup:
    """Runs per hour, the failed part stacked on top in the failure colour."""
    if not hours:
        return Markup("")
    most = max((h.runs for h in hours), default=0) or 1
    step = WIDTH / len(hours)
    bars = []
    for index, hour in enumerate(hours):
        title = f"{hour.hour:%Y-%m-%d %H:00} UTC: {hour.runs} runs, {hour.failed} failed"
        ok = hour.runs - hour.failed
        bars.append(_bar(index * step, HEIGHT * ok / most, step, "ok", title))
        if hour.failed:
            lifted = HEIGHT * ok / most
            bars.append(_bar(index * step, HEIGHT * hour.failed / most, step, "bad", title,
                             lifted))  # fmt: skip
    return _svg(bars, "Runs per hour over the last 24 hours", f"most {most} runs in an hour")


def daily(days: Sequence[DayUsage]) -> Markup:
    """Invocations per UTC day, light below and heavy stacked on top."""
    totals: dict[date, dict[Tier, int]] = {}
    for day in days:
        totals.setdefault(day.day, {})[day.tier] = day.invocations
    if not totals:
        return Markup("")
    ordered = sorted(totals.items())
    most = max(sum(tiers.values()) for _, tiers in ordered) or 1
    step = WIDTH / len(ordered)
    bars = []
    for index, (on, tiers) in enumerate(ordered):
        light, heavy = tiers.get(Tier.LIGHT, 0), tiers.get(Tier.HEAVY, 0)
        title = f"{on:%Y-%m-%d}: {light:,} light, {heavy:,} heavy invocations"
        bars.append(_bar(index * step, HEIGHT * light / most, step, "ok", title))
        if heavy:
            bars.append(_bar(index * step, HEIGHT * heavy / most, step, "other", title,
                             HEIGHT * light / most))  # fmt: skip
    return _svg(bars, "Invocations per day, light and heavy", f"most {most:,} in a day")


def _bar(x: float, height: float, step: float, kind: str, title: str, lift: float = 0) -> str:
    width = max(1.0, step * 0.8)
    y = HEIGHT - lift - height
    return (
        f'<rect class="{kind}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
        f'height="{height:.1f}"><title>{escape(title)}</title></rect>'
    )


def _svg(bars: list[str], description: str, label: str) -> Markup:
    # Stretched to the page's width: bars may widen, so the caption is HTML, not SVG text.
    return Markup(
        f'<figure class="chart"><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'preserveAspectRatio="none" aria-label="{escape(description)}">'
        f"<title>{escape(description)}</title>{''.join(bars)}</svg>"
        f"<figcaption>{escape(label)}</figcaption></figure>"
    )


def _kind(state: str) -> str:
    if state == RunState.SUCCEEDED.value:
        return "ok"
    return "bad" if state in BAD else "other"


def _ms(value: int) -> str:
    return f"{value} ms" if value < 10_000 else f"{value / 1000:.1f} s"
