"""Traces (OpenTelemetry): every attempt a span, its outbound calls and steps spans within it.

Off unless the standard variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER`) and the `otel` extra is
installed. Off, nothing of OpenTelemetry is imported and each hook is one check of a
module global: `span` hands back a shared no-op context, `traceparent` None.

On, a process has one tracer provider exporting over OTLP/HTTP in batches (`start` at a
role's start, `stop` at its end flushes). A run's trace context travels as a W3C
`traceparent` string: on the run when a caller sent one (`POST /cron/{job}`), to a heavy
run's process, and to HTTP targets and every other outbound request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import SimpleNamespace

    import aiohttp
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from cronlink.records.runs import Run, RunError, RunState

log = logging.getLogger("cronlink.tracing")

ASKING = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
EXPORTER = "OTEL_TRACES_EXPORTER"
TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
"""W3C Trace Context, version 00 (a caller's header is taken only in this exact form)."""

PRELOAD = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)
"""What a heavy run's process imports to trace: loaded once by the fork server."""

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (`OTEL_TRACES_EXPORTER=none` says no)."""
    exporter = env.get(EXPORTER, "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or any(env.get(name) for name in ASKING)


def start(env: Mapping[str, str] | None = None) -> bool:
    """Set up this process's tracer when the environment asks for it; True when on."""
    global _tracer, _provider
    env = os.environ if env is None else env
    if _tracer is not None or not wanted(env):
        return _tracer is not None
    exporter = env.get(EXPORTER, "otlp").strip().lower() or "otlp"
    if exporter not in ("otlp", "console"):
        log.warning("%s=%s is not supported (otlp or console): no traces", EXPORTER, exporter)
        return False
    try:
        provider = _provider_for(exporter)
    except ImportError:
        log.warning("traces are asked for but not installed: pip install 'cronlink[otel]'")
        return False
    _provider, _tracer = provider, provider.get_tracer("cronlink")
    return True


def _provider_for(exporter: str) -> TracerProvider:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "cronlink"}))
    provider = TracerProvider(resource=resource)
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # A handler's own spans (OpenTelemetry's global tracer) join the attempt's trace; the
    # global can be set once per process, so a later provider (tests) leaves it be.
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider


def stop() -> None:
    """Export what is left and turn tracing off (blocks on the exporter: call it off the
    event loop when the collector may be served by that loop)."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    """Whether this process traces."""
    return _tracer is not None


def carried() -> dict[str, str] | None:
    """The variables a heavy run's process needs to trace as this one does (None: off).
    Handed over with the run, not inherited: the fork server kept the environment it was
    started with."""
    if _tracer is None:
        return None
    return {name: value for name, value in os.environ.items() if name.startswith("OTEL_")}


def accepted(header: str | None) -> str | None:
    """A caller's `traceparent` header as a run keeps it, or None if absent or malformed."""
    if header is None:
        return None
    header = header.strip()
    return header if TRACEPARENT.fullmatch(header) else None


def traceparent() -> str | None:
    """The current span's context as a `traceparent` (None when off or outside a span)."""
    if _tracer is None:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, parent: str | None = None
) -> contextlib.AbstractContextManager[Span | None]:
    """A span around the block, current within it, child of the current span or of
    `parent` (a `traceparent`); an exception leaving the block marks it as an error."""
    if _tracer is None:
        return _OFF
    return _opened(_tracer, name, attributes, parent)


@contextlib.contextmanager
def _opened(
    tracer: Tracer, name: str, attributes: Mapping[str, Any] | None, parent: str | None
) -> Iterator[Span]:
    context = None
    if parent is not None:
        from opentelemetry import propagate

        context = propagate.extract({"traceparent": parent})
    # An exception's message and traceback are not recorded: they may quote a secret.
    with tracer.start_as_current_span(
        name, context=context, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as opened:  # fmt: skip
        try:
            yield opened
        except Exception as error:
            _failed(opened, type(error).__name__)
            raise


def attempt(run: Run) -> contextlib.AbstractContextManager[Span | None]:
    """The span of one attempt of `run`, continuing the trace its caller sent, if any."""
    if _tracer is None:
        return _OFF
    attributes = {
        "cronlink.job": run.job,
        "cronlink.run_id": run.id,
        "cronlink.tier": run.tier.value,
        "cronlink.reason": run.reason.value,
        "cronlink.attempt": run.attempt,
    }
    if run.scheduled_for is not None:
        attributes["cronlink.scheduled_for"] = run.scheduled_for.isoformat()
    return _opened(_tracer, "cronlink.attempt", attributes, run.traceparent)


def note(opened: Span | None, attributes: Mapping[str, str | int | float]) -> None:
    """Add what became known inside a span (None: not traced)."""
    if opened is not None:
        opened.set_attributes(attributes)


def ended(opened: Span | None, state: RunState, error: RunError | None) -> None:
    """Mark an attempt's span with how it ended."""
    if opened is None:
        return
    opened.set_attribute("cronlink.outcome", state.value)
    if error is not None:
        _failed(opened, error.type)


def _failed(opened: Span, type_name: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    opened.set_attribute("error.type", type_name)
    opened.set_status(Status(StatusCode.ERROR))


def request_spans() -> aiohttp.TraceConfig:
    """A client span for each request a session makes, its `traceparent` sent along.

    Only the method, host and port are recorded: a path or a query may hold a secret (a
    webhook's token, a `${VARIABLE}`)."""
    import aiohttp

    config = aiohttp.TraceConfig()
    config.on_request_start.append(_request_started)
    config.on_request_end.append(_request_ended)
    config.on_request_exception.append(_request_failed)
    return config


async def _request_started(
    _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
) -> None:
    if _tracer is None:
        return
    from opentelemetry import propagate, trace

    url = params.url
    ctx.span = _tracer.start_span(
        f"{params.method} {url.host}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "http.request.method": params.method,
            "server.address": url.host or "",
            "server.port": url.port or 0,
        },
    )
    propagate.inject(params.headers, context=trace.set_span_in_context(ctx.span))


async def _request_ended(
    _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    status = params.response.status
    _closed(ctx, "http.response.status_code", status, failed=status >= 400)


async def _request_failed(
    _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
) -> None:
    _closed(ctx, "error.type", type(params.exception).__name__, failed=True)


def _closed(ctx: SimpleNamespace, key: str, value: str | int, *, failed: bool) -> None:
    opened: Span | None = getattr(ctx, "span", None)
    if opened is None:  # started before tracing was (or while it was off)
        return
    from opentelemetry.trace import Status, StatusCode

    opened.set_attribute(key, value)
    if failed:
        opened.set_status(Status(StatusCode.ERROR))
    opened.end()
