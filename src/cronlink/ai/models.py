"""The chat models a deployment declared, as a run reaches them: `ctx.ai`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from cronlink.ai.records import ChatModel
from cronlink.envtext import VARIABLE
from cronlink.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import aiohttp

    from cronlink.ai.records import Completion
    from cronlink.config_models import AiModel


class Models:
    """The models of `[ai.models.NAME]` by name, and calls to them. Keys are read from
    `env` when a call is made (the process's environment unless given one)."""

    def __init__(
        self, declared: Mapping[str, ChatModel], env: Mapping[str, str] | None = None
    ) -> None:
        self._declared = dict(declared)
        self._env = None if env is None else dict(env)

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

    async def complete(
        self,
        session: aiohttp.ClientSession,
        name: str,
        messages: list[dict[str, str]],
        **options: Any,
    ) -> Completion:
        """`client.complete` with the model declared as `name` (its options are these)."""
        # Imported here: the client loads jsonschema, which only a run that calls needs.
        from cronlink.ai.client import complete

        model = self.get(name)
        return await complete(session, model, messages, env=self._env, **options)

    def carried(self) -> Models:
        """These models with the values of the variables their keys name, for a heavy
        run's process: it is forked from a server whose environment may predate them."""
        names = {m.group(1) for model in self._declared.values()
                 for m in VARIABLE.finditer(model.api_key)}  # fmt: skip
        source = os.environ if self._env is None else self._env
        return Models(self._declared, {n: source[n] for n in names if n in source})
