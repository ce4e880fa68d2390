"""authlib's authorization server over the sandbox's grants: authorization code with PKCE
and refresh_token grants, client authentication by HTTP Basic or form fields (as the client
allows)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import grants as rfc6749_grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7636 import CodeChallenge

from cronlink.sandbox.grants import AUTH_METHODS, Code, RefreshCredential

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cronlink.sandbox.grants import Client, Grants


class Request(OAuth2Request):  # type: ignore[misc]
    """An HTTP request as authlib reads it: query and form fields already parsed."""

    def __init__(
        self, method: str, uri: str, headers: Mapping[str, str], query: dict[str, str],
        form: dict[str, str],
    ) -> None:  # fmt: skip
        super().__init__(method, uri, headers=dict(headers))
        self._query, self._form = query, form
        merged = {**query, **form}
        self.payload = BasicOAuth2Payload(merged)
        self.payload._datalist = defaultdict(list, {k: [v] for k, v in merged.items()})

    @property
    def args(self) -> dict[str, str]:
        return self._query

    @property
    def form(self) -> dict[str, str]:
        return self._form


class Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, grants: Grants) -> None:
        super().__init__()
        self.store = grants
        self.register_grant(_CodeGrant, [CodeChallenge(required=False)])
        self.register_grant(_RefreshGrant)

    def query_client(self, client_id: str) -> Client | None:
        return self.store.client if client_id == self.store.client.client_id else None

    def save_token(self, token: dict[str, Any], request: Request) -> None:
        """Tokens are made by `_issue` below; authlib's generator is not used."""

    def generate_token(self, grant_type: str, client: Client, user: Any = None, **kw: Any) -> Any:
        return {}

    def create_oauth2_request(self, request: Request) -> Request:
        return request

    def create_json_request(self, request: Request) -> Request:
        return request

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class _CodeGrant(rfc6749_grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def save_authorization_code(self, code: str, request: Request) -> None:
        data = request.payload.data
        self.server.store.codes[code] = Code(
            code=code, client_id=request.client.client_id, user=request.user,
            redirect_uri=data.get("redirect_uri", ""), scope=data.get("scope", ""),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )  # fmt: skip

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found: Code | None = self.server.store.codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        self.server.store.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> str:
        return authorization_code.user

    def create_token_response(self) -> tuple[int, Any, list[tuple[str, str]]]:
        code: Code = self.request.authorization_code
        self.delete_authorization_code(code)
        grant = self.server.store.new_grant(code.user, code.scope)
        body = {**self.server.store.access_token(grant), "refresh_token": grant.refresh_token}
        return 200, body, self.TOKEN_RESPONSE_HEADER


class _RefreshGrant(rfc6749_grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshCredential | None:
        return self.server.store.credential(refresh_token)  # type: ignore[no-any-return]

    def authenticate_user(self, refresh_token: RefreshCredential) -> str:
        return refresh_token.grant.user

    def revoke_old_credential(self, refresh_token: RefreshCredential) -> None:
        """Rotation happens as the token is issued (`create_token_response`)."""

    def create_token_response(self) -> tuple[int, Any, list[tuple[str, str]]]:
        credential: RefreshCredential = self.request.refresh_token
        store = self.server.store
        body = {**store.access_token(credential.grant), "refresh_token": store.rotate(credential)}
        return 200, body, self.TOKEN_RESPONSE_HEADER
