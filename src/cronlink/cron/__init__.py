"""Cron expressions: parse, next fire times (with cronie's DST rules), explain."""

from cronlink.cron.explain import explain
from cronlink.cron.expr import CronExpr, parse
from cronlink.cron.fires import iter_fires, next_fire

__all__ = ["CronExpr", "explain", "iter_fires", "next_fire", "parse"]
