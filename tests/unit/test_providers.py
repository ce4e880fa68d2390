from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cronlink.connections.providers import Providers, read
from cronlink.connections.tokens import expiry
from cronlink.errors import ConfigError
from cronlink.scrubbing import Scrubber

REAL = ["github", "google", "hubspot", "microsoft", "notion", "salesforce", "slack", "xero"]
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_every_shipped_provider_loads_with_https_endpoints() -> None:
    providers = Providers.load()
    assert set(REAL) | {"sandbox", "sandbox-crm"} <= set(providers.names())
    for name in REAL:
        provider = providers.get(name)
        assert provider.token_url.startswith("https://"), name
        assert (provider.authorize_url or "").startswith("https://"), name
        assert "${" in provider.client_secret, name
    assert providers.get("xero").rotates_refresh_tokens
    assert providers.get("xero").idle_refresh_after == timedelta(days=45)
    assert not providers.get("google").rotates_refresh_tokens


def test_sandbox_urls_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = Providers.load().get("sandbox")
    monkeypatch.delenv("CRONLINK_SANDBOX_URL", raising=False)
    assert sandbox.url("token_url") == "http://127.0.0.1:8765/oauth/token"
    monkeypatch.setenv("CRONLINK_SANDBOX_URL", "http://127.0.0.1:9999")
    assert sandbox.url("token_url") == "http://127.0.0.1:9999/oauth/token"
    crm = Providers.load().get("sandbox-crm")
    assert crm.url("token_url") == "http://127.0.0.1:9999/crm/oauth/token"
    assert (crm.client_auth, crm.rotates_refresh_tokens) == ("client_secret_post", True)


def test_a_missing_client_secret_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("GOOGLE_CLIENT_ID", "id")
    with pytest.raises(ConfigError, match="GOOGLE_CLIENT_SECRET is not set"):
        Providers.load().get("google").client()


def test_a_secret_written_into_a_provider_file_is_refused(tmp_path: Path) -> None:
    source = Path(__file__).parents[2] / "src/cronlink/connections/providers/hubspot.toml"
    text = source.read_text().replace('"${HUBSPOT_CLIENT_SECRET}"', '"hunter2"')
    (tmp_path / "hubspot.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"hubspot.toml: client_secret: must name an environment"):
        read(tmp_path / "hubspot.toml")


def test_user_providers_override_and_errors_name_the_file(tmp_path: Path) -> None:
    source = Path(__file__).parents[2] / "src/cronlink/connections/providers/sandbox.toml"
    (tmp_path / "acme.toml").write_text(source.read_text().replace('"sandbox"', '"acme"', 1))
    providers = Providers.load(tmp_path)
    assert "acme" in providers.names()
    with pytest.raises(ConfigError, match="unknown provider 'acmee'; known: acme, github"):
        providers.get("acmee")
    (tmp_path / "bad.toml").write_text('name = "bad"\nrefresh_margin = "soon"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: display_name"):
        Providers.load(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        Providers.load(tmp_path / "nope")


def test_a_provider_without_an_authorization_step_loads(tmp_path: Path) -> None:
    sandbox = Path(__file__).parents[2] / "src/cronlink/connections/providers/sandbox.toml"
    text = sandbox.read_text().replace('authorize_url = "/oauth/authorize"\n', "")
    (tmp_path / "sandbox.toml").write_text(text)
    provider = read(tmp_path / "sandbox.toml")
    assert provider.authorize_url is None
    with pytest.raises(ConfigError, match="provider 'sandbox' has no authorize_url"):
        provider.url("authorize_url")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"expires_in": 3600}, NOW + timedelta(hours=1)),
        ({"expires_in": "1800"}, NOW + timedelta(minutes=30)),
        ({"expires_at": (NOW + timedelta(hours=2)).timestamp()}, NOW + timedelta(hours=2)),
        ({"expires_at": (NOW + timedelta(hours=2)).timestamp() * 1000}, NOW + timedelta(hours=2)),
        ({"expires_in": "soon"}, None),
        ({}, None),
    ],
)
def test_expiry_is_read_in_every_form_providers_use(
    answer: dict[str, object], expected: datetime | None
) -> None:
    assert expiry(answer, NOW, None) == expected


def test_no_expiry_uses_the_providers_default() -> None:
    assert expiry({}, NOW, timedelta(hours=2)) == NOW + timedelta(hours=2)


def test_error_texts_lose_secrets_even_url_encoded() -> None:
    said = "bad token 1//0gRefresh+x and 1%2F%2F0gRefresh%2Bx and 1%2F%2F0gRefresh%2Bx"
    assert Scrubber(["1//0gRefresh+x"])(said) == "bad token *** and *** and ***"
