"""Job definitions: what to run, where, when, and under which policies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronlink.cron import CronExpr, check_fires, parse
from cronlink.durations import parse_duration
from cronlink.policies.misfire import Misfire
from cronlink.policies.retry import RetryPolicy
from cronlink.records.runs import NewRun, Overlap, Reason, Tier

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from cronlink.context import RunContext

    Handler = Callable[[RunContext], Awaitable[Any] | Any]

DEFAULT_TIMEOUT = {Tier.LIGHT: timedelta(seconds=30), Tier.HEAVY: timedelta(minutes=60)}
DEFAULT_MEMORY_LIMIT = 2 * 1024**3


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleSpec:
    """A cron expression in an IANA zone, with optional jitter."""

    cron: CronExpr
    timezone: str = "UTC"
    jitter: timedelta = timedelta(0)
    zone: tzinfo = UTC
    """The zone as a tzinfo; plain `UTC` for UTC, which takes the engine's fast path."""

    @property
    def key(self) -> str:
        return f"{self.cron.source}|{self.timezone}"


def schedule(
    cron: str,
    timezone: str = "UTC",
    jitter: timedelta = timedelta(0),
    *,
    fires_after: datetime | None = None,
) -> ScheduleSpec:
    """A `ScheduleSpec` from text; raises `CronSyntaxError` or `ValueError` (unknown zone).

    Where a schedule is defined, `fires_after` (now) also refuses one that never fires
    after it (`CronSyntaxError` saying why); one already stored is taken as it is."""
    zone = UTC if timezone in ("UTC", "Etc/UTC") else time_zone(timezone)
    spec = ScheduleSpec(cron=parse(cron), timezone=timezone, jitter=jitter, zone=zone)
    if fires_after is not None:
        check_fires(spec.cron, spec.zone, fires_after)
    return spec


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; `ValueError` for anything else, a folder of zones such as
    "America" included (zoneinfo itself raises whatever reading that path raised)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpTarget:
    """An HTTP call in the style of a cloud scheduler; `${VAR}` in url, headers and body
    is read from the environment at call time, so secrets never sit in stored records."""

    url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    sign: bool = False
    """Sign each call with the current key of CRON_SIGNING_KEY (`cronlink.signatures`)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    name: str
    tier: Tier = Tier.LIGHT
    handler: Handler | None = None
    handler_path: str | None = None
    """`module:function`, how heavy-tier children find the handler."""
    target: HttpTarget | None = None
    schedules: tuple[ScheduleSpec, ...] = ()
    timeout: timedelta = DEFAULT_TIMEOUT[Tier.LIGHT]
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    overlap: Overlap = Overlap.SKIP
    misfire: Misfire = Misfire.LATEST
    misfire_grace: timedelta = timedelta(hours=1)
    description: str = ""


def new_run(
    job: Job,
    reason: Reason,
    *,
    payload: Any = None,
    scheduled_for: datetime | None = None,
    not_before: datetime | None = None,
    dedupe_key: str | None = None,
    traceparent: str | None = None,
) -> NewRun:
    """The run request for one execution of `job`, carrying its tier and policies."""
    return NewRun(
        job=job.name,
        tier=job.tier,
        reason=reason,
        payload=payload,
        scheduled_for=scheduled_for,
        not_before=not_before,
        max_attempts=job.retry.max_attempts,
        overlap=job.overlap,
        dedupe_key=dedupe_key,
        traceparent=traceparent,
    )


def with_overrides(
    jobs: Mapping[str, Job], overrides: Mapping[str, list[tuple[str, str]]]
) -> dict[str, Job]:
    """The jobs, with the schedules changed through the admin API in place of their
    configured ones (keeping each job's jitter). Overrides of jobs no longer defined are
    ignored."""
    changed = dict(jobs)
    for name, pairs in overrides.items():
        job = jobs.get(name)
        if job is None:
            continue
        jitter = job.schedules[0].jitter if job.schedules else timedelta(0)
        specs = tuple(schedule(cron, zone, jitter) for cron, zone in pairs)
        changed[name] = dataclasses.replace(job, schedules=specs)
    return changed


def build_job(
    *,
    name: str,
    schedules: list[str],
    tier: str = "light",
    timezone: str = "UTC",
    timeout: str | float | timedelta | None = None,
    max_attempts: int = 3,
    min_backoff: str | float | timedelta = "1s",
    max_backoff: str | float | timedelta = "5m",
    retry_on: Iterable[type[BaseException] | str | int] = (),
    overlap: str = "skip",
    misfire: str = "latest",
    misfire_grace: str | float | timedelta = "1h",
    jitter: str | float | timedelta = 0,
    **rest: Any,
) -> Job:
    """A `Job` from plain values, checked; raises `ValueError` naming what is wrong (a
    `CronSyntaxError` for a schedule that does not parse or never fires)."""
    tier_value = _choice(Tier, tier, "tier")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    twice = sorted({s for s in schedules if schedules.count(s) > 1})
    if twice:
        raise ValueError(f"schedule {twice[0]!r} is listed twice")
    now = datetime.now(UTC)
    return Job(
        name=name,
        tier=tier_value,
        schedules=tuple(
            schedule(s, timezone, parse_duration(jitter), fires_after=now) for s in schedules
        ),
        timeout=parse_duration(timeout) if timeout is not None else DEFAULT_TIMEOUT[tier_value],
        retry=RetryPolicy(
            max_attempts=max_attempts,
            min_backoff=parse_duration(min_backoff),
            max_backoff=parse_duration(max_backoff),
            retry_on=tuple(r if isinstance(r, str | int) else r.__name__ for r in retry_on),
        ),
        overlap=_choice(Overlap, overlap, "overlap"),
        misfire=_choice(Misfire, misfire, "misfire"),
        misfire_grace=parse_duration(misfire_grace),
        **rest,
    )


E = TypeVar("E", Tier, Overlap, Misfire)


def _choice(kind: type[E], value: str, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"{what} must be one of {allowed}, not {value!r}") from None
