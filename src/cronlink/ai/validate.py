"""Whether an answer is the JSON that was asked for, checked here whatever the provider
promised (a `strict` schema is honoured by some servers, ignored by others)."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

PROBLEM_CHARS = 300


def problem_with(
    text: str, schema: dict[str, Any] | None, *, wanted: bool = False
) -> tuple[Any, str | None]:
    """(the parsed answer, None) when `text` is what was asked for, else (None, what is
    wrong: where and why). Plain text is asked for unless `schema` or `wanted` (JSON)."""
    if schema is None and not wanted:
        return None, None
    try:
        data = json.loads(text)
    except ValueError as error:
        return None, f"the answer is not JSON ({error})"
    if schema is None:
        return data, None
    found = _best(validator(json.dumps(schema, sort_keys=True)), data)
    return (data, None) if found is None else (None, found[:PROBLEM_CHARS])


def check_schema(schema: dict[str, Any]) -> None:
    """`ValueError` saying why `schema` is not a JSON Schema."""
    # Imported here: jsonschema (and its referencing) loads only where schemas are used.
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as error:
        raise ValueError(f"not a JSON Schema: {error.message}") from None


@functools.lru_cache(maxsize=64)
def validator(schema_text: str) -> Validator:
    # Imported here: as in `check_schema`.
    from jsonschema.validators import validator_for

    schema = json.loads(schema_text)
    kind: Any = validator_for(schema)
    made: Validator = kind(schema)
    return made


def _best(checker: Validator, data: Any) -> str | None:
    # Imported here: as in `check_schema`.
    from jsonschema.exceptions import best_match

    error = best_match(checker.iter_errors(data))
    if error is None:
        return None
    return f"at {error.json_path}: {error.message}"
