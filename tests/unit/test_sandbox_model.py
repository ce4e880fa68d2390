"""The sandbox's rule model: labels, extraction that validates against its schema, answers
that break it on demand, summaries, and usage a test can predict."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cronlink.sandbox import model_schema, model_text
from cronlink.sandbox.model import BadRequest, Prompt, parse, prompt_tokens, reply

LABELS = ["urgent", "invoice", "newsletter", "personal"]
EMAIL = """From: Alice Smith <alice@example.com>
To: billing@acme.io
Subject: Invoice 1042 overdue
Date: March 5, 2026

Hi, your invoice of $1,234.50 is overdue since 2026-02-28. Pay at https://pay.acme.io/1042.
Thanks!"""
EXTRACT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "from": {"type": "string"},
        "from_email": {"type": "string", "format": "email"},
        "subject": {"type": "string"},
        "amount": {"type": "number"},
        "currency": {"type": "string"},
        "sent_on": {"type": "string", "format": "date"},
        "category": {"type": "string", "enum": LABELS},
        "is_urgent": {"type": "boolean"},
        "recipients": {"type": "array", "items": {"type": "string", "format": "email"}},
        "link": {"type": ["string", "null"], "format": "uri"},
        "note": {"type": ["string", "null"]},
        "lines": {"type": "integer"},
        "meta": {"type": "object", "properties": {"summary": {"type": "string"}}},
    },
    "required": ["from", "from_email", "subject", "amount", "category", "is_urgent"],
    "additionalProperties": False,
}


def prompt(text: str, system: str = "", **body: Any) -> Prompt:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    return parse({"model": "sandbox-model", "messages": messages, **body})


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}


def is_valid(schema: dict[str, Any], content: str) -> bool:
    try:
        value = json.loads(content)
    except ValueError:
        return False
    return Draft202012Validator(schema).is_valid(value)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Server outage! Please fix this immediately, it is critical.", "urgent"),
        ("Attached is the invoice for March; payment is due in 30 days.", "invoice"),
        ("This week's digest: five stories. Unsubscribe at any time.", "newsletter"),
        ("Dinner with the family on Saturday for mom's birthday?", "personal"),
        (EMAIL, "invoice"),
    ],
)
def test_classification_picks_the_label_whose_keywords_the_text_matches(
    text: str, label: str
) -> None:
    assert model_text.classify(text, LABELS) == label
    assert reply(prompt(text, f"Classify the email. Labels: {', '.join(LABELS)}")).content == label
    assert reply(prompt(f"labels: {' | '.join(LABELS)}\n{text}")).content == label


def test_no_match_falls_back_to_other_else_the_first_and_a_tie_to_the_earlier() -> None:
    assert model_text.classify("lorem ipsum", ["spam", "Other"]) == "Other"
    assert model_text.classify("lorem ipsum", ["spam", "ham"]) == "spam"
    assert model_text.classify("an invoice, urgent", ["urgent", "invoice"]) == "urgent"
    assert model_text.classify("an invoice, urgent", ["invoice", "urgent"]) == "invoice"


def test_the_labels_line_is_not_read_as_the_text() -> None:
    labels, text = model_text.find_labels("Classify.\nCategories: invoice or personal\nHi mom")
    assert (labels, text.split()) == (["invoice", "personal"], ["Classify.", "Hi", "mom"])


def test_extraction_validates_against_its_schema_and_reads_the_fields() -> None:
    answer = reply(prompt(EMAIL, response_format=schema_format(EXTRACT)))
    assert is_valid(EXTRACT, answer.content)
    assert json.loads(answer.content) == {
        "from": "Alice Smith <alice@example.com>",
        "from_email": "alice@example.com",
        "subject": "Invoice 1042 overdue",
        "amount": 1234.5,
        "currency": "USD",
        "sent_on": "2026-03-05",
        "category": "invoice",
        "is_urgent": False,
        "recipients": ["alice@example.com", "billing@acme.io"],
        "link": "https://pay.acme.io/1042",
        "note": None,
        "lines": 1042,
        "meta": {"summary": "Hi, your invoice of $1,234.50 is overdue since 2026-02-28. "
                 "(13 words, 3 sentences)"},
    }  # fmt: skip


def test_a_text_with_nothing_to_read_still_validates() -> None:
    answer = reply(prompt("ok", response_format=schema_format(EXTRACT)))
    assert is_valid(EXTRACT, answer.content)


@pytest.mark.parametrize(
    "schema",
    [
        EXTRACT,
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
        {"type": "object", "properties": {"o": {"type": "object", "required": ["x"],
                                                "properties": {"x": {"type": "string"}}}}},
        {"type": "string", "enum": LABELS},
        {"type": "array", "items": {"type": "string"}},
        {"anyOf": [{"type": "number"}, {"type": "null"}]},
        {},
    ],
)  # fmt: skip
def test_an_invalid_answer_breaks_the_schema_its_valid_answer_meets(
    schema: dict[str, Any],
) -> None:
    asked = prompt(EMAIL, response_format=schema_format(schema))
    assert is_valid(schema, reply(asked).content)
    assert not is_valid(schema, reply(asked, invalid=True).content)


def test_an_invalid_answer_names_a_label_outside_the_enum_before_dropping_a_property() -> None:
    broken = json.loads(model_schema.broken(EXTRACT, EMAIL))
    assert broken["category"] == model_schema.UNLISTED
    del EXTRACT["properties"]["category"]["enum"]
    try:
        assert "from" not in json.loads(model_schema.broken(EXTRACT, EMAIL))
    finally:
        EXTRACT["properties"]["category"]["enum"] = LABELS


def test_json_object_and_text_answers_and_their_invalid_forms() -> None:
    system = "Answer in JSON. labels: urgent, invoice"
    asked = prompt("the invoice", system, response_format={"type": "json_object"})
    assert json.loads(reply(asked).content) == {"label": "invoice"}
    with pytest.raises(ValueError, match="Expecting value"):
        json.loads(reply(asked, invalid=True).content)
    assert reply(prompt("the invoice", "labels: urgent, invoice"), invalid=True).content == (
        model_schema.UNLISTED
    )
    as_json = {"type": "json_object"}
    summary = prompt("Reply in json. The build broke. Twice!", response_format=as_json)
    assert json.loads(reply(summary).content) == {
        "summary": "Reply in json. (7 words, 3 sentences)"
    }
    assert reply(prompt("Anything."), invalid=True).content == ""


def test_a_summary_is_the_first_sentence_after_the_headers_and_counts() -> None:
    assert model_text.summarise(EMAIL) == (
        "Hi, your invoice of $1,234.50 is overdue since 2026-02-28. (13 words, 3 sentences)"
    )
    assert model_text.summarise("") == "(0 words, 0 sentences)"
    assert model_text.summarise("x" * 300).endswith("x… (1 words, 1 sentences)")


def test_usage_is_four_per_message_one_per_four_characters_and_three_per_request() -> None:
    asked = prompt("12345", "abcd")
    answer = reply(asked)
    assert answer.prompt_tokens == 3 + (4 + 1) + (4 + 2) == prompt_tokens(asked)
    assert answer.completion_tokens == math.ceil(len(answer.content) / 4)
    assert reply(asked) == answer


def test_an_answer_over_max_tokens_is_cut_and_ends_with_length() -> None:
    for limit in ("max_tokens", "max_completion_tokens"):
        limited: dict[str, Any] = {limit: 3}
        answer = reply(prompt(EMAIL, **limited))
        assert (answer.content, answer.finish_reason, answer.completion_tokens) == (
            "Hi, your inv", "length", 3,
        )  # fmt: skip


def test_dates_in_their_common_forms_become_iso() -> None:
    text = "on 2026-01-02, Feb 3rd, 2026, 4 March 2026 and 5/6/2026 but not 2/30/2026"
    assert model_text.dates(text) == ["2026-01-02", "2026-02-03", "2026-03-04", "2026-05-06"]
    assert model_text.amounts("€12 or 1,000.25 USD or $7") == [12.0, 1000.25, 7.0]


def test_content_parts_are_read_as_their_text() -> None:
    parts = [{"type": "text", "text": "labels: urgent, invoice"}, {"type": "text", "text": "bill"}]
    asked = parse({"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert reply(asked).content == "invoice"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": 3}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
         "max_tokens"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
         "temperature"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}],
          "response_format": {"type": "json_object"}}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}],
          "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
         "response_format"),
    ],
)  # fmt: skip
def test_requests_the_protocol_refuses_name_their_parameter(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        parse(body)
    assert refused.value.param == param


NAMES = st.sampled_from(["from", "email", "due_date", "amount", "is_urgent", "title", "n", "x"])
LEAVES = st.one_of(
    st.sampled_from(["string", "number", "integer", "boolean"]).map(lambda t: {"type": t}),
    st.sampled_from(["email", "date", "date-time", "uri"]).map(
        lambda f: {"type": "string", "format": f}
    ),
    st.lists(st.sampled_from(LABELS), min_size=1, unique=True).map(lambda e: {"enum": e}),
    st.just({"type": ["number", "null"]}),
)


def objects(props: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    required = st.lists(st.sampled_from(sorted(props)), unique=True) if props else st.just([])
    return st.builds(
        lambda keys, closed: {
            "type": "object", "properties": props, "required": keys,
            "additionalProperties": not closed,
        },
        required, st.booleans(),
    )  # fmt: skip


SCHEMAS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda items: {"type": "array", "items": items}, inner),
        st.dictionaries(NAMES, inner, max_size=4).flatmap(objects),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(schema=SCHEMAS, text=st.one_of(st.text(max_size=200), st.just(EMAIL)))
def test_any_schema_of_the_subset_is_filled_validly_and_broken_invalidly(
    schema: dict[str, Any], text: str
) -> None:
    assert Draft202012Validator(schema).is_valid(model_schema.fill(schema, text))
    assert not is_valid(schema, model_schema.broken(schema, text))
