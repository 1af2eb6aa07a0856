"""The OpenID Connect provider on Authlib's server core: grants, tokens, ID tokens, userinfo.

Authlib's server is synchronous; every method here runs in the application's
bounded thread pool (``AppContext.run_blocking``), never on the event loop.
Requests reach it as :class:`FormRequest`, built by ``web.py`` from what the
loop already read, so nothing here touches the socket.

Codes, access and refresh tokens are 256-bit random strings stored as SHA-256
digests. A *grant* is everything one authorization produced: a second use of
its code, or a replayed refresh token, revokes the whole grant.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from singleid import events
from singleid.db import Database, utcnow
from singleid.idp.oidc import models
from singleid.idp.oidc.service.claims import CLAIMS_SUPPORTED, ClaimSource
from singleid.idp.oidc.service.clients import SCOPES, ClientService, OidcClient
from singleid.idp.oidc.service.keys import ALGORITHMS, SigningKeys
from singleid.idp.oidc.service.sessions import NewSession, SessionService, SessionView
from singleid.keyring import Keyring
from singleid.profile.service import ProfileService

# Authlib logs whole token responses at DEBUG; tokens never go to our logs.
logging.getLogger("authlib").setLevel(logging.INFO)

CODE_TTL = timedelta(seconds=60)
ACCESS_TOKEN_SECONDS = 3600
REFRESH_TOKEN_TTL = timedelta(days=30)
ID_TOKEN_SECONDS = 3600
ASSERTION_PRUNE_SECONDS = 60
LAST_EPOCH_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
EVENT_SOURCE = "/singleid/idp/oidc"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


# -- what Authlib's models want ------------------------------------------------


@dataclass(frozen=True)
class EndUser:
    customer_id: str
    auth_time: datetime
    acr: str = ""
    amr: tuple[str, ...] = ()
    sid: str | None = None

    def get_user_id(self) -> str:
        return self.customer_id

    @classmethod
    def of(cls, session: SessionView) -> EndUser:
        return cls(session.customer_id, session.auth_time, session.acr, session.amr, session.sid)


@dataclass(frozen=True)
class CodeRecord:
    digest: bytes
    grant_id: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: EndUser

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return _epoch(self.user.auth_time)

    def get_acr(self) -> str:
        return self.user.acr

    def get_amr(self) -> list[str]:
        return list(self.user.amr)


@dataclass(frozen=True)
class TokenRecord:
    id: int
    kind: str  # "access_token" or "refresh_token": which of the two was presented
    grant_id: str | None
    client_id: str
    customer_id: str | None
    scope: str
    issued_at: datetime
    expires_at: datetime
    revoked: bool

    def check_client(self, client: OidcClient) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, _epoch(self.expires_at) - _epoch(self.issued_at))

    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> EndUser | None:
        return EndUser(self.customer_id, self.issued_at) if self.customer_id else None

    def get_client_id(self) -> str:
        return self.client_id


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, data: Mapping[str, str], datalist: Mapping[str, list[str]]) -> None:
        self._data = dict(data)
        self._datalist = defaultdict(list, {k: list(v) for k, v in datalist.items()})

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """An HTTP request as Authlib sees it, built from what the event loop read."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str],
                 items: list[tuple[str, str]]) -> None:
        super().__init__(method, uri, headers=headers)
        datalist: dict[str, list[str]] = defaultdict(list)
        for key, value in items:
            datalist[key].append(value)
        data = {key: values[0] for key, values in datalist.items()}
        self.payload = _Payload(data, datalist)
        self._form = data
        # A sign-in's session, written with the code it issues (one transaction, one
        # commit less per login); see Provider.save_code.
        self.new_session: NewSession | None = None

    @property
    def args(self) -> dict[str, str]:
        return self._form

    @property
    def form(self) -> dict[str, str]:
        return self._form


Reply = tuple[int, Any, list[tuple[str, str]]]

# Prebuilt Core statements for the sign-in path (one login: a consent check and a
# code): ORM flushes and per-call statements cost more there than the queries.
_INSERT_SESSION = insert(models.BrowserSession)
_INSERT_GRANT = insert(models.Grant)
_INSERT_CODE = insert(models.AuthorizationCode)
_INSERT_SESSION_CLIENT = insert(models.SessionClient)
_SESSION_CLIENT = select(models.SessionClient.sid).where(
    models.SessionClient.sid == bindparam("sid"),
    models.SessionClient.client_id == bindparam("client_id"))
_CONSENTED = select(models.Consent.scopes).where(
    models.Consent.customer_id == bindparam("customer_id"),
    models.Consent.client_id == bindparam("client_id"))


# -- Authlib's extension points ---------------------------------------------------


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, provider: Provider) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.provider = provider

    def query_client(self, client_id: str) -> OidcClient | None:
        return self.provider.clients.find(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.provider.save_token(token, request)

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Reply:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class _Pkce(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only (``plain`` is refused), required of public clients."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        if not challenge and grant.request.client.public:
            raise InvalidRequestError("PKCE is required: send code_challenge with S256",
                                      redirect_uri=redirect_uri)
        if challenge and method != "S256":
            raise InvalidRequestError("code_challenge_method must be S256",
                                      redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, code: CodeRecord) -> str | None:
        return code.code_challenge

    def get_authorization_code_challenge_method(self, code: CodeRecord) -> str | None:
        return code.code_challenge_method


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*CLIENT_AUTH_METHODS, "none"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        self.server.provider.save_code(code, request)

    def query_authorization_code(self, code: str, client: OidcClient) -> CodeRecord | None:
        return self.server.provider.find_code(code, client)  # type: ignore[no-any-return]

    def delete_authorization_code(self, code: CodeRecord) -> None:
        """Nothing: ``save_token`` marks the code used in the transaction that issues."""

    def authenticate_user(self, code: CodeRecord) -> EndUser:
        return code.user


class _RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*CLIENT_AUTH_METHODS, "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh returns a new refresh token

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        return self.server.provider.find_refresh_token(refresh_token)  # type: ignore[no-any-return]

    def authenticate_user(self, token: TokenRecord) -> EndUser | None:
        return token.get_user()

    def revoke_old_credential(self, token: TokenRecord) -> None:
        """Nothing: ``save_token`` spends the old refresh token atomically with the new one."""


class _CredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = CLIENT_AUTH_METHODS


class _IdToken(OpenIDCode):  # type: ignore[misc]
    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # a nonce is the relying party's replay check; we echo it

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        code: CodeRecord = request.authorization_code
        return self.provider.id_token(request.client, code.user, token["scope"],
                                      nonce=code.nonce, access_token=token.get("access_token"))


class _PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, provider: Provider) -> None:
        super().__init__(validate_jti=True)
        self.provider = provider

    def get_audiences(self) -> list[str]:
        return [self.provider.issuer, self.provider.endpoint("token")]

    def resolve_client_public_key(self, client: OidcClient) -> KeySet:
        jwks: Any = client.jwks or {"keys": []}
        return KeySet.import_key_set(jwks)

    def validate_jti(self, claims: Mapping[str, Any], jti: str) -> bool:
        # Authlib has checked the signature, and that exp is present and not past (with
        # its leeway, so the row outlives that too); a far-future exp is kept as the
        # last second a datetime can hold.
        until = min(int(claims["exp"]) + self.leeway, LAST_EPOCH_SECOND)
        return self.provider.remember_jti(str(claims.get("sub", "")), str(jti),
                                          utc_from_epoch(until))


class _Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [*CLIENT_AUTH_METHODS, "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self.server.provider.find_token(token_string)  # type: ignore[no-any-return]

    def revoke_token(self, token: TokenRecord, request: OAuth2Request) -> None:
        self.server.provider.revoke(token)


class _Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self.server.provider.find_token(token_string)  # type: ignore[no-any-return]

    def check_permission(self, token: TokenRecord, client: OidcClient,
                         request: OAuth2Request) -> bool:
        return not client.public  # resource servers are confidential clients

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "active": True, "client_id": token.client_id, "scope": token.scope,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            "exp": _epoch(token.expires_at), "iat": _epoch(token.issued_at),
            "iss": self.server.provider.issuer}
        if token.customer_id:
            payload["sub"] = token.customer_id
        return payload


# -- what web.py gets back from the authorization endpoint -------------------------------


@dataclass(frozen=True)
class Redirect:
    location: str


@dataclass(frozen=True)
class ShowLogin:
    client_id: str
    login_hint: str = ""


@dataclass(frozen=True)
class ShowConsent:
    client_id: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class ErrorPage:
    error: str
    description: str


AuthorizeOutcome = Redirect | ShowLogin | ShowConsent | ErrorPage


@dataclass
class Provider:
    db: Database
    keyring: Keyring
    issuer: str
    clients: ClientService = field(init=False)
    keys: SigningKeys = field(init=False)
    sessions: SessionService = field(init=False)
    claim_source: ClaimSource = field(init=False)
    server: _Server = field(init=False)

    PATHS: ClassVar[dict[str, str]] = {
        "authorization": "/authorize", "token": "/token", "userinfo": "/userinfo",
        "jwks": "/jwks", "revocation": "/revoke", "introspection": "/introspect",
        "end_session": "/logout"}

    def __post_init__(self) -> None:
        self.issuer = self.issuer.rstrip("/")
        self.clients = ClientService(self.db)
        self.keys = SigningKeys(self.db, self.keyring)
        self.sessions = SessionService(self.db)
        self.claim_source = ClaimSource(self.db, self.keyring,
                                        ProfileService.configured(self.db, self.keyring))
        server = _Server(self)
        server.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda **_: secrets.token_urlsafe(32),
            refresh_token_generator=lambda **_: secrets.token_urlsafe(32),
            expires_generator=lambda _client, _grant_type: ACCESS_TOKEN_SECONDS))
        server.register_grant(_CodeGrant, [_Pkce(required=True), _IdToken(self)])
        server.register_grant(_RefreshGrant)
        server.register_grant(_CredentialsGrant)
        server.register_client_auth_method(_PrivateKeyJwt.CLIENT_AUTH_METHOD,
                                           _PrivateKeyJwt(self))
        server.register_endpoint(_Revocation)
        server.register_endpoint(_Introspection)
        self.server = server
        self._next_prune = 0.0

    def endpoint(self, name: str) -> str:
        return self.issuer + self.PATHS[name]

    # -- discovery ---------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.endpoint("authorization"),
            "token_endpoint": self.endpoint("token"),
            "userinfo_endpoint": self.endpoint("userinfo"),
            "jwks_uri": self.endpoint("jwks"),
            "revocation_endpoint": self.endpoint("revocation"),
            "introspection_endpoint": self.endpoint("introspection"),
            "end_session_endpoint": self.endpoint("end_session"),
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                                      "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(ALGORITHMS),
            "token_endpoint_auth_methods_supported": [*CLIENT_AUTH_METHODS, "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce",
                                 "acr", "amr", "at_hash", "sid", *CLAIMS_SUPPORTED],
            "prompt_values_supported": ["none", "login", "consent"],
            "ui_locales_supported": ["ru", "en"],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
        }

    # -- token, revocation, introspection ------------------------------------------

    def token_response(self, request: FormRequest) -> Reply:
        return self.server.create_token_response(request)  # type: ignore[no-any-return]

    def revocation_response(self, request: FormRequest) -> Reply:
        return self.server.create_endpoint_response(  # type: ignore[no-any-return]
            "revocation", request)

    def introspection_response(self, request: FormRequest) -> Reply:
        return self.server.create_endpoint_response(  # type: ignore[no-any-return]
            "introspection", request)

    # -- authorization ------------------------------------------------------------

    def authorize(self, request: FormRequest, session: SessionView | None, *,
                  fresh: bool = False, consented: bool = False) -> AuthorizeOutcome:
        """Decide what an authorization request needs next: a login, a consent, or a code.

        ``fresh``: the user has just signed in within this request's flow, so
        ``prompt=login`` and ``max_age`` are satisfied. ``consented``: the user
        has just approved this request on the consent page.
        """
        data = request.payload.data
        if not data.get("redirect_uri"):
            return ErrorPage("invalid_request", "redirect_uri is required")
        user = EndUser.of(session) if session else None
        try:
            grant = self.server.get_consent_grant(request, end_user=user)
        except OAuth2Error as error:
            return self._authorize_error(request, error)
        redirect_uri = grant.redirect_uri
        prompts = set(data.get("prompt", "").split())
        state = data.get("state")
        try:
            if user is not None and not fresh:
                user = self._reauthenticate(user, data, prompts, redirect_uri)
            if user is None:
                if "none" in prompts:
                    raise LoginRequiredError(redirect_uri=redirect_uri)
                return ShowLogin(request.client.client_id, data.get("login_hint", "")[:256])
            scopes = tuple(request.scope.split()) if request.scope else ()
            if consented:
                self.record_consent(user.customer_id, request.client.client_id, scopes)
            elif ("consent" in prompts
                                  or not self._has_consent(user.customer_id,
                                                           request.client.client_id, scopes)):
                if "none" in prompts:
                    raise ConsentRequiredError(redirect_uri=redirect_uri)
                return ShowConsent(request.client.client_id, scopes)
        except OAuth2Error as error:
            error.state = state
            return self._authorize_error(request, error)
        reply = self.server.create_authorization_response(request, grant_user=user, grant=grant)
        return self._outcome(request, reply)

    def deny(self, request: FormRequest) -> AuthorizeOutcome:
        """The user refused on the consent page: ``access_denied`` to the client."""
        try:
            grant = self.server.get_consent_grant(request, end_user=None)
        except OAuth2Error as error:
            return self._authorize_error(request, error)
        denied = AccessDeniedError(redirect_uri=grant.redirect_uri)
        denied.state = request.payload.data.get("state")
        return self._authorize_error(request, denied)

    def _reauthenticate(self, user: EndUser, data: Mapping[str, str], prompts: set[str],
                        redirect_uri: str) -> EndUser | None:
        """None when the existing session does not satisfy the request."""
        if "login" in prompts:
            return None
        max_age = data.get("max_age")
        if max_age is not None:
            if not max_age.isdigit():
                raise InvalidRequestError("max_age must be a number of seconds",
                                          redirect_uri=redirect_uri)
            if (utcnow() - user.auth_time).total_seconds() > int(max_age):
                return None
        hint = data.get("id_token_hint")
        if hint:
            claims = self.verify_id_token_hint(hint)
            if claims is None:
                raise InvalidRequestError("id_token_hint is not one of our ID tokens",
                                          redirect_uri=redirect_uri)
            if claims.get("sub") != user.customer_id:
                return None
        return user

    def _authorize_error(self, request: FormRequest, error: OAuth2Error) -> AuthorizeOutcome:
        if error.redirect_uri:
            if error.state is None:
                error.state = request.payload.data.get("state")
            return self._outcome(request, self.server.handle_error_response(request, error))
        return ErrorPage(error.error or "invalid_request", error.get_error_description())

    @staticmethod
    def _outcome(request: FormRequest, reply: Reply) -> AuthorizeOutcome:
        status, body, headers = reply
        location = dict(headers).get("Location")
        if status == 302 and location:
            return Redirect(location)
        error = body.get("error", "server_error") if isinstance(body, dict) else "server_error"
        description = body.get("error_description", "") if isinstance(body, dict) else ""
        return ErrorPage(error, description)

    def _has_consent(self, customer_id: str, client_id: str, scopes: tuple[str, ...]) -> bool:
        with self.db.read_connection() as connection:
            granted = connection.execute(_CONSENTED, {"customer_id": customer_id,
                                                      "client_id": client_id}).scalar()
        return granted is not None and set(scopes) <= set(granted)

    def record_consent(self, customer_id: str, client_id: str, scopes: tuple[str, ...]) -> None:
        def apply(session: Session) -> None:
            row = session.get(models.Consent, (customer_id, client_id))
            if row is None:
                row = models.Consent(customer_id=customer_id, client_id=client_id, scopes=[],
                                     granted_at=utcnow())
                session.add(row)
            row.scopes = sorted(set(row.scopes) | set(scopes))
            row.granted_at = utcnow()
            events.emit(session, type="oidc.consent_granted.v1", source=EVENT_SOURCE,
                        subject=customer_id, data={"customer_id": customer_id,
                                                   "client_id": client_id,
                                                   "scopes": sorted(scopes)})
        self.db.run_write(apply)

    # -- codes -------------------------------------------------------------------------

    def save_code(self, code: str, request: OAuth2Request) -> None:
        user: EndUser = request.user
        data = request.payload.data
        now = utcnow()
        grant_id = secrets.token_hex(16)
        client_id = request.client.client_id
        new_session: NewSession | None = request.new_session
        grant = {"id": grant_id, "client_id": client_id, "customer_id": user.customer_id,
                 "sid": user.sid, "scope": request.scope or "", "created_at": now,
                 "revoked_at": None}
        code_row = {
            "digest": digest(code), "grant_id": grant_id, "client_id": client_id,
            "customer_id": user.customer_id, "redirect_uri": request.payload.redirect_uri,
            "scope": request.scope or "", "nonce": data.get("nonce"),
            "code_challenge": data.get("code_challenge"),
            "code_challenge_method": data.get("code_challenge_method"),
            "auth_time": user.auth_time, "acr": user.acr, "amr": list(user.amr),
            "sid": user.sid, "expires_at": now + CODE_TTL, "used_at": None}
        link = {"sid": user.sid, "client_id": client_id}

        def apply(session: Session) -> None:
            if new_session is not None and not new_session.stored:
                session.execute(_INSERT_SESSION, new_session.values())
            session.execute(_INSERT_GRANT, grant)
            session.execute(_INSERT_CODE, code_row)
            # The session now involves this client: tell it at logout.
            if user.sid and session.execute(_SESSION_CLIENT, link).first() is None:
                session.execute(_INSERT_SESSION_CLIENT, link)

        # A concurrent code for the same session and client may insert the same
        # session-client row first; the retry then finds it.
        self.db.run_write(apply)
        if new_session is not None:
            new_session.stored = True

    def find_code(self, code: str, client: OidcClient) -> CodeRecord | None:
        now = utcnow()
        with self.db.read() as session:
            row = session.get(models.AuthorizationCode, digest(code))
            if row is None or row.client_id != client.client_id:
                return None
            grant = session.get(models.Grant, row.grant_id)
            revoked = grant is None or grant.revoked_at is not None
            record = CodeRecord(
                row.digest, row.grant_id, row.client_id, row.redirect_uri, row.scope, row.nonce,
                row.code_challenge, row.code_challenge_method,
                EndUser(row.customer_id, row.auth_time, row.acr, tuple(row.amr), row.sid))
            used, expired = row.used_at is not None, row.expires_at <= now
        if used:
            self._revoke_grant(row.grant_id, "authorization_code_reused")
            return None
        if expired or revoked:
            return None
        return record

    # -- tokens ---------------------------------------------------------------------------

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        now = utcnow()
        grant_type = request.payload.grant_type
        client: OidcClient = request.client
        user: EndUser | None = request.user
        grant_id: str | None = None
        spent: tuple[str, Any] | None = None
        if grant_type == "authorization_code":
            code: CodeRecord = request.authorization_code
            grant_id, spent = code.grant_id, ("code", code.digest)
        elif grant_type == "refresh_token":
            old: TokenRecord = request.refresh_token
            grant_id, spent = old.grant_id, ("refresh", old.id)
        refresh = token.get("refresh_token")
        row = {
            "grant_id": grant_id, "client_id": client.client_id,
            "customer_id": user.customer_id if user else None, "scope": token.get("scope", ""),
            "access_digest": digest(token["access_token"]),
            "refresh_digest": digest(refresh) if refresh else None, "issued_at": now,
            "access_expires_at": now + timedelta(seconds=int(token.get("expires_in",
                                                                       ACCESS_TOKEN_SECONDS))),
            "refresh_expires_at": now + REFRESH_TOKEN_TTL if refresh else None}

        def apply(session: Session) -> bool:
            if spent is not None and not self._spend(session, spent, now):
                return False
            session.execute(insert(models.Token).values(**row))
            return True

        if not self.db.run_write(apply):
            assert grant_id is not None
            reused = spent is not None and spent[0] == "code"
            self._revoke_grant(grant_id, "authorization_code_reused" if reused
                               else "refresh_token_reused")
            raise InvalidGrantError("this grant was already used; every token from it is revoked")

    @staticmethod
    def _spend(session: Session, spent: tuple[str, Any], now: datetime) -> bool:
        """Mark the code or refresh token used, unless a concurrent request already did."""
        kind, key = spent
        if kind == "code":
            statement = (update(models.AuthorizationCode)
                         .where(models.AuthorizationCode.digest == key,
                                models.AuthorizationCode.used_at.is_(None))
                         .values(used_at=now))
        else:
            statement = (update(models.Token)
                         .where(models.Token.id == key, models.Token.refresh_used_at.is_(None))
                         .values(refresh_used_at=now))
        return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def find_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        record, used = self._token_by(models.Token.refresh_digest, refresh_token, "refresh_token")
        if record is None:
            return None
        if used:
            if record.grant_id:
                self._revoke_grant(record.grant_id, "refresh_token_reused")
            return None
        if record.revoked or record.is_expired():
            return None
        return record

    def find_token(self, token: str) -> TokenRecord | None:
        record, _ = self._token_by(models.Token.access_digest, token, "access_token")
        if record is None:
            record, _ = self._token_by(models.Token.refresh_digest, token, "refresh_token")
        return record

    def _token_by(self, column: Any, value: str, kind: str) -> tuple[TokenRecord | None, bool]:
        if not value or len(value) > 512:
            return None, False
        token, grant = models.Token, models.Grant
        # Plain columns on a connection: this is on every token request's path.
        statement = (select(token.id, token.grant_id, token.client_id, token.customer_id,
                            token.scope, token.issued_at, token.access_expires_at,
                            token.refresh_expires_at, token.refresh_used_at, token.revoked_at,
                            grant.revoked_at.label("grant_revoked_at"))
                     .outerjoin(grant, grant.id == token.grant_id)
                     .where(column == digest(value)))
        with self.db.engine.connect() as connection:
            row = connection.execute(statement).one_or_none()
        if row is None:
            return None, False
        used = kind == "refresh_token" and row.refresh_used_at is not None
        expires = row.access_expires_at if kind == "access_token" else row.refresh_expires_at
        assert expires is not None
        revoked = row.revoked_at is not None or row.grant_revoked_at is not None or used
        return TokenRecord(row.id, kind, row.grant_id, row.client_id, row.customer_id,
                           row.scope, row.issued_at, expires, revoked), used

    def revoke(self, token: TokenRecord) -> None:
        """RFC 7009: a refresh token takes its whole grant with it; an access token itself."""
        if token.kind == "refresh_token" and token.grant_id:
            self._revoke_grant(token.grant_id, "revoked_by_client")
            return
        with self.db.write() as session:
            session.execute(update(models.Token).where(models.Token.id == token.id)
                            .values(revoked_at=utcnow()))

    def _revoke_grant(self, grant_id: str, reason: str) -> None:
        now = utcnow()
        with self.db.write() as session:
            grant = session.get(models.Grant, grant_id)
            if grant is None or grant.revoked_at is not None:
                return
            grant.revoked_at = now
            session.execute(update(models.Token).where(models.Token.grant_id == grant_id,
                                                       models.Token.revoked_at.is_(None))
                            .values(revoked_at=now))
            events.emit(session, type="oidc.grant_revoked.v1", source=EVENT_SOURCE,
                        subject=grant.customer_id or f"clients/{grant.client_id}",
                        data={"grant_id": grant_id, "client_id": grant.client_id,
                              "reason": reason})

    def remember_jti(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """False if this client's assertion ID was used before (by any process).

        The insert is the check: the table's key makes a second use fail, even when
        two processes race. Expired assertions are refused by their ``exp`` anyway,
        so their rows are pruned, by the first insert after each prune interval.
        """
        now = utcnow()
        prune = time.monotonic() >= self._next_prune
        try:
            with self.db.write() as session:
                if prune:
                    session.execute(delete(models.ClientAssertion)
                                    .where(models.ClientAssertion.expires_at < now))
                session.execute(insert(models.ClientAssertion).values(
                    client_id=client_id, jti_digest=digest(jti), expires_at=expires_at))
        except IntegrityError:
            return False
        if prune:
            self._next_prune = time.monotonic() + ASSERTION_PRUNE_SECONDS
        return True

    # -- ID tokens, userinfo --------------------------------------------------------

    def id_token(self, client: OidcClient, user: EndUser, scope: str, *, nonce: str | None,
                 access_token: str | None) -> str:
        alg = client.id_token_signed_response_alg
        key = self.keys.signing_key(alg)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": client.client_id, "iat": now,
            "exp": now + ID_TOKEN_SECONDS, "auth_time": _epoch(user.auth_time),
            "acr": user.acr or "0", "amr": list(user.amr)}
        if nonce:
            claims["nonce"] = nonce
        if user.sid:
            claims["sid"] = user.sid
        if access_token:
            half = create_half_hash(access_token, alg)
            if half is not None:
                claims["at_hash"] = half.decode()
        claims.update(self.claims(user.customer_id, scope))
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key,
                          algorithms=[alg])

    def verify_id_token_hint(self, hint: str) -> dict[str, Any] | None:
        """The claims of an ID token we signed (expired ones too), or None."""
        try:
            decoded = jwt.decode(hint, self.keys.public_key_set(), algorithms=list(ALGORITHMS))
        except (JoseError, ValueError):
            return None
        claims = dict(decoded.claims)
        return claims if claims.get("iss") == self.issuer else None

    def claims(self, customer_id: str, scope: str) -> dict[str, Any]:
        return self.claim_source.claims(customer_id, scope)

    def userinfo(self, access_token: str) -> dict[str, Any] | None:
        record = self.find_token(access_token)
        if (record is None or record.kind != "access_token" or record.revoked
                or record.is_expired() or not record.customer_id
                or "openid" not in record.scope.split()):
            return None
        return self.claims(record.customer_id, record.scope)

    # -- logout --------------------------------------------------------------------------

    def logout_token(self, client: OidcClient, session: SessionView) -> str:
        key = self.keys.signing_key(client.id_token_signed_response_alg)
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": client.client_id, "iat": now, "exp": now + 120,
                  "jti": secrets.token_urlsafe(16), "sub": session.customer_id,
                  "sid": session.sid, "events": {BACKCHANNEL_EVENT: {}}}
        return jwt.encode({"alg": client.id_token_signed_response_alg, "kid": key.kid,
                           "typ": "logout+jwt"}, claims, key,
                          algorithms=[client.id_token_signed_response_alg])


def utc_from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
