"""The one scrubber: a secret in every form a peer may quote it in, and nothing else."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from cronlink.scrubbing import MASK, Scrubber, configured, without_password
from tests.acceptance.echo_kit import forms

SECRET = 'p4ss|w0rd{2024} \u00e9+/"\\\U0001f511'


@pytest.mark.parametrize("form", sorted(forms(SECRET)))
def test_every_form_of_a_secret_is_masked(form: str) -> None:
    text = f"before {forms(SECRET)[form]} after"
    assert Scrubber([SECRET])(text) == f"before {MASK} after"


@pytest.mark.parametrize(
    "quoted",
    [
        quote(SECRET, safe="/{|"),  # an encoder that leaves some characters as they are
        quote_plus(SECRET).replace("%7B", "%7b"),  # mixed case
        json.dumps(quote_plus(SECRET))[1:-1],  # URL-encoded inside JSON
        SECRET.replace("+", " "),  # a `+` read back as a space
        "Basic " + base64.b64encode(b"id:" + quote(SECRET, safe="").encode()).decode(),
        base64.b64encode(b"a longer value around " + SECRET.encode() + b" it").decode(),
    ],
)
def test_partly_encoded_and_embedded_forms_are_masked(quoted: str) -> None:
    assert "p4ss" not in Scrubber([SECRET])(quoted)
    assert MASK in Scrubber([SECRET])(quoted)


def test_ordinary_text_is_left_alone() -> None:
    text = "the scheduler succeeded: run 42 of refresh-tokens, 200 OK, dXNlcjpub3RoaW5n"
    assert Scrubber(["s3cret-not-here-0123"])(text) == text
    assert Scrubber([])(text) == text
    assert not Scrubber(["", ""])


def test_a_secret_inside_another_is_masked_whole_and_short_ones_too() -> None:
    scrub = Scrubber(["abc", "xxabcxx"])
    assert scrub("1 xxabcxx 2 abc 3") == f"1 {MASK} 2 {MASK} 3"
    assert Scrubber(["pw"])("pw%70%77") == MASK * 2


def test_values_are_scrubbed_throughout() -> None:
    scrub = Scrubber([SECRET, "t0ken-value"])
    value = {"said": [SECRET, {"t0ken-value": 1}], "n": 3, "ok": True, "nothing": None}
    assert scrub.value(value) == {"said": [MASK, {MASK: 1}], "n": 3, "ok": True, "nothing": None}


def test_configured_secrets_are_every_listed_value_and_the_database_password() -> None:
    env = {
        "CRON_SECRET": "new-secret-0123456789, old-secret-0123456789",
        "CRON_SIGNING_KEY": "k" * 32,
        "CRONLINK_SECRET_KEY": "fernet-key",
        "DATABASE_URL": "postgresql://cronlink:pw@db/cronlink",
    }
    assert sorted(configured(env)) == sorted(
        ["new-secret-0123456789", "old-secret-0123456789", "k" * 32, "fernet-key", "pw"]
    )
    assert without_password(env["DATABASE_URL"]) == f"postgresql://cronlink:{MASK}@db/cronlink"
