"""`${NAME}` in targets, alert URLs and provider files: a list variable gives its current
value, the signing key is never expanded, and every value of a list is known as a secret."""

from __future__ import annotations

import pytest

from cronlink.envtext import expand, listed, referenced_values
from cronlink.errors import ConfigError

ENV = {
    "CRON_SECRET": " new-secret-0123456789 , old-secret-0123456789",
    "CRON_SIGNING_KEY": "k" * 40,
    "TOKEN": "a,b",
}


def test_a_list_variable_expands_to_its_current_value_and_others_as_they_are() -> None:
    said = expand("Bearer ${CRON_SECRET} ${TOKEN} ${NONE:-x}", ENV, "a target")
    assert said == "Bearer new-secret-0123456789 a,b x"


def test_the_signing_key_is_never_expanded() -> None:
    with pytest.raises(ConfigError, match=r"a target names \$\{CRON_SIGNING_KEY\}: the signing"):
        expand("?k=${CRON_SIGNING_KEY}", ENV, "a target")


def test_every_value_of_a_list_is_a_referenced_secret() -> None:
    found = referenced_values(["${CRON_SECRET}", "${TOKEN}", "${NONE:-x}"], ENV)
    assert sorted(found) == ["a,b", "new-secret-0123456789", "old-secret-0123456789"]


def test_a_short_value_of_a_list_is_named_by_its_place() -> None:
    assert listed(ENV, "CRON_SECRET", 16) == ["new-secret-0123456789", "old-secret-0123456789"]
    with pytest.raises(ConfigError, match=r"^TOKEN: value #1 is shorter than 16 characters"):
        listed(ENV, "TOKEN", 16)
