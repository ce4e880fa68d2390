from __future__ import annotations

import pytest

from cronlink.connections.crypto import Vault, generate_key, key_id
from cronlink.errors import SecretKeyError
from cronlink.records.connections import Secrets

SECRETS = Secrets(access_token="at-canary-1", refresh_token="rt-canary-1")


def test_sealed_secrets_open_only_on_their_connection() -> None:
    vault = Vault.from_text(generate_key())
    sealed = vault.seal(7, SECRETS)
    assert "canary" not in sealed
    assert vault.open(7, sealed) == SECRETS
    with pytest.raises(SecretKeyError, match="belong to another connection"):
        vault.open(8, sealed)


def test_a_wrong_key_is_refused_by_name_not_by_value() -> None:
    key = generate_key()
    sealed = Vault.from_text(key).seal(1, SECRETS)
    other = generate_key()
    with pytest.raises(SecretKeyError, match="do not open") as caught:
        Vault.from_text(other).open(1, sealed)
    assert key not in str(caught.value)
    assert other not in str(caught.value)


def test_a_malformed_key_names_its_position_and_never_echoes_it() -> None:
    with pytest.raises(SecretKeyError, match="key 2 of 2 is not a Fernet key") as caught:
        Vault.from_text(f"{generate_key()},not-a-key-secretvalue")
    assert "secretvalue" not in str(caught.value)
    with pytest.raises(SecretKeyError, match="not set"):
        Vault.from_text("  ")


def test_rotation_reseals_under_the_first_key_and_old_keys_still_open() -> None:
    old, new = generate_key(), generate_key()
    sealed = Vault.from_text(old).seal(3, SECRETS)
    both = Vault.from_text(f"{new},{old}")
    assert both.open(3, sealed) == SECRETS
    resealed = both.reseal(sealed)
    assert Vault.from_text(new).open(3, resealed) == SECRETS
    assert both.primary == key_id(new.encode())


def test_check_refuses_a_database_sealed_with_a_missing_key() -> None:
    old, new = generate_key(), generate_key()
    Vault.from_text(f"{new},{old}").check({key_id(old.encode())})
    with pytest.raises(SecretKeyError, match="start-up refused"):
        Vault.from_text(new).check({key_id(old.encode())})


def test_secrets_never_show_in_repr() -> None:
    assert "canary" not in repr(SECRETS)
