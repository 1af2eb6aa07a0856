"""The review page: the queue, then each pair side by side with merge and reject buttons.

Server-rendered HTML (no script); forms post back and redirect. Every page
needs an operator's or administrator's staff session with its second factor
(singleid.idp.oidc.service.staff); without one it sends the browser to the
staff sign-in. A decision names the operator from that session, and every
view and decision appends an audit record (actor ``operator:<login>``).
"""

from __future__ import annotations

import html
from dataclasses import replace
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from singleid import audit
from singleid.audit import AuditEntry
from singleid.errors import SingleIdError
from singleid.idp.oidc.service.staff import STAFF_COOKIE, Role, StaffService, StaffSessionView
from singleid.matching.service import MatchingService
from singleid.matching.service.types import CandidateView, Decision
from singleid.rpc_status import status_code_of
from singleid.server.context import AppContext

REVIEW_ROLES = frozenset({Role.OPERATOR, Role.ADMIN})
_STYLE = """
body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.pos{color:#2e7d32}.neg{color:#c62828}.rules{color:#c62828;font-weight:bold}
form.inline{display:inline}button{margin-right:1em;padding:6px 14px}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang='ru'><head><meta charset='utf-8'>"
                        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
                        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
                        status_code=status)


def routes(context: AppContext) -> list[BaseRoute]:
    """The ``singleid.http`` entry point."""
    matcher = MatchingService(context.db, context.keyring)
    staff = StaffService(context.db, context.keyring)

    async def operator_of(request: Request) -> StaffSessionView | None:
        """The signed-in operator or administrator, with the second factor, or None."""
        cookie = request.cookies.get(STAFF_COOKIE)
        view = await context.run_blocking(staff.session, cookie)
        if view is None or not view.two_factor or view.role not in REVIEW_ROLES:
            return None
        return view

    def sign_in_first(request: Request) -> Response:
        target = request.url.path if request.method == "GET" else "/review"
        return RedirectResponse(f"/staff/login?next={quote(target)}", status_code=303)

    def peer(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def queue(request: Request) -> Response:
        if await operator_of(request) is None:
            return sign_in_first(request)
        token = request.query_params.get("page_token", "")
        try:
            page = await context.run_blocking(matcher.list_review, 50, token)
        except SingleIdError as exc:
            return _page("Review queue", f"<p>{html.escape(exc.message)}</p>", 400)
        rows = "".join(
            f"<tr><td><a href='/review/{c.candidate_id}'>candidate {c.candidate_id}</a></td>"
            f"<td>{c.probability:.4f}</td><td>{c.match_weight:+.2f}</td>"
            f"<td>{html.escape(c.status)}</td>"
            f"<td class='rules'>{html.escape(', '.join(c.hard_rules))}</td></tr>"
            for c in page.items)
        more = (f"<p><a href='/review?page_token={quote(page.next_page_token)}'>next page</a>"
                "</p>" if page.next_page_token else "")
        body = ("<table id='queue'><tr><th>pair</th><th>probability</th><th>weight</th>"
                f"<th>status</th><th>hard rules</th></tr>{rows}</table>{more}"
                if page.items else "<p id='empty'>Nothing to review.</p>")
        return _page("Review queue", body)

    async def candidate(request: Request) -> Response:
        operator = await operator_of(request)
        if operator is None:
            return sign_in_first(request)
        candidate_id = int(request.path_params["candidate_id"])
        entry = AuditEntry(operator.actor, f"review/candidates/{candidate_id}:view",
                           audit.OK, peer(request))
        try:
            view = await context.run_blocking(matcher.get_candidate, candidate_id)
        except SingleIdError as exc:
            await context.run_blocking(audit.append, context.db, _failed(entry, exc))
            return _page("Not found", f"<p>{html.escape(exc.message)}</p>", 404)
        # The page shows the pair's (masked) personal data: the read is recorded.
        customer_id = view.left.current_customer_id if view.left else None
        await context.run_blocking(audit.append, context.db,
                                   replace(entry, customer_id=customer_id))
        return _page(f"Candidate {candidate_id}",
                     _side_by_side(view, staff.csrf_token(operator)))

    async def decide(request: Request) -> Response:
        operator = await operator_of(request)
        if operator is None:
            return sign_in_first(request)
        candidate_id = int(request.path_params["candidate_id"])
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if not staff.csrf_ok(operator, form.get("csrf", "")):
            return _page("Forbidden", "<p>the form did not come from this page; reload it</p>",
                         403)
        try:
            decision = Decision(form.get("decision", ""))
        except ValueError:
            return _page("Bad request", "<p>decision: must be merge, not_same or skip</p>", 400)
        entry = AuditEntry(operator.actor, f"review/candidates/{candidate_id}:{decision.value}",
                           audit.OK, peer(request))
        try:
            await context.run_blocking(matcher.decide, candidate_id, decision,
                                       operator.login, form.get("reason", ""), audit_entry=entry)
        except SingleIdError as exc:
            await context.run_blocking(audit.append, context.db, _failed(entry, exc))
            return _page("Cannot decide", f"<p class='error'>{html.escape(exc.message)}</p>"
                         f"<p><a href='/review/{candidate_id}'>back</a></p>", 409
                         if exc.reason == "ALREADY_DECIDED" else 400)
        return RedirectResponse("/review", status_code=303)

    return [Route("/review", queue), Route("/review/{candidate_id:int}", candidate),
            Route("/review/{candidate_id:int}/decide", decide, methods=["POST"])]


def _failed(entry: AuditEntry, error: SingleIdError) -> AuditEntry:
    return replace(entry, outcome=status_code_of(error).name)


def _side_by_side(view: CandidateView, csrf: str) -> str:
    assert view.left is not None
    assert view.right is not None
    rows = "".join(
        f"<tr><th>{html.escape(f.comparison)}</th><td>{html.escape(f.left)}</td>"
        f"<td>{html.escape(f.right)}</td><td>{html.escape(f.level)}</td>"
        f"<td class='{'pos' if f.weight >= 0 else 'neg'}'>{f.weight:+.2f}</td></tr>"
        for f in view.fields)
    head = (f"<p>probability <b id='probability'>{view.probability:.6f}</b>, match weight "
            f"{view.match_weight:+.2f}, status <b id='status'>{html.escape(view.status)}</b>"
            + (f", hard rules <span class='rules'>{html.escape(', '.join(view.hard_rules))}"
               "</span>" if view.hard_rules else "") + "</p>")
    accounts = (f"<tr><th>account</th><td>{html.escape(view.left.product)}/"
                f"{html.escape(view.left.account_id)}</td><td>"
                f"{html.escape(view.right.product)}/{html.escape(view.right.account_id)}</td>"
                "<th>level</th><th>weight</th></tr>")
    table = f"<table id='evidence'>{accounts}{rows}</table>"
    if view.status not in ("review", "skipped"):
        return head + table + (f"<p>decided by <b id='decided-by'>"
                               f"{html.escape(view.operator)}</b></p>"
                               "<p><a href='/review'>back to the queue</a></p>")
    form = (f"<form method='post' action='/review/{view.candidate_id}/decide'>"
            f"<input type='hidden' name='csrf' value='{html.escape(csrf)}'>"
            "<p><label>reason <input name='reason' id='reason'></label></p>"
            "<button name='decision' value='merge' id='merge'>Merge</button>"
            "<button name='decision' value='not_same' id='not-same'>Not the same person</button>"
            "<button name='decision' value='skip' id='skip'>Skip</button></form>")
    return head + table + form + "<p><a href='/review'>back to the queue</a></p>"
