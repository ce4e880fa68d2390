"""Loading what configuration names by path: `package.module:attribute`."""

from __future__ import annotations

import difflib
import importlib
from typing import Any


def resolve(path: str) -> Any:
    """`package.module:function` (or `Class.method`) to the object it names; a missing
    name's `AttributeError` suggests the closest names there are."""
    module_name, _, attribute = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as error:
            public = [name for name in dir(target) if not name.startswith("_")]
            close = difflib.get_close_matches(part, public, n=3, cutoff=0.6)
            if not close:
                raise
            raise AttributeError(f"{error}; did you mean {', '.join(close)}?") from None
    return target
