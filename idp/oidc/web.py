"""The provider's HTTP routes (the ``singleid.http`` entry point).

Handlers read the request on the event loop, then hand one synchronous unit of
work (Authlib's server core, the database, argon2id) to the bounded thread pool
with ``context.run_blocking``; see docs/decisions/0007.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from singleid.errors import AlreadyExists, InvalidArgument, NotFound
from singleid.idp.oidc import pages
from singleid.idp.oidc.service.logins import (
    PASSWORD_ACR,
    PASSWORD_AMR,
    LoginService,
    Outcome,
)
from singleid.idp.oidc.service.provider import (
    AuthorizeOutcome,
    ErrorPage,
    FormRequest,
    Provider,
    Redirect,
    ShowConsent,
    ShowLogin,
)
from singleid.idp.oidc.service.sessions import SessionView
from singleid.idp.oidc.service.staff import STAFF_COOKIE, StaffService, Step, StepResult
from singleid.server.context import AppContext

log = logging.getLogger(__name__)

SESSION_COOKIE = "singleid_session"
STAFF_HOME = "/review"
BROWSER_COOKIE = "singleid_browser"
BACKCHANNEL_TIMEOUT_SECONDS = 3.0
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PAGE_HEADERS = {**NO_STORE, "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "form-action 'self' http: https:; "
                                           "frame-ancestors 'none'",
                "Referrer-Policy": "no-referrer"}


def issuer_of(context: AppContext) -> str:
    return context.settings.effective_issuer


def routes(context: AppContext) -> list[BaseRoute]:
    """The ``singleid.http`` entry point."""
    web = _Web(context, Provider(context.db, context.keyring, issuer_of(context)),
               LoginService(context.db, context.keyring))
    staff = _StaffWeb(web, StaffService(context.db, context.keyring))
    return [
        Route("/.well-known/openid-configuration", web.discovery),
        Route("/jwks", web.jwks),
        Route("/authorize", web.authorize, methods=["GET", "POST"]),
        Route("/login", web.login, methods=["POST"]),
        Route("/register", web.register, methods=["GET", "POST"]),
        Route("/consent", web.consent, methods=["POST"]),
        Route("/legacy", web.legacy, methods=["POST"]),
        Route("/token", web.token, methods=["POST"]),
        Route("/revoke", web.revoke, methods=["POST"]),
        Route("/introspect", web.introspect, methods=["POST"]),
        Route("/userinfo", web.userinfo, methods=["GET", "POST"]),
        Route("/logout", web.logout, methods=["GET", "POST"]),
        Route("/staff/login", staff.login, methods=["GET", "POST"]),
        Route("/staff/otp", staff.otp, methods=["POST"]),
        Route("/staff/logout", staff.logout, methods=["POST"]),
    ]


@dataclass
class _Browser:
    """What a page request carries: language, CSRF token, session cookie, address."""

    lang: str
    browser_id: str
    new_browser: bool
    csrf: str
    session_cookie: str | None
    address: str

    def page(self) -> pages.Page:
        return pages.Page(self.lang, self.csrf)


# A posted page: its form, the authorization query it carries (raw and parsed),
# the browser, and that query as an OAuth request.
_Posted = tuple[dict[str, str], str, list[tuple[str, str]], _Browser, FormRequest]


class _Web:
    def __init__(self, context: AppContext, provider: Provider, logins: LoginService) -> None:
        self.context = context
        self.provider = provider
        self.logins = logins
        self.secure = provider.issuer.startswith("https://")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.context.run_blocking(fn, *args)

    # -- helpers ------------------------------------------------------------------------

    def _csrf_for(self, browser_id: str) -> str:
        return self.context.keyring.blind_index(browser_id, "oidc.csrf").hex()

    def _fresh_for(self, sid: str, query: str) -> str:
        return self.context.keyring.blind_index(f"{sid}\x00{query}", "oidc.fresh").hex()

    def _browser(self, request: Request, params: dict[str, str]) -> _Browser:
        browser_id = request.cookies.get(BROWSER_COOKIE, "")
        new = not (20 <= len(browser_id) <= 64)
        if new:
            browser_id = secrets.token_urlsafe(24)
        lang = pages.choose_language(params.get("ui_locales", ""),
                                     request.headers.get("accept-language", ""))
        address = request.client.host if request.client else "unknown"
        return _Browser(lang, browser_id, new, self._csrf_for(browser_id),
                        request.cookies.get(SESSION_COOKIE), address)

    def _html(self, browser: _Browser, html: str, status: int = 200,
              session_cookie: str | None = None) -> Response:
        response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        return self._cookies(response, browser, session_cookie)

    def _cookies(self, response: Response, browser: _Browser,
                 session_cookie: str | None) -> Response:
        if browser.new_browser:
            response.set_cookie(BROWSER_COOKIE, browser.browser_id, httponly=True,
                                samesite="lax", secure=self.secure, path="/")
        if session_cookie is not None:
            response.set_cookie(SESSION_COOKIE, session_cookie, httponly=True, samesite="lax",
                                secure=self.secure, path="/")
        return response

    @staticmethod
    def _csrf_ok(browser: _Browser, form: dict[str, str]) -> bool:
        return not browser.new_browser and hmac.compare_digest(form.get("csrf", ""),
                                                               browser.csrf)

    def _forbidden(self, browser: _Browser) -> Response:
        return self._html(browser, pages.error_page(
            browser.page(), error="invalid_request",
            description="the form expired or did not come from this site; start again"), 403)

    def _authorize_request(self, method: str, items: list[tuple[str, str]],
                           headers: Headers) -> FormRequest:
        return FormRequest(method, self.provider.endpoint("authorization") + "?"
                           + urlencode(items), headers, items)

    def _respond(self, browser: _Browser, outcome: AuthorizeOutcome, query: str,
                 session: SessionView | None, fresh: bool,
                 session_cookie: str | None = None) -> Response:
        page = browser.page()
        response: Response
        if isinstance(outcome, Redirect):
            response = RedirectResponse(outcome.location, status_code=302, headers=NO_STORE)
            return self._cookies(response, browser, session_cookie)
        if isinstance(outcome, ShowLogin):
            return self._html(browser, pages.login_page(
                page, client=outcome.client_id, query=query, login_hint=outcome.login_hint),
                session_cookie=session_cookie)
        if isinstance(outcome, ShowConsent):
            fresh_token = self._fresh_for(session.sid, query) if (fresh and session) else ""
            return self._html(browser, pages.consent_page(
                page, client=outcome.client_id, scopes=outcome.scopes, query=query,
                fresh=fresh_token), session_cookie=session_cookie)
        assert isinstance(outcome, ErrorPage)
        return self._html(browser, pages.error_page(page, error=outcome.error,
                                                    description=outcome.description), 400,
                          session_cookie=session_cookie)

    async def _posted(self, request: Request) -> _Posted | Response:
        """A page's form, its carried authorization query and browser, or a 403 on bad CSRF."""
        form = await self._form(request)
        query = form.get("q", "")
        items = parse_qsl(query, keep_blank_values=True)
        browser = self._browser(request, dict(items))
        if not self._csrf_ok(browser, form):
            return self._forbidden(browser)
        return form, query, items, browser, self._authorize_request("GET", items, request.headers)

    async def _form(self, request: Request) -> dict[str, str]:
        form = await request.form()
        return {k: v for k, v in form.multi_items() if isinstance(v, str)}

    # -- discovery and keys ----------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(self.provider.discovery(),
                            headers={"Cache-Control": "public, max-age=300"})

    async def jwks(self, request: Request) -> Response:
        body = await self.run(self.provider.keys.jwks)
        return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})

    # -- the authorization endpoint and its pages ----------------------------------------------

    async def authorize(self, request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        else:
            items = list(request.query_params.multi_items())
        browser = self._browser(request, dict(items))
        query = urlencode(items)
        oauth_request = self._authorize_request("GET", items, request.headers)

        def work() -> tuple[AuthorizeOutcome, SessionView | None]:
            session = self.provider.sessions.get(browser.session_cookie)
            return self.provider.authorize(oauth_request, session), session

        outcome, session = await self.run(work)
        return self._respond(browser, outcome, query, session, fresh=False)

    async def login(self, request: Request) -> Response:
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        form, query, items, browser, oauth_request = posted
        identifier, password = form.get("identifier", ""), form.get("password", "")
        client_id = dict(items).get("client_id", "")

        def work() -> Response:
            result = self.logins.sign_in(identifier, password, browser.address)
            page = browser.page()
            if result.outcome is Outcome.LEGACY_CONSENT:
                return self._html(browser, pages.legacy_page(
                    page, product=result.product, query=query, link=result.pending_link))
            if result.outcome is not Outcome.OK:
                key = "locked" if result.outcome is Outcome.LOCKED else "failed"
                status = 429 if result.outcome is Outcome.LOCKED else 401
                return self._html(browser, pages.login_page(
                    page, client=client_id, query=query, login_hint=identifier,
                    alert=pages.TEXT[browser.lang][key]), status)
            return self._signed_in(browser, oauth_request, query, result.customer_id)

        response: Response = await self.run(work)
        return response

    def _signed_in(self, browser: _Browser, oauth_request: FormRequest, query: str,
                   customer_id: str) -> Response:
        """Start a session, then carry on with the authorization request (blocking).

        The session is written in the transaction that issues the code; when no code
        is issued (consent comes first, or an error), on its own.
        """
        new = self.provider.sessions.start(customer_id, acr=PASSWORD_ACR, amr=PASSWORD_AMR)
        oauth_request.new_session = new
        outcome = self.provider.authorize(oauth_request, new.view, fresh=True)
        if not new.stored:
            self.provider.sessions.store(new)
        return self._respond(browser, outcome, query, new.view, fresh=True,
                             session_cookie=new.cookie)

    async def register(self, request: Request) -> Response:
        if request.method == "GET":
            query = request.url.query
            browser = self._browser(request, dict(request.query_params))
            return self._html(browser, pages.register_page(browser.page(), query=query))
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        form, query, _items, browser, oauth_request = posted
        identifier, name = form.get("identifier", ""), form.get("name", "")

        def work() -> Response:
            text = pages.TEXT[browser.lang]
            try:
                customer_id = self.logins.register(identifier, form.get("password", ""), name)
            except InvalidArgument as exc:
                alert = text["invalid_input"].format(detail=exc.field or exc.message)
                return self._html(browser, pages.register_page(
                    browser.page(), query=query, alert=alert, identifier=identifier,
                    name=name), 400)
            except AlreadyExists:
                return self._html(browser, pages.register_page(
                    browser.page(), query=query, alert=text["exists"], identifier=identifier,
                    name=name), 409)
            return self._signed_in(browser, oauth_request, query, customer_id)

        response: Response = await self.run(work)
        return response

    async def consent(self, request: Request) -> Response:
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        form, query, _items, browser, oauth_request = posted
        allow = form.get("decision") == "allow"

        def work() -> tuple[AuthorizeOutcome, SessionView | None, bool]:
            session = self.provider.sessions.get(browser.session_cookie)
            if session is None:
                return self.provider.authorize(oauth_request, None), None, False
            if not allow:
                return self.provider.deny(oauth_request), session, False
            fresh = hmac.compare_digest(form.get("fresh", ""),
                                        self._fresh_for(session.sid, query))
            return (self.provider.authorize(oauth_request, session, fresh=fresh,
                                            consented=True), session, fresh)

        outcome, session, fresh = await self.run(work)
        return self._respond(browser, outcome, query, session, fresh)

    async def legacy(self, request: Request) -> Response:
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        form, query, items, browser, oauth_request = posted
        link = form.get("link", "")
        agree = form.get("decision") == "agree"

        def work() -> Response:
            page = browser.page()
            product = self.logins.pending_product(link)
            if product is None:
                return self._html(browser, pages.login_page(
                    page, client=dict(items).get("client_id", ""), query=query,
                    alert=pages.TEXT[browser.lang]["expired"]), 400)
            if not agree:
                self.logins.refuse_legacy(link)
                return self._html(browser, pages.refused_page(page, product=product,
                                                              query=query))
            try:
                customer_id = self.logins.link_legacy(link)
            except (NotFound, AlreadyExists):
                return self._html(browser, pages.login_page(
                    page, client=dict(items).get("client_id", ""), query=query,
                    alert=pages.TEXT[browser.lang]["expired"]), 409)
            return self._signed_in(browser, oauth_request, query, customer_id)

        response: Response = await self.run(work)
        return response

    # -- token, revocation, introspection, userinfo -----------------------------------------

    async def _oauth(self, request: Request, name: str,
                     call: Callable[[FormRequest], tuple[int, Any, list[tuple[str, str]]]]
                     ) -> Response:
        form = await request.form()
        items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        oauth_request = FormRequest("POST", self.provider.endpoint(name), request.headers, items)
        status, body, headers = await self.run(call, oauth_request)
        merged = {**dict(headers), **NO_STORE}
        merged.pop("Content-Type", None)
        return JSONResponse(body if body is not None else {}, status_code=status,
                            headers=merged)

    async def token(self, request: Request) -> Response:
        return await self._oauth(request, "token", self.provider.token_response)

    async def revoke(self, request: Request) -> Response:
        return await self._oauth(request, "revocation", self.provider.revocation_response)

    async def introspect(self, request: Request) -> Response:
        return await self._oauth(request, "introspection", self.provider.introspection_response)

    async def userinfo(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            token = ""
            if request.method == "POST":
                token = (await self._form(request)).get("access_token", "")
        claims = await self.run(self.provider.userinfo, token.strip()) if token else None
        if claims is None:
            error = 'Bearer error="invalid_token"' if token else 'Bearer realm="singleid"'
            return JSONResponse({"error": "invalid_token"}, status_code=401,
                                headers={**NO_STORE, "WWW-Authenticate": error})
        return JSONResponse(claims, headers=NO_STORE)

    # -- RP-initiated and back-channel logout -------------------------------------------------

    async def logout(self, request: Request) -> Response:
        params = (await self._form(request) if request.method == "POST"
                  else dict(request.query_params))
        browser = self._browser(request, params)
        confirmed = params.get("confirm") == "yes"
        if confirmed and not self._csrf_ok(browser, params):
            return self._forbidden(browser)
        response: Response = await self.run(self._logout, browser, params, confirmed)
        return response

    def _logout(self, browser: _Browser, params: dict[str, str], confirmed: bool) -> Response:
        page = browser.page()
        hint = params.get("id_token_hint", "")
        claims = self.provider.verify_id_token_hint(hint) if hint else None
        if hint and claims is None:
            return self._html(browser, pages.error_page(
                page, error="invalid_request", description="id_token_hint is not ours"), 400)
        client_id = params.get("client_id", "")
        if claims is not None:
            audience = claims.get("aud")
            hinted = audience[0] if isinstance(audience, list) and audience else audience
            if client_id and client_id != hinted:
                return self._html(browser, pages.error_page(
                    page, error="invalid_request",
                    description="client_id does not match id_token_hint"), 400)
            client_id = str(hinted or "")
        client = self.provider.clients.find(client_id) if client_id else None
        target = params.get("post_logout_redirect_uri", "")
        if target and (client is None or target not in client.post_logout_redirect_uris):
            return self._html(browser, pages.error_page(
                page, error="invalid_request",
                description="post_logout_redirect_uri is not registered for this client"), 400)
        session = self.provider.sessions.get(browser.session_cookie)
        vouched = (claims is not None and session is not None
                   and claims.get("sub") == session.customer_id)
        if session is not None and not (confirmed or vouched):
            keep = {k: v for k, v in params.items()
                    if k in ("id_token_hint", "post_logout_redirect_uri", "state", "client_id",
                             "ui_locales")}
            return self._html(browser, pages.logout_page(page, **keep))
        ended = self.provider.sessions.end(browser.session_cookie)
        if ended is not None:
            self._notify(*ended)
        response: Response
        if target:
            state = params.get("state")
            location = target + (("&" if "?" in target else "?") + urlencode({"state": state})
                                 if state else "")
            response = RedirectResponse(location, status_code=302, headers=NO_STORE)
        else:
            response = HTMLResponse(pages.logged_out_page(page), headers=PAGE_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return self._cookies(response, browser, None)

    def _notify(self, session: SessionView, client_ids: list[str]) -> None:
        """Back-channel logout: POST a logout token to each client that registered a URI."""
        for client_id in client_ids:
            client = self.provider.clients.find(client_id, cached=False)
            if client is None or not client.backchannel_logout_uri:
                continue
            body = urlencode({"logout_token": self.provider.logout_token(client, session)})
            notice = urllib.request.Request(  # noqa: S310 - the client's registered URI
                client.backchannel_logout_uri, data=body.encode(), method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded"})
            try:
                with urllib.request.urlopen(notice,  # noqa: S310
                                            timeout=BACKCHANNEL_TIMEOUT_SECONDS) as reply:
                    reply.read(1024)
            except OSError as exc:
                log.warning("back-channel logout failed",
                            extra={"client_id": client_id, "error": type(exc).__name__})


def _local_path(value: str) -> str:
    """Where to go after a staff sign-in: a path on this site, never another site."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return STAFF_HOME


class _StaffWeb:
    """The staff realm: password, then TOTP, then the page the staff member asked for.

    A session of its own (``STAFF_COOKIE``, SameSite=Strict), never a customer's;
    see singleid.idp.oidc.service.staff and docs/decisions/0922.
    """

    def __init__(self, web: _Web, staff: StaffService) -> None:
        self.web = web
        self.staff = staff

    def _with_cookie(self, response: Response, cookie: str) -> Response:
        response.set_cookie(STAFF_COOKIE, cookie, httponly=True, samesite="strict",
                            secure=self.web.secure, path="/")
        return response

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return await self._show(request)
        form = await self.web._form(request)
        browser = self.web._browser(request, form)
        if not self.web._csrf_ok(browser, form):
            return self.web._forbidden(browser)
        next_path, login = _local_path(form.get("next", "")), form.get("login", "")
        result: StepResult = await self.web.run(self.staff.sign_in, login,
                                                form.get("password", ""), browser.address)
        page = browser.page()
        if result.step is Step.OK:
            return self._with_cookie(self.web._html(
                browser, pages.staff_otp_page(page, next_path=next_path)), result.cookie)
        locked = result.step is Step.LOCKED
        return self.web._html(browser, pages.staff_login_page(
            page, next_path=next_path, login=login,
            alert=pages.TEXT[browser.lang]["locked" if locked else "failed"]),
            429 if locked else 401)

    async def _show(self, request: Request) -> Response:
        params = dict(request.query_params)
        browser = self.web._browser(request, params)
        next_path = _local_path(params.get("next", ""))
        cookie = request.cookies.get(STAFF_COOKIE)
        view = await self.web.run(lambda: self.staff.session(cookie, pending=True))
        if view is not None and view.two_factor:
            return RedirectResponse(next_path, status_code=303, headers=NO_STORE)
        if view is not None:
            return self.web._html(browser, pages.staff_otp_page(browser.page(),
                                                                next_path=next_path))
        return self.web._html(browser, pages.staff_login_page(browser.page(),
                                                              next_path=next_path))

    async def otp(self, request: Request) -> Response:
        form = await self.web._form(request)
        browser = self.web._browser(request, form)
        if not self.web._csrf_ok(browser, form):
            return self.web._forbidden(browser)
        next_path, cookie = _local_path(form.get("next", "")), request.cookies.get(STAFF_COOKIE)
        result: StepResult = await self.web.run(self.staff.second_factor, cookie,
                                                form.get("code", ""), browser.address)
        if result.step is Step.OK:
            return self._with_cookie(RedirectResponse(next_path, status_code=303,
                                                      headers=NO_STORE), result.cookie)
        page, text = browser.page(), pages.TEXT[browser.lang]
        if result.step is Step.LOCKED:
            return self.web._html(browser, pages.staff_login_page(
                page, next_path=next_path, alert=text["locked"]), 429)
        pending = await self.web.run(lambda: self.staff.session(cookie, pending=True))
        if pending is None:
            return self.web._html(browser, pages.staff_login_page(
                page, next_path=next_path, alert=text["expired"]), 401)
        return self.web._html(browser, pages.staff_otp_page(
            page, next_path=next_path, alert=text["otp_failed"]), 401)

    async def logout(self, request: Request) -> Response:
        form = await self.web._form(request)
        browser = self.web._browser(request, form)
        if not self.web._csrf_ok(browser, form):
            return self.web._forbidden(browser)
        await self.web.run(self.staff.end, request.cookies.get(STAFF_COOKIE))
        response = HTMLResponse(pages.logged_out_page(browser.page()), headers=PAGE_HEADERS)
        response.delete_cookie(STAFF_COOKIE, path="/")
        return self.web._cookies(response, browser, None)
