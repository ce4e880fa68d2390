"""Sending messages through apprise: one URL per channel, each shown only redacted.

An alert URL holds its channel's secret (a Slack webhook's token is its path, a mail
URL carries a password): it is never logged or shown whole. `${NAME}` in a URL is read
from the environment when sending, so the secret can stay out of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import warnings
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

with contextlib.suppress(ImportError), warnings.catch_warnings():
    # Apprise's e-mail plugin imports `imghdr`, deprecated since Python 3.11 (and gone in
    # 3.13, where apprise brings its own): imported first here, quietly, so that loading
    # apprise's plugins warns nobody (and fails no test run with warnings as errors).
    warnings.simplefilter("ignore", DeprecationWarning)
    import imghdr  # noqa: F401

import apprise

from cronlink.envtext import VARIABLE, expand
from cronlink.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cronlink.records.alerts import Message

log = logging.getLogger("cronlink.alerts")
# Apprise quotes whole URLs, tokens and passwords included, even in its error lines: it is
# kept quiet, and cronlink says which channel failed, redacted, instead.
logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)
SEND_TIMEOUT = 10.0
"""Seconds one channel may take to accept a message."""


def url_problem(url: str) -> str | None:
    """What is wrong with `url` as an apprise URL (None: nothing), without quoting it."""
    if VARIABLE.search(url):
        return None  # checked when sent, once the environment has filled it in
    if apprise.Apprise.instantiate(url) is None:
        return (
            f"not a URL apprise can send to (scheme {_scheme(url)!r}); see "
            "https://github.com/caronc/apprise/wiki for the URL of each service"
        )
    return None


def redact(url: str) -> str:
    """`url` for people to read: apprise's private form (passwords and tokens masked),
    without its options. A URL apprise cannot read shows its scheme alone."""
    if VARIABLE.search(url):
        return url  # the template names the variables, not their values
    service = apprise.Apprise.instantiate(url)
    if service is None:
        return f"{_scheme(url)}://***"
    shown: str = service.url(privacy=True)  # type: ignore[no-untyped-call]
    return shown.split("?", 1)[0]


class Notifier:
    """The configured channels; `send` tries each once, all at once."""

    def __init__(self, urls: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.urls = tuple(urls)
        self._env = os.environ if env is None else env

    def shown(self, index: int) -> str:
        return f"#{index + 1} ({redact(self.urls[index])})"

    async def send(self, message: Message) -> dict[int, str]:
        """Send `message` to every channel; returns why each that failed did, by index
        (each logged, its URL redacted)."""
        outcomes = await asyncio.gather(
            *(self._send_one(i, message) for i in range(len(self.urls)))
        )
        failed = {i: why for i, why in enumerate(outcomes) if why is not None}
        for index, why in failed.items():
            log.warning(
                "alert channel %s did not take %r: %s", self.shown(index), message.title, why
            )
        return failed

    async def _send_one(self, index: int, message: Message) -> str | None:
        try:
            url = expand(self.urls[index], self._env, f"[alerts] urls[{index}]")
        except ConfigError as error:
            return str(error)
        channel = apprise.Apprise()
        if not channel.add(url):
            return "not a URL apprise can send to"
        result = await channel.async_notify(
            body=message.body, title=message.title, notify_type=message.kind,
            timeout=SEND_TIMEOUT,
        )  # fmt: skip
        return None if result else f"apprise reports {result.status.name.lower()}"


def _scheme(url: str) -> str:
    return urlsplit(url).scheme or "none"
