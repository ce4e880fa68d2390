"""cronlink: scheduled work for connection platforms, exactly once, under limits."""

from cronlink.app import App
from cronlink.context import RunContext
from cronlink.errors import (
    ConfigError,
    CronlinkError,
    CronSyntaxError,
    RunNotFoundError,
    StoreError,
    UnknownJobError,
)
from cronlink.records.runs import Reason, Run, RunState, Tier

__all__ = [
    "App",
    "ConfigError",
    "CronSyntaxError",
    "CronlinkError",
    "Reason",
    "Run",
    "RunContext",
    "RunNotFoundError",
    "RunState",
    "StoreError",
    "Tier",
    "UnknownJobError",
]
