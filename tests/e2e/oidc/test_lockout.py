"""Failed sign-ins lock the account, then the client address, each with an audit event."""

from __future__ import annotations

import json
import sqlite3

import pytest

from singleid.idp.oidc.service.logins import MAX_ACCOUNT_FAILURES, MAX_ADDRESS_FAILURES
from singleid.idp.oidc.testing import PASSWORD, Oidc

pytestmark = pytest.mark.slow


def _events(oidc: Oidc, kind: str) -> list[dict[str, object]]:
    path = oidc.env["SINGLEID_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT data FROM outbox_events WHERE type = ?",
                            (f"singleid.{kind}",)).fetchall()
    return [json.loads(row[0]) for row in rows]


def test_repeated_failures_lock_the_account_then_the_address(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, customer_id = oidc.add_login()
    other, _ = oidc.add_login()
    with oidc.browser() as browser:
        statuses = [oidc.sign_in(browser, oidc.auth_params(client["client_id"]), user,
                                 "wrong password!").status_code
                    for _ in range(MAX_ACCOUNT_FAILURES)]
        assert statuses == [401] * (MAX_ACCOUNT_FAILURES - 1) + [429]
        locked = oidc.sign_in(browser, oidc.auth_params(client["client_id"]), user, PASSWORD)
        assert locked.status_code == 429  # even the right password waits out the lockout
        events = _events(oidc, "login.locked.v1")
        assert [e["customer_id"] for e in events] == [customer_id]
        assert user not in json.dumps(events)  # the audit trail names no identifier

        # Another account from the same address still signs in...
        ok = oidc.sign_in(browser, oidc.auth_params(client["client_id"]), other, PASSWORD)
        assert ok.status_code == 302
        # ...until the address itself has failed too often, whatever the account.
    failures = MAX_ADDRESS_FAILURES - MAX_ACCOUNT_FAILURES
    with oidc.browser() as stranger:
        for index in range(failures):
            oidc.sign_in(stranger, oidc.auth_params(client["client_id"]),
                         f"nobody-{index}@example.com", "wrong password!")
    with oidc.browser() as fresh_browser:
        blocked = oidc.sign_in(fresh_browser, oidc.auth_params(client["client_id"]), other,
                               PASSWORD)
        assert blocked.status_code == 429
    assert len(_events(oidc, "login.address_locked.v1")) == 1
