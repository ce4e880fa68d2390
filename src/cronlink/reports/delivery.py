"""Delivering a rendered report: to apprise channels, to an HTTP endpoint, to a file.

Each destination is tried once, in order, all of them even when one fails; the ones that
took the report are reported to `on_delivered` as they do, so a caller that records them
(the `report` step checkpoints) does not send them the report again on a retry. A failure
is a `StepError`: retryable for a 5xx, 408, 425, 429, a timeout, a network error or an
apprise channel that did not take it; not for another 4xx, a refused address or a file
that cannot be written. Destinations are only ever shown redacted: an apprise URL through
apprise's private form, an HTTP URL without its query or credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from cronlink.envtext import VARIABLE, expand, referenced_values, retry_after
from cronlink.errors import ConfigError, StepError
from cronlink.http_client import as_refusal, egress_of
from cronlink.reports.jinja import compiled, rendered
from cronlink.scrubbing import Scrubber

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from cronlink.egress import EgressPolicy
    from cronlink.reports.rendering import Report
    from cronlink.reports.spec import Delivery, HttpDelivery

    Delivered = Callable[[int, str], Awaitable[None]]

HTTP_TIMEOUT = 30.0
ANSWER_CHARS = 200
RETRYABLE = frozenset({408, 425, 429})
WEBHOOK_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})
"""apprise schemes whose host is anyone's: checked against the egress policy, since
apprise connects by itself (the other services reach their vendors' public APIs)."""
BODY_FORMATS = {"markdown": "markdown", "html": "html", "csv": "text", "json": "text"}
"""apprise's `body_format` of each report format: services convert from it."""


def shown(destination: Delivery) -> str:
    """`destination` for people to read, with no secret in it."""
    if destination.apprise is not None:
        # Imported here: apprise loads its ~100 plugins, which only a report using it needs.
        from cronlink.observe.notify import redact

        return f"apprise {redact(destination.apprise)}"
    if destination.http is not None:
        return f"http {destination.http.method} {_bare(destination.http.url)}"
    return f"file {destination.file}"


async def deliver(
    report: Report,
    destinations: Sequence[Delivery],
    *,
    session: aiohttp.ClientSession,
    values: Mapping[str, Any] | None = None,
    base: Path | None = None,
    done: Mapping[int, str] | None = None,
    on_delivered: Delivered | None = None,
    idempotency_key: str | None = None,
    env: Mapping[str, str] | None = None,
    where: str = "report",
) -> list[str]:
    """Send `report` to each destination but those in `done` (index: shown form);
    returns every destination that has it, shown redacted. `values` fill file-path
    templates (with `now` and the report's `title`); relative paths are under `base`
    (default: the working directory). An HTTP destination is sent `idempotency_key` with
    `:deliver[N]` appended. `session` must be one of `cronlink.http_client.new_session`
    (the egress policy)."""
    had = dict(done or {})
    names = {"now": datetime.now(UTC), "title": report.title, **(values or {})}
    failures: list[StepError] = []
    for index, destination in enumerate(destinations):
        if index in had:
            continue
        label = f"{where}: deliver[{index}] ({shown(destination)})"
        try:
            # One key per destination: two of them on one API are not one request repeated.
            key = f"{idempotency_key}:deliver[{index}]" if idempotency_key else None
            said = await _one(
                report, destination, session, names, base or Path(), key,
                os.environ if env is None else env, label,
            )  # fmt: skip
        except StepError as error:
            failures.append(error)
            continue
        had[index] = said
        if on_delivered is not None:
            await on_delivered(index, said)
    if failures:
        retryable = all(f.retryable for f in failures)
        message = "; ".join(str(f) for f in failures)
        raise StepError(message, retryable=retryable, wait=max(f.wait for f in failures))
    return [had[i] for i in sorted(had)]


async def _one(
    report: Report,
    destination: Delivery,
    session: aiohttp.ClientSession,
    values: dict[str, Any],
    base: Path,
    key: str | None,
    env: Mapping[str, str],
    label: str,
) -> str:
    try:
        if destination.apprise is not None:
            await _apprise(report, destination.apprise, destination.attach, session, env, label)
        elif destination.http is not None:
            await _http(report, destination.http, session, key, env, label)
        else:
            assert destination.file is not None
            path = base / rendered(compiled(destination.file, autoescape=False), values, label)
            _write(path, report.content, label)
            return f"file {path}"
    except ConfigError as error:
        raise StepError(f"{label}: {error}", retryable=False) from None
    return shown(destination)


async def _http(
    report: Report,
    target: HttpDelivery,
    session: aiohttp.ClientSession,
    key: str | None,
    env: Mapping[str, str],
    label: str,
) -> None:
    url = expand(target.url, env, label)
    headers = {"Content-Type": report.content_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    headers.update({name: expand(value, env, label) for name, value in target.headers.items()})
    try:
        async with (
            asyncio.timeout(HTTP_TIMEOUT),
            session.request(target.method, url, data=report.content, headers=headers) as answer,
        ):
            text = (await answer.read()).decode(errors="replace")
            status, after = answer.status, answer.headers.get("Retry-After")
    except aiohttp.ClientError as error:
        refusal = as_refusal(error)
        if refusal is not None:
            raise StepError(f"{label}: {refusal}", retryable=False) from None
        raise StepError(f"{label}: {type(error).__name__}") from None
    except TimeoutError:
        raise StepError(f"{label}: no answer within {HTTP_TIMEOUT:.0f}s") from None
    if status >= 400:
        wait = retry_after(after)
        # A peer may quote back what it was sent: the values of the variables named.
        scrub = Scrubber(referenced_values([target.url, *target.headers.values()], env))
        raise StepError(
            f"{label} answered HTTP {status}: {_quoted(scrub(text))}",
            retryable=status in RETRYABLE or status >= 500,
            wait=wait.total_seconds() if wait is not None else 0.0,
        )


async def _apprise(
    report: Report,
    url_template: str,
    attach: bool,
    session: aiohttp.ClientSession,
    env: Mapping[str, str],
    label: str,
) -> None:
    # Imported here: as in `shown`.
    import apprise

    from cronlink.observe.notify import SEND_TIMEOUT

    url = expand(url_template, env, label)
    channel = apprise.Apprise()
    if not channel.add(url):
        raise ConfigError("not a URL apprise can send to")
    await _check_host(url, egress_of(session), label)
    with tempfile.TemporaryDirectory(prefix="cronlink-report-") as folder:
        files = None
        if attach:
            path = Path(folder) / f"{_slug(report.title)}.{report.extension}"
            path.write_bytes(report.content)
            files = apprise.AppriseAttachment(str(path))
        result = await channel.async_notify(
            body=report.body, title=report.title, body_format=BODY_FORMATS[report.format],
            attach=files, timeout=SEND_TIMEOUT,
        )  # fmt: skip
    if not result:
        raise StepError(f"{label}: apprise reports {result.status.name.lower()}")


async def _check_host(url: str, egress: EgressPolicy, label: str) -> None:
    """Refuse a webhook whose host the egress policy forbids (apprise connects without
    asking it); a name is resolved and every address it has must be allowed."""
    # Imported here: as in `shown`.
    import apprise

    service = apprise.Apprise.instantiate(url)
    scheme = url.partition(":")[0].lower()
    host = getattr(service, "host", None)
    if scheme not in WEBHOOK_SCHEMES or not isinstance(host, str) or not host:
        return
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        raise StepError(f"{label}: cannot resolve {host!r}") from None
    for _, _, _, _, address in found:
        reason = egress.refusal(ip_address(str(address[0]).partition("%")[0]))
        if reason is not None:
            raise ConfigError(f"{host} is refused: {reason}")


def _write(path: Path, content: bytes, label: str) -> None:
    """`content` at `path` whole or not at all: a temporary file beside it, renamed over it."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as out:
            temporary = Path(out.name)
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink()
        reason = error.strerror or type(error).__name__
        raise StepError(f"{label}: cannot write {path}: {reason}", retryable=False) from None


def _bare(url: str) -> str:
    """`url` without its credentials and query (either may hold a secret)."""
    if VARIABLE.search(url):
        return url.partition("?")[0]
    try:
        parsed = URL(url)
    except ValueError:
        return "***"
    return str(parsed.with_user(None).with_query(None).with_fragment(None))


def _quoted(text: str) -> str:
    return " ".join(text.split())[:ANSWER_CHARS]


def _slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-.")[:80] or "report"
