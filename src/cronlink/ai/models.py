"""The chat models a deployment declared, as a run reaches them: `Models` (every model, the
ledger their calls are admitted and recorded by) and `RunModels` (`ctx.ai`: the same, each
call recorded against the run's attempt)."""

from __future__ import annotations

import asyncio
import functools
import os
from typing import TYPE_CHECKING, Any

from cronlink.ai.ledger import Caller, Pace, Spent
from cronlink.ai.records import ChatModel
from cronlink.envtext import VARIABLE
from cronlink.errors import ConfigError, ModelError
from cronlink.http_client import new_session
from cronlink.observe import tracing

if TYPE_CHECKING:
    from collections.abc import Mapping

    import aiohttp

    from cronlink.ai.ledger import Ledger
    from cronlink.ai.records import Completion
    from cronlink.config_models import AiModel
    from cronlink.egress import EgressPolicy


class Models:
    """The models of `[ai.models.NAME]` by name, and calls to them. Keys are read from
    `env` when a call is made (the process's environment unless given one). With a
    `ledger`, each call is admitted by it first (a spent budget) and recorded by it after."""

    def __init__(
        self,
        declared: Mapping[str, ChatModel],
        env: Mapping[str, str] | None = None,
        *,
        ledger: Ledger | None = None,
    ) -> None:
        self._declared = dict(declared)
        self._env = None if env is None else dict(env)
        self.ledger = ledger
        self._queues: dict[str, asyncio.Lock] = {}
        """Per model: this process's requests wait for its limits one at a time, in turn,
        so that one of them, not all, asks the store."""

    @classmethod
    def from_section(cls, section: AiModel) -> Models:
        return cls({
            name: ChatModel(name=name, **entry.model_dump())
            for name, entry in section.models.items()
        })  # fmt: skip

    def __repr__(self) -> str:
        return f"Models({sorted(self._declared)})"

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._declared)

    def get(self, name: str) -> ChatModel:
        """The model declared as `name`; `ConfigError` naming it (and those that are)."""
        found = self._declared.get(name)
        if found is None:
            declared = ", ".join(sorted(self._declared)) or "none"
            raise ConfigError(
                f"model {name!r} is not declared: add [ai.models.{name}] to cronlink.toml "
                f"(declared: {declared})"
            )
        return found

    def keeping(self, ledger: Ledger) -> Models:
        """These models, their calls admitted and recorded by `ledger`."""
        return Models(self._declared, self._env, ledger=ledger)

    async def complete(
        self,
        session: aiohttp.ClientSession,
        name: str,
        messages: list[dict[str, str]],
        *,
        caller: Caller,
        **options: Any,
    ) -> Completion:
        """`client.complete` with the model declared as `name` (its options are these),
        through the ledger when there is one: recorded for `caller`."""
        # Imported here: the client loads jsonschema, which only a run that calls needs.
        from cronlink.ai.client import complete

        model = self.get(name)
        pace = None
        if self.ledger is not None:
            if model.budget_usd is not None:  # else nothing to ask (a heavy run's pipe)
                await self.ledger.admit(model)
            if model.rpm is not None or model.tpm is not None:
                pace = functools.partial(self._pace, self.ledger, model)
        described = {"gen_ai.request.model": model.model, "cronlink.model": name}
        try:
            with tracing.span("cronlink.chat", described) as span:
                answer = await complete(
                    session, model, messages, env=self._env, pace=pace, **options
                )  # fmt: skip
                tracing.note(span, {
                    "gen_ai.usage.input_tokens": answer.usage.input_tokens,
                    "gen_ai.usage.output_tokens": answer.usage.output_tokens,
                })  # fmt: skip
        except ModelError as error:
            if self.ledger is not None and error.requests:
                await self.ledger.record(name, caller, Spent(
                    input_tokens=error.input_tokens, output_tokens=error.output_tokens,
                    cost_usd=model.cost(error.input_tokens, error.output_tokens),
                    requests=error.requests, answered=False,
                ))  # fmt: skip
            raise
        if self.ledger is not None:
            await self.ledger.record(name, caller, Spent(
                input_tokens=answer.usage.input_tokens, output_tokens=answer.usage.output_tokens,
                cost_usd=answer.cost_usd, requests=answer.attempts, answered=True,
            ))  # fmt: skip
        return answer

    async def _pace(self, ledger: Ledger, model: ChatModel, tokens: int) -> None:
        """Wait until a request of `tokens` fits `model`'s rpm and tpm, fleet-wide."""
        if model.tpm is not None and tokens > model.tpm:
            raise ModelError(
                f"model {model.name}: a request of about {tokens:,} tokens is more than its "
                f"tpm of {model.tpm:,} allows in a minute: lower max_tokens or the prompt",
                retryable=False,
            )
        queue = self._queues.setdefault(model.name, asyncio.Lock())
        async with queue:
            owed = Pace(slot=True, tokens=tokens)
            while True:
                owed = await ledger.take(model, owed)
                if owed.granted:
                    return
                await asyncio.sleep(owed.wait)

    def keys(self) -> list[str]:
        """The API keys the models' `${NAME}`s hold here: secrets no record may keep."""
        source = os.environ if self._env is None else self._env
        return [source[n] for n in self._variables() if source.get(n)]

    def _variables(self) -> set[str]:
        return {m.group(1) for model in self._declared.values()
                for m in VARIABLE.finditer(model.api_key)}  # fmt: skip

    def carried(self) -> Models:
        """These models with the values of the variables their keys name, for a heavy
        run's process (without the ledger: it gets one that asks the worker). The process
        is forked from a server whose environment may predate them."""
        source = os.environ if self._env is None else self._env
        return Models(self._declared, {n: source[n] for n in self._variables() if n in source})


class RunModels:
    """`ctx.ai`: the declared models as a run calls them, each call recorded against the
    run's attempt (usage, cost, budgets)."""

    def __init__(self, models: Models, caller: Caller, egress: EgressPolicy) -> None:
        self._models = models
        self._caller = caller
        self._egress = egress

    @property
    def names(self) -> frozenset[str]:
        return self._models.names

    def get(self, name: str) -> ChatModel:
        return self._models.get(name)

    async def complete(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        session: aiohttp.ClientSession | None = None,
        **options: Any,
    ) -> Completion:
        """The answer of the model declared as `model` to `messages` (`{"role",
        "content"}` dicts); `ModelError` when there is no valid one. Options: `schema` (a
        JSON Schema the answer must satisfy), `json_object`, `max_tokens`,
        `idempotency_key`, `repairs`. Without a `session`, one reaching what the worker's
        egress policy allows is opened for the call."""
        if session is not None:
            return await self._models.complete(
                session, model, messages, caller=self._caller, **options
            )
        async with new_session(self._egress) as own:
            return await self._models.complete(own, model, messages, caller=self._caller, **options)
