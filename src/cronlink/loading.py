"""Loading what configuration names by path: `package.module:attribute`."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(path: str) -> Any:
    """`package.module:function` (or `Class.method`) to the object it names."""
    module_name, _, attribute = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target
