"""Verbs declared from SQL: a verb that is exactly one function of a connection in one
transaction is `reads(fn)` or `writes(fn)` instead of a method written out. Its signature
and docstring are the function's (less the connection), so the contract is stated once,
next to its SQL; `Store` and every sub-store declare their plain verbs this way.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy import Connection

    from cronlink.store.base import Store

P = ParamSpec("P")
T = TypeVar("T")


class Transacting(Protocol):
    async def transact(self, fn: Callable[[Connection], T], *, write: bool) -> T: ...


class SubStore:
    """One domain's verbs (`store.connections`, `store.automations`, …) over `store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def transact(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        return await self._store.transact(fn, write=write)


def reads(
    fn: Callable[Concatenate[Connection, P], T],
) -> Callable[Concatenate[Transacting, P], Awaitable[T]]:
    """The verb that runs `fn` in a read-only transaction."""
    return _verb(fn, write=False)


def writes(
    fn: Callable[Concatenate[Connection, P], T],
) -> Callable[Concatenate[Transacting, P], Awaitable[T]]:
    """The verb that runs `fn` in a transaction committed when it returns."""
    return _verb(fn, write=True)


def _verb(
    fn: Callable[Concatenate[Connection, P], T], *, write: bool
) -> Callable[Concatenate[Transacting, P], Awaitable[T]]:
    @functools.wraps(fn)
    async def verb(self: Transacting, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.transact(lambda c: fn(c, *args, **kwargs), write=write)

    return verb
