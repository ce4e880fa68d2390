"""wrangler, Cloudflare's CLI, whose npm package brings workerd (the runtime Workers run in
on Cloudflare): installed once per machine from the npm registry into a cache folder, and
`wrangler dev --test-scheduled` run on 127.0.0.1 with no Cloudflare account, no metrics,
no update check and no call to any other host.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

VERSION = "4.86.0"
"""The last wrangler whose package runs on Node.js 20 (from 4.87 it needs 22)."""
NODE_LEAST = (20, 3)
"""wrangler 4.86's `engines.node`."""
INSTALL_TIMEOUT = 300  # seconds: ~35 packages, ~200 MB unpacked (9 s with a warm npm cache)
START_TIMEOUT = 60  # seconds: wrangler bundles the Worker and starts workerd, ~5-10 s here
QUIET = {
    "WRANGLER_SEND_METRICS": "false",
    "WRANGLER_SEND_ERROR_REPORTS": "false",
    # The banner is what checks the registry for a newer wrangler.
    "WRANGLER_HIDE_BANNER": "true",
    # Else miniflare fetches a sample `request.cf` from Cloudflare at start.
    "CLOUDFLARE_CF_FETCH_ENABLED": "false",
    "NO_COLOR": "1",
}


class Unavailable(Exception):
    """wrangler cannot be had on this machine; the message says why."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Wrangler:
    """An installed wrangler, run by `node`."""

    node: str
    script: Path


def cache_folder() -> Path:
    """Where wrangler is kept between test sessions (outside the work tree)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cronlink-tests" / f"wrangler-{VERSION}"


def install() -> Wrangler:
    """wrangler `VERSION`, installed by npm unless an earlier session did; `Unavailable`
    when node or npm is missing or too old, or npm cannot install it."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = ", ".join(name for name in ("node", "npm") if not shutil.which(name))
        raise Unavailable(f"wrangler needs node and npm; not on PATH: {missing}")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    found = tuple(int(part) for part in re.findall(r"\d+", version.stdout)[:2])
    if found < NODE_LEAST:
        least = ".".join(map(str, NODE_LEAST))
        raise Unavailable(f"wrangler {VERSION} needs Node.js {least}+, not {version.stdout}")
    folder = cache_folder()
    script = folder / "node_modules" / "wrangler" / "bin" / "wrangler.js"
    folder.parent.mkdir(parents=True, exist_ok=True)
    # One install per machine, even with several pytest processes asking at once.
    with (folder.parent / f"{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not script.exists():
            _npm_install(npm, folder)
    return Wrangler(node=node, script=script)


def _npm_install(npm: str, folder: Path) -> None:
    partial = folder.with_name(f"{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    # No install scripts: workerd's binary comes in its platform's package.
    command = [npm, "install", "--prefix", str(partial), "--no-audit", "--no-fund",
               "--ignore-scripts", "--loglevel=error", f"wrangler@{VERSION}"]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        message = f"npm install wrangler@{VERSION}: no answer in {INSTALL_TIMEOUT}s"
        raise Unavailable(message) from None
    if done.returncode != 0:
        raise Unavailable(f"npm install wrangler@{VERSION} failed: {done.stderr[-2000:]}")
    partial.rename(folder)  # complete or absent: an interrupted install is redone


PORT_TRIES = 3
"""Starts tried on fresh ports when one was taken meanwhile."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def dev(wrangler: Wrangler, worker: Path, secret: str) -> AsyncIterator[str]:
    """`wrangler dev --test-scheduled` serving the Worker of `worker/wrangler.toml` on a
    free port of 127.0.0.1, `CRON_SECRET` its secret; its base URL. AssertionError with
    wrangler's output when it does not start; its process group is ended on the way out."""
    (worker / ".dev.vars").write_text(f"CRON_SECRET={secret}\n")
    # No Cloudflare account: whatever credentials the environment holds stay out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDFLARE_")}
    env |= QUIET | {
        "XDG_CONFIG_HOME": str(worker / ".config"),  # wrangler's own settings and logs
        "WRANGLER_LOG_PATH": str(worker / ".logs"),
    }
    log = worker / "wrangler.log"
    for attempt in range(PORT_TRIES):
        port = free_port()
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                wrangler.node, str(wrangler.script), "dev", "--local", "--test-scheduled",
                "--ip", "127.0.0.1", "--port", str(port), "--show-interactive-dev-session=false",
                # Its debugger's port, else 9229 for every wrangler on the machine.
                "--inspector-port", str(free_port()),
                cwd=worker, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # wrangler starts workerd: all are ended as one group
            )  # fmt: skip
        try:
            await _ready(process, log, port)
            break
        except AssertionError as error:
            await _end(process)
            # A free port can be taken by another process before workerd binds it.
            if "Address already in use" not in str(error) or attempt == PORT_TRIES - 1:
                raise
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await _end(process)


async def _ready(process: asyncio.subprocess.Process, log: Path, port: int) -> None:
    ready = f"Ready on http://127.0.0.1:{port}"
    output = ""
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while ready not in output:
                assert process.returncode is None, f"wrangler dev stopped:\n{output}"
                await asyncio.sleep(0.1)
                output = await asyncio.to_thread(log.read_text, errors="replace")
    except TimeoutError:
        raise AssertionError(f"wrangler dev was not ready in {START_TIMEOUT}s:\n{output}") from None


async def _end(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to wrangler and workerd, SIGKILL to what is left after 10 s."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for sent in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sent)
        _, alive = await asyncio.to_thread(psutil.wait_procs, children, timeout=10)
        with suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 10)
        if not alive and process.returncode is not None:
            return
