"""Cron expressions: parse, next fire times (with cronie's DST rules), explain."""

from cronlink.cron.explain import explain
from cronlink.cron.expr import CronExpr, parse
from cronlink.cron.fires import Search, check_fires, iter_fires, next_fire, search

__all__ = [
    "CronExpr",
    "Search",
    "check_fires",
    "explain",
    "iter_fires",
    "next_fire",
    "parse",
    "search",
]
