"""The cabinet's routes: home, sign-in, the OIDC callback, sign-out."""

from __future__ import annotations

import asyncio
import html
import secrets
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.starlette_client import OAuth, OAuthError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from singleid.clients.profile import ProfileClient, attribute_values

CALLBACK_PATH = "/auth/callback"
SCOPES = "openid profile phone"
SHOWN_ATTRIBUTES = ("preferred_name", "full_name", "loyalty_tier", "language")


@dataclass(frozen=True)
class CabinetConfig:
    issuer: str  # singleid's issuer; discovery is <issuer>/.well-known/openid-configuration
    client_id: str
    client_secret: str = field(repr=False)
    base_url: str  # where the cabinet is reached; the redirect URI is base_url + CALLBACK_PATH
    grpc_target: str = ""  # singleid's gRPC address, for ProfileService; empty: userinfo only
    session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @property
    def redirect_uri(self) -> str:
        return self.base_url.rstrip("/") + CALLBACK_PATH


def profile_client(config: CabinetConfig) -> ProfileClient:
    """The one place the cabinet opens a gRPC client (credentials will be added here)."""
    return ProfileClient(config.grpc_target)


def create_app(config: CabinetConfig) -> Starlette:
    oauth = OAuth()
    oauth.register(
        "singleid", client_id=config.client_id, client_secret=config.client_secret,
        server_metadata_url=config.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": SCOPES, "code_challenge_method": "S256"})
    singleid = oauth.create_client("singleid")

    async def home(request: Request) -> Response:
        user = request.session.get("user")
        if not user:
            return _page("Loyalty cabinet", '<p><a href="/login">Sign in with singleid</a></p>')
        profile = await asyncio.to_thread(_profile, config, user["sub"])
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in profile.items())
        return _page("Loyalty cabinet",
                     f'<p id="greeting">Hello, <span id="name">{html.escape(user["name"])}'
                     f'</span></p><table id="profile">{rows}</table>'
                     '<form method="post" action="/logout"><button>Sign out</button></form>')

    async def login(request: Request) -> Response:
        response: Response = await singleid.authorize_redirect(request, config.redirect_uri)
        return response

    async def callback(request: Request) -> Response:
        try:
            token = await singleid.authorize_access_token(request)
        except OAuthError as exc:  # refused, expired, or a forged callback
            return _page("Sign-in failed", f"<p>{html.escape(exc.error or 'error')}</p>",
                         status=400)
        claims = dict(token.get("userinfo") or {})
        claims |= dict(await singleid.userinfo(token=token))
        request.session["user"] = {"sub": claims["sub"],
                                   "name": claims.get("name") or claims["sub"]}
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    return Starlette(
        routes=[Route("/", home), Route("/login", login), Route(CALLBACK_PATH, callback),
                Route("/logout", logout, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, secret_key=config.session_secret,
                               session_cookie="cabinet_session", same_site="lax",
                               https_only=config.base_url.startswith("https:"))])


def _profile(config: CabinetConfig, customer_id: str) -> dict[str, Any]:
    """The attributes the cabinet shows, read from ProfileService (none without gRPC)."""
    if not config.grpc_target:
        return {}
    with profile_client(config) as client:
        values = attribute_values(client.get_profile(customer_id))
    return {name: values[name] for name in SHOWN_ATTRIBUTES if name in values}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body><h1>{title}</h1>{body}</body></html>", status_code=status)
