"""The sections of `cronlink.toml` as strict pydantic models: what each key may hold.

`config.py` reads the file into `FileModel` and turns it into `Settings`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from cronlink.durations import format_duration, parse_duration
from cronlink.egress import parse_networks
from cronlink.jobs import DEFAULT_MEMORY_LIMIT, schedule, time_zone

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}  # fmt: skip
Duration = Annotated[str | float, Field(union_mode="left_to_right")]
MAX_COUNT = 10**9
"""The most any count or rate may be: far past any real need, and inside every integer
type cronlink hands it to (TOML allows 64-bit integers, and inf and nan for floats)."""
MAX_AMOUNT = 1e12
Text = Annotated[str, Field(max_length=2000)]


def _fires(text: str, timezone: str = "UTC") -> str:
    """`text` when it is a cron expression that fires from now on in `timezone`."""
    schedule(text, timezone, fires_after=datetime.now(UTC))
    return text


Cron = Annotated[str, AfterValidator(_fires)]
"""A cron expression (in UTC) that parses and fires."""


def _span(value: object) -> timedelta:
    if not isinstance(value, str | int | float | timedelta):
        raise ValueError("is not a duration; write it like 30s, 15m, 1h30m or 2d")
    return parse_duration(value)


Span = Annotated[timedelta, BeforeValidator(_span)]
"""A setting's duration, written `30s`, `5m`, `1h30m` or in seconds; parsed once, here."""


def _size(value: object) -> int:
    """A size in bytes from `512MiB`-style text or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a size; write it like 512MiB or 2GiB")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])


Size = Annotated[int, BeforeValidator(_size)]
"""A setting's size in bytes, written `16KiB`, `1MiB` or in bytes; parsed once, here."""


def _at_least(value: timedelta, least: timedelta) -> timedelta:
    if value < least:
        raise ValueError(
            f"{format_duration(value)} is too short; give at least {format_duration(least)}"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TargetModel(_Strict):
    url: Annotated[str, Field(min_length=1, max_length=2000)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    headers: Annotated[dict[str, Text], Field(max_length=100)] = {}
    body: Annotated[str | None, Field(max_length=1_000_000)] = None
    sign: bool = False
    """Send `X-Cronlink-Signature` made with CRON_SIGNING_KEY (a target that is a cronlink)."""


class JobModel(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")]
    handler: Text | None = None
    target: TargetModel | None = None
    timezone: Annotated[str, Field(min_length=1, max_length=100)] = "UTC"
    """Before the schedules: they are checked in it."""
    schedule: Text | None = None
    schedules: Annotated[list[Text], Field(max_length=100)] = []
    tier: Literal["light", "heavy"] = "light"
    timeout: Duration | None = None
    memory_limit: Size = DEFAULT_MEMORY_LIMIT
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    min_backoff: Duration = "1s"
    max_backoff: Duration = "5m"
    retry_on: list[str | int] = []
    overlap: Literal["skip", "queue", "allow", "replace"] = "skip"
    misfire: Literal["latest", "all", "skip"] = "latest"
    misfire_grace: Duration = "1h"
    jitter: Duration = 0
    description: Text = ""

    @field_validator("timeout", "min_backoff", "max_backoff", "misfire_grace", "jitter")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        time_zone(value)
        return value

    @field_validator("schedule", "schedules")
    @classmethod
    def _schedules(
        cls, value: str | list[str] | None, info: ValidationInfo
    ) -> str | list[str] | None:
        timezone = info.data.get("timezone")
        if timezone is None or value is None:  # a bad zone: its own error names it
            return value
        if isinstance(value, str):
            return _fires(value, timezone)
        for index, text in enumerate(value):
            try:
                _fires(text, timezone)
            except ValueError as error:
                raise ValueError(f"[{index}] {error}") from None
        return value


class WorkerModel(_Strict):
    light_concurrency: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 100
    heavy_concurrency: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    lease: Span = timedelta(seconds=30)
    heartbeat: Span = timedelta(seconds=10)
    poll: Span = timedelta(milliseconds=500)
    shutdown_grace: Span = timedelta(seconds=30)


class ConnectionsModel(_Strict):
    """`[connections]`: present to turn on connections and their built-in jobs."""

    providers: str | None = None
    """A folder of provider files (TOML) added to, or overriding, the shipped ones."""
    refresh_schedule: Cron = "0 * * * *"
    health_schedule: Cron = "*/5 * * * *"
    down_after: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 3
    """Failed probes in a row before a connection is `down`."""
    up_after: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 2
    """Successful probes in a row before a `down` connection is `healthy` again."""
    passive_window: Span = timedelta(minutes=5)
    """A successful real call this recent stands in for a probe."""
    probe_concurrency: Annotated[int, Field(ge=1, le=1000)] = 100
    refresh_lease: Span = timedelta(seconds=60)
    """How long a refresh holds its connection (its token request may take half)."""

    @field_validator("passive_window", "refresh_lease")
    @classmethod
    def _duration(cls, value: timedelta) -> timedelta:
        return _at_least(value, timedelta(seconds=2))


class AutomationsModel(_Strict):
    """`[automations]`: how triggers are polled and automations processed (the jobs are
    on whenever `[connections]` is)."""

    poll_schedule: Cron = "* * * * *"
    process_schedule: Cron = "*/15 * * * *"
    poll_concurrency: Annotated[int, Field(ge=1, le=1000)] = 100
    poll_batch: Annotated[int, Field(ge=1, le=10_000)] = 500
    poll_lease: Span = timedelta(seconds=60)
    """How long a poll holds its automation (a poller that died lets go after this)."""
    retention: Span = timedelta(days=30)
    """How long event keys are kept to recognise repeats (a time window, not a count)."""
    stalled_after: Span = timedelta(hours=24)
    """An active trigger whose watermark stands still this long is reported stalled."""
    failing_after: Span = timedelta(minutes=15)
    """... and one whose polls keep failing this long."""

    @field_validator("poll_lease", "retention", "stalled_after", "failing_after")
    @classmethod
    def _duration(cls, value: timedelta) -> timedelta:
        return _at_least(value, timedelta(seconds=2))


class ServeModel(_Strict):
    """`[serve]`: the HTTP service (`cronlink serve`)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    trusted_proxies: list[str] = []
    """Networks whose `X-Forwarded-For` is believed (your load balancer's), e.g. 10.0.0.0/8."""
    address_rate: Annotated[float, Field(gt=0, le=MAX_AMOUNT)] = 20.0
    """Requests per second one client address may make (after a burst of `address_burst`)."""
    address_burst: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 40
    credential_rate: Annotated[float, Field(gt=0, le=MAX_AMOUNT)] = 200.0
    """Requests per second one credential (a token, the cron secret) may make."""
    credential_burst: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 400
    require_signature: bool = False
    """Refuse /cron/* calls without a good `X-Cronlink-Signature` (not the bearer alone)."""
    max_body: Size = 1024**2
    """The largest request body accepted (413 beyond)."""
    request_timeout: Span = timedelta(seconds=30)
    """A request not answered by then is cut off (408): a slow client cannot pin it."""
    max_headers: Size = 16 * 1024
    """The most header bytes a request may carry, all headers together (431 beyond)."""
    max_json_depth: Annotated[int, Field(ge=1, le=512)] = 32
    """How deep a JSON body may nest (400 beyond), checked before any parser recurses."""
    header_timeout: Span = timedelta(seconds=10)
    """A request's line and headers not whole by then (from the socket opening, or from the
    first byte of a later request on it) close the socket with 408."""
    max_sockets: Annotated[int, Field(ge=1)] = 4096
    """The most client sockets open at once; idle ones make room for newcomers."""
    max_sockets_per_address: Annotated[int, Field(ge=1)] = 128
    """The most one client address (an IPv6 /64) may hold; `trusted_proxies` are bounded
    by `max_sockets` only."""
    public_url: str | None = None
    """The address browsers reach this service at (`https://cron.example.com`), when a
    proxy terminates TLS in front of it: OAuth redirect URIs and cookies are built on it.
    Unset: the address of the request."""

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"{value!r} is not a base URL like https://cron.example.com")
        return value.rstrip("/")

    @field_validator("request_timeout", "header_timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if not value:
            raise ValueError("leaves no time at all; give a duration like 10s")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an IP network like 10.0.0.0/8") from None
        return value


RuleName = Literal[
    "run-dead", "job-failing", "job-silent", "connection-reauth", "connection-down",
    "trigger-stalled", "job-slow", "usage-quota",
]  # fmt: skip


def _apprise_url(value: str) -> str:
    # Imported here: apprise loads its ~100 plugins, which only [alerts] needs.
    from cronlink.observe.notify import url_problem

    problem = url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class AlertsModel(_Strict):
    """`[alerts]`: present to turn on the `watch-alerts` job and its messages."""

    urls: Annotated[
        list[Annotated[str, AfterValidator(_apprise_url)]], Field(min_length=1, repr=False)
    ]
    """Apprise URLs, one per channel; `${NAME}` is read from the environment when sending.
    They hold secrets: shown redacted, never logged."""
    schedule: Cron = "* * * * *"
    rules: list[RuleName] = list(get_args(RuleName))
    failing_after: Annotated[int, Field(ge=1, le=1000)] = 3
    """Runs of a job failing in a row before `job-failing` fires."""
    grace: Span = timedelta(minutes=5)
    """How late a scheduled job's success may be before `job-silent` fires."""
    p95_ratio: Annotated[float, Field(gt=0, le=1)] = 0.8
    """`job-slow` fires when a light job's p95 duration reaches this share of its timeout."""
    p95_runs: Annotated[int, Field(ge=5, le=10_000)] = 50
    """The newest finished runs the p95 is taken over."""
    max_messages: Annotated[int, Field(ge=2, le=10_000)] = 20
    """Messages sent per `window` at most; the last one summarises the rest."""
    window: Span = timedelta(hours=1)
    repeat: Span | None = None
    """Send a still-firing alert again this long after its last message (unset: never)."""
    label: Annotated[str, Field(min_length=1, max_length=100)] = "cronlink"
    """Starts each subject: which deployment speaks."""

    @field_validator("grace", "window", "repeat")
    @classmethod
    def _duration(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else _at_least(value, timedelta(seconds=1))


class UsageModel(_Strict):
    """`[usage]`: the free allowances of the hosted services cronlink stands in for, which
    `cronlink usage`, `cronlink advise` and the `usage-quota` alert compare against."""

    light_per_day: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 100_000
    """Invocations a day of a hosted light cron runner's free plan."""
    heavy_per_month: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 2_000_000
    """Requests a month of a heavy HTTP service's free tier."""
    scheduler_jobs: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 3
    """Jobs a cloud scheduler keeps free."""
    light_triggers: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 5
    """Cron triggers a hosted light runner's free plan allows (one per distinct schedule,
    or one for all with `cronlink export wrangler --pack`)."""


class PricingModel(_Strict):
    """`[pricing]`: what `cronlink advise` prices the load at, in your currency. The
    defaults are published list prices, in US dollars: put your plan's in."""

    light_plan: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 5.0
    """A hosted light runner's paid plan a month, once past the free daily quota."""
    light_included: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 10_000_000
    """Invocations a month the paid plan includes."""
    light_per_million: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 0.30
    scheduler_job: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 0.10
    """Per scheduled job a month, past the free ones."""
    heavy_vcpu_second: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 0.000024
    heavy_gib_second: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 0.0000025
    heavy_per_million: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 0.40
    heavy_free_vcpu_seconds: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 180_000
    heavy_free_gib_seconds: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 360_000
    heavy_memory_gib: Annotated[float, Field(gt=0, le=MAX_AMOUNT)] = 0.5
    """Memory a heavy service instance is given: it is billed for that while it runs."""


def _api_key(value: str) -> str:
    if not _KEY_REFERENCE.fullmatch(value):
        raise ValueError(
            "must name an environment variable, written like ${OPENAI_API_KEY}: a key "
            "written in the file is refused (files get copied, committed and shown)"
        )
    return value


_KEY_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class ChatModelModel(_Strict):
    """`[ai.models.NAME]`: a chat model the `ai` step and `ctx.ai` may call."""

    base_url: Annotated[str, Field(max_length=2000)]
    """Where the protocol's paths start, like https://api.openai.com/v1."""
    model: Annotated[str, Field(min_length=1, max_length=200)]
    """The provider's id of the model, like gpt-4o-mini."""
    api_key: Annotated[str, AfterValidator(_api_key), Field(repr=False)]
    """`${NAME}`, read from the environment when a call is made."""
    protocol: Literal["openai"] = "openai"
    """The wire format: OpenAI's chat completions, which most hosted and local servers
    speak (the only one so far)."""
    timeout: Span = timedelta(seconds=60)
    """Each request's deadline, the answer read whole."""
    max_output_tokens: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 1024
    """The answer's length unless a step asks for less or more."""
    input_price: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 0.0
    """US dollars per million input (prompt) tokens."""
    output_price: Annotated[float, Field(ge=0, le=MAX_AMOUNT)] = 0.0
    """US dollars per million output (completion) tokens."""
    rpm: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    """Requests a minute the provider allows this key."""
    tpm: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    """Tokens a minute the provider allows this key."""
    budget_usd: Annotated[float, Field(gt=0, le=MAX_AMOUNT)] | None = None
    """What this model may cost."""

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError(f"{value!r} is not a base URL like https://api.openai.com/v1")
        if parts.username or parts.password or parts.fragment:
            raise ValueError("give the base URL alone: no credentials nor fragment in it")
        return value.rstrip("/")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if value > timedelta(hours=1):
            raise ValueError(f"{format_duration(value)} is too long; give at most 1h")
        return _at_least(value, timedelta(seconds=1))


class AiModel(_Strict):
    """`[ai]`: the chat models automations may call, by name."""

    models: Annotated[dict[ModelName, ChatModelModel], Field(max_length=1000)] = {}

    @property
    def budgets(self) -> dict[str, float | None]:
        """Each model's monthly budget (US dollars), by name."""
        return {name: model.budget_usd for name, model in self.models.items()}


class FileModel(_Strict):
    database_url: str | None = None
    app: str | None = None
    allow_private_networks: bool = False
    """Let outbound requests reach loopback, private, link-local and shared addresses
    (development, a sandbox); off, only public addresses are reached (see egress.py)."""
    private_networks: list[str] = []
    """Networks outbound requests may reach whatever their kind, e.g. 10.1.0.0/16."""
    worker: WorkerModel = WorkerModel()
    connections: ConnectionsModel | None = None
    automations: AutomationsModel = AutomationsModel()
    serve: ServeModel = ServeModel()
    alerts: AlertsModel | None = None
    usage: UsageModel = UsageModel()
    pricing: PricingModel = PricingModel()
    ai: AiModel = AiModel()
    jobs: list[JobModel] = []

    @field_validator("private_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value
