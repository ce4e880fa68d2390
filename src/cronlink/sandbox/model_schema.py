"""The sandbox model's structured answers: a value for a JSON schema filled from a text, and
a variant of it that breaks the schema.

The schema subset: `type` (object, string, number, integer, boolean, array, null, or a list
of them), `properties`, `required`, `enum`, `const`, `items`, `additionalProperties`,
`anyOf` (its first branch that is not null), and `format` (email, date, date-time, uri) as a
hint. Every declared property is filled, so the answer has every required one and nothing
else. A property is read, in order, from its `Name: value` line, from what its name or
format asks for (an email, a date, a URL, an amount, a currency, a summary, a subject), and
otherwise takes its type's default: `""`, `0`, `false`, `[]`, or null when null is allowed.
An enum is chosen by the classification rules of `model_text`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from cronlink.sandbox import model_text as read

Schema = Mapping[str, Any]
UNLISTED = "unlisted"
PROSE = "Sure! Here is what I found, as JSON."
OTHER_TYPES: tuple[tuple[Any, str], ...] = (
    (UNLISTED, "string"),
    ([], "array"),
    ({}, "object"),
    (True, "boolean"),
    (None, "null"),
    (0.5, "number"),
)
DEFAULTS: dict[str, Any] = {"string": "", "number": 0, "integer": 0, "boolean": False}
TRUTHS = {"yes": True, "true": True, "y": True, "no": False, "false": False, "n": False}
FLAG_PREFIXES = ("is", "has", "needs", "requires", "contains", "should")


def fill(schema: Schema, text: str, name: str = "") -> Any:
    """A value for `schema` read from `text`; `name` is the property it is for."""
    schema = _branch(schema)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return _pick(list(schema["enum"]), text)
    kinds = _kinds(schema)
    kind = next((k for k in kinds if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {key: fill(sub, text, key) for key, sub in props.items()}
    if kind == "array":
        return _many(_branch(schema.get("items", {})), text, name)
    if kind == "null":
        return None
    found = READERS[kind](schema, text, name)
    if found is None:
        return None if "null" in kinds else DEFAULTS[kind]
    return found


def broken(schema: Schema, text: str) -> str:
    """The JSON text of `fill`'s value broken against `schema`: a label outside a top-level
    enum, else a required property missing, else a nested breach, else a property too many,
    else a value of another type; prose (not JSON) for a schema that takes any JSON."""
    for value in _breach(schema, fill(schema, text)):
        return json.dumps(value)
    return PROSE


def _breach(schema: Schema, value: Any) -> list[Any]:
    """`[value broken]`, or `[]` when `schema` accepts whatever comes."""
    schema = _branch(schema)
    if "enum" in schema or "const" in schema:
        return [_outside(list(schema.get("enum", [schema.get("const")])))]
    props = schema.get("properties", {})
    if isinstance(value, dict):
        for key, sub in props.items():
            if "enum" in _branch(sub) and key in value:
                return [{**value, key: b} for b in _breach(sub, value[key])]
        required = [key for key in schema.get("required", ()) if key in value]
        if required:
            return [{k: v for k, v in value.items() if k != required[0]}]
        for key, sub in props.items():
            for b in _breach(sub, value.get(key)) if key in value else ():
                return [{**value, key: b}]
        if schema.get("additionalProperties") is False:
            return [{**value, _outside(list(props)): True}]
    kinds = _kinds(schema)
    return [v for v, kind in OTHER_TYPES if kinds and kind not in kinds][:1]


def _branch(schema: Schema) -> Schema:
    options = schema.get("anyOf") or schema.get("oneOf")
    if not options:
        return schema
    return next((o for o in options if o.get("type") != "null"), options[0])


def _kinds(schema: Schema) -> list[str]:
    kind = schema.get("type")
    if kind is None:
        return ["object"] if "properties" in schema else []
    return [kind] if isinstance(kind, str) else list(kind)


def _pick(options: list[Any], text: str) -> Any:
    labels = [o for o in options if isinstance(o, str)]
    return read.classify(text, labels) if labels else options[0]


def _outside(options: list[Any]) -> str:
    label = UNLISTED
    while label in options:
        label += "_"
    return label


def _many(items: Schema, text: str, name: str) -> list[Any]:
    """Arrays: every matching label of an enum, every email, URL or date a name asks for,
    every amount for numbers; otherwise empty."""
    if "enum" in items:
        labels = [o for o in items["enum"] if isinstance(o, str)]
        return [label for label in labels if read.score(text, label) > 0]
    kinds = _kinds(items)
    hint = f"{name} {items.get('format', '')}".lower()
    if "string" in kinds:
        for words, found in (
            (("email",), read.emails), (("url", "link", "uri"), read.urls),
            (("date",), read.dates),
        ):  # fmt: skip
            if any(w in hint for w in words):
                return list(found(text))
    if "number" in kinds:
        return list(read.amounts(text))
    if "integer" in kinds:
        return [int(n) for n in read.amounts(text)]
    return []


def _string(schema: Schema, text: str, name: str) -> str | None:
    hint = f"{name} {schema.get('format', '')}".lower()
    line = read.header(text, name) if name else None
    for words, found in STRING_READERS:
        if any(w in hint for w in words):
            for part in (line, text) if line is not None else (text,):
                value = found(part)
                if value:
                    return value
    return line


def _first(reader: Callable[[str], list[str]], suffix: str = "") -> Callable[[str], str | None]:
    return lambda text: next((found + suffix for found in reader(text)), None)


STRING_READERS: tuple[tuple[tuple[str, ...], Callable[[str], str | None]], ...] = (
    (("email",), _first(read.emails)),
    (("date-time",), _first(read.dates, "T00:00:00Z")),
    (("date", "due", "deadline", "_at", "_on"), _first(read.dates)),
    (("url", "link", "uri", "website"), _first(read.urls)),
    (("currency",), read.currency),
    (("summary", "description", "body", "content", "text"), read.summarise),
    (("subject", "title", "headline"), read.first_sentence),
)
MONEY = ("amount", "total", "price", "cost", "sum", "balance", "fee", "paid", "due")


def _number(schema: Schema, text: str, name: str) -> float | None:
    """The `Name:` line's number, else the text's: its first amount of money for a name
    about money (`amount`, `total`, `price`…), else its first number."""
    line = read.header(text, name) if name else None
    money = any(w in name.lower() for w in MONEY)
    readers = (read.amounts, read.numbers) if money else (read.numbers,)
    for part in (line, text) if line is not None else (text,):
        for found in readers:
            values = found(part)
            if values:
                return values[0]
    return None


def _integer(schema: Schema, text: str, name: str) -> int | None:
    number = _number(schema, text, name)
    return None if number is None else int(number)


def _boolean(schema: Schema, text: str, name: str) -> bool | None:
    """`Name: yes/no` if the text has that line, else whether the text matches the keywords
    of the name's words (`is_urgent` is true for a text about something urgent)."""
    line = read.header(text, name) if name else None
    if line is not None and line.lower() in TRUTHS:
        return TRUTHS[line.lower()]
    words = [w for w in name.lower().split("_") if w not in FLAG_PREFIXES]
    return any(read.score(text, w) for w in words) if words else None


READERS: dict[str, Callable[[Schema, str, str], Any]] = {
    "string": _string,
    "number": _number,
    "integer": _integer,
    "boolean": _boolean,
}
