"""A worker frozen (SIGSTOP) past its lease, then resumed: its late completion must not
overwrite the outcome of the attempt that took over (lease fencing), on both engines."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.acceptance.test_cli import WORKER_TOML, cronlink, output


def state_of(run_id: int, cwd: Path) -> dict[str, object]:
    shown: dict[str, object] = json.loads(output("run", "show", str(run_id), "--json", cwd=cwd))
    return shown


def test_a_resumed_worker_cannot_overwrite_the_retry(tmp_path: Path, any_url: str) -> None:
    (tmp_path / "cronlink.toml").write_text(WORKER_TOML.format(url=any_url))
    run_id = json.loads(output("trigger", "slow-first", "--json", cwd=tmp_path))["run_id"]
    frozen = cronlink("worker", "--tier", "light", cwd=tmp_path)
    deadline = time.monotonic() + 30
    while state_of(run_id, tmp_path)["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    frozen.send_signal(signal.SIGSTOP)
    rescuer = cronlink("run", cwd=tmp_path)
    try:
        while state_of(run_id, tmp_path)["state"] != "succeeded":
            assert time.monotonic() < deadline, "the retry did not take over"
            time.sleep(0.1)
        taken_over = state_of(run_id, tmp_path)
        assert taken_over["attempt"] == 2
        assert taken_over["result"] == "2"
        frozen.send_signal(signal.SIGCONT)  # attempt 1 wakes up and finishes late
        time.sleep(4)
        assert state_of(run_id, tmp_path) == taken_over
    finally:
        logs = []
        for proc in (frozen, rescuer):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            logs.append(proc.communicate(timeout=30)[0])
    assert f"run {run_id} lost its lease before completing; outcome discarded" in logs[0]
