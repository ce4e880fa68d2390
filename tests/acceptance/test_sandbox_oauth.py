"""The sandbox's authorization-code flow with PKCE, through cronlink's own code exchange."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from cronlink.connections.tokens import exchange_code
from cronlink.errors import CronlinkError, RefreshError
from cronlink.sandbox import Sandbox
from tests.acceptance.sandbox_kit import Kit, kit

__all__ = ["kit"]
CALLBACK = "http://127.0.0.1:9/oauth/callback"


async def _authorize(kit: Kit, challenge: str, state: str) -> str:
    provider = kit.connections.providers.get("sandbox")
    uri = prepare_grant_uri(
        provider.url("authorize_url"), "cronlink-sandbox", "code", CALLBACK, "profile events",
        state, code_challenge=challenge, code_challenge_method="S256", login_hint="carol",
    )  # fmt: skip
    async with kit.session.get(uri, allow_redirects=False) as response:
        assert response.status == 302
        location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


async def test_a_code_with_its_verifier_gives_tokens_that_work(kit: Kit) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await _authorize(kit, create_s256_code_challenge(verifier), "st-1")
    provider = kit.connections.providers.get("sandbox")
    now = datetime.now(UTC)
    tokens = await exchange_code(kit.session, provider, code, CALLBACK, verifier, now)
    assert tokens.refresh_token is not None
    assert tokens.expires_at is not None
    async with kit.session.get(
        f"{kit.sandbox.url}/api/me", headers={"Authorization": f"Bearer {tokens.access_token}"}
    ) as response:
        assert (await response.json())["user"] == "carol"
    with pytest.raises(RefreshError, match="invalid_grant"):  # a code is good once
        await exchange_code(kit.session, provider, code, CALLBACK, verifier, now)


async def test_a_wrong_verifier_is_refused(kit: Kit) -> None:
    code = await _authorize(kit, create_s256_code_challenge(secrets.token_urlsafe(48)), "st-2")
    provider = kit.connections.providers.get("sandbox")
    with pytest.raises(RefreshError, match="invalid_grant"):
        await exchange_code(
            kit.session, provider, code, CALLBACK, secrets.token_urlsafe(48), datetime.now(UTC)
        )


async def test_a_port_in_use_is_a_clear_error() -> None:
    async with Sandbox() as first:
        with pytest.raises(CronlinkError, match=rf"127.0.0.1:{first.port} .*choose another port"):
            async with Sandbox(port=first.port):
                pass
