"""The review page in headless Chromium (Debian's chromium, driven by Playwright).

Only an operator (or administrator) signed in through the staff realm with both
factors reaches it; a decision names the operator and lands in the audit trail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from singleid.testing import ServerProcess
from singleid.v1 import admin_pb2, admin_pb2_grpc, matching_pb2, matching_pb2_grpc
from tests.conftest import require
from tests.e2e.conftest import open_channel

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
ANNA = dict(last_name="Петрова", first_name="Анна", middle_name="Сергеевна",
            birth_date="05.03.1985", phone="8 916 123-45-67", city="Москва")
PASSWORD = "operator password 1"


def singleid(server: ServerProcess, *args: str, stdin: str = "") -> str:
    """Run a ``singleid`` command against the server's database and key ring."""
    env = {**os.environ, "SINGLEID_DATA_DIR": str(server.data_dir),
           "SINGLEID_DATABASE_URL": server.database_url}
    result = subprocess.run([sys.executable, "-m", "singleid", *args], input=stdin, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def review_server(tmp_path: Path) -> Iterator[ServerProcess]:
    require(Path(CHROMIUM).exists() or shutil.which("chromium") is not None,
            f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    require(importlib.util.find_spec("playwright") is not None, "playwright is not installed")
    process = ServerProcess(data_dir=tmp_path / "data",
                            database_url=f"sqlite:///{tmp_path / 'singleid.db'}").start()
    with open_channel(process.grpc_addr) as channel:
        admin_pb2_grpc.AdminServiceStub(channel).CreateProduct(
            admin_pb2.CreateProductRequest(code="cards"))
        matching = matching_pb2_grpc.MatchingServiceStub(channel)
        matching.ImportLegacyAccounts(iter([matching_pb2.ImportLegacyAccountsRequest(
            product="cards", accounts=[
                matching_pb2.LegacyAccount(account_id="c-1", **ANNA),
                matching_pb2.LegacyAccount(account_id="c-2", **{**ANNA, "first_name": "Мария"}),
            ])]))
        matching.RunBatchMatching(matching_pb2.RunBatchMatchingRequest())
    yield process
    process.stop()


@pytest.fixture
def operator_totp(review_server: ServerProcess) -> pyotp.TOTP:
    """Staff member ``ivanova``, an operator; her authenticator, from the provisioning URI."""
    created = json.loads(singleid(review_server, "staff", "add", "--login", "ivanova",
                                  "--role", "operator", stdin=PASSWORD + "\n"))
    totp = pyotp.parse_uri(created["provisioning_uri"])
    assert isinstance(totp, pyotp.TOTP)
    return totp


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional until here

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        launched.close()


def _password_step(page: Any, base: str) -> None:
    page.goto(f"{base}/review")
    assert "/staff/login?next=" in page.url
    page.fill("#login", "ivanova")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    assert page.locator("#code").count() == 1  # the second step


def _candidate_status(server: ServerProcess) -> Any:
    with open_channel(server.grpc_addr) as channel:
        return matching_pb2_grpc.MatchingServiceStub(channel).GetCandidate(
            matching_pb2.GetCandidateRequest(name="candidates/1"))


def test_without_the_second_factor_the_review_page_stays_shut(
        review_server: ServerProcess, operator_totp: pyotp.TOTP, browser: Any) -> None:
    base = f"http://{review_server.http_addr}"
    page = browser.new_page()
    page.goto(f"{base}/review/1")
    assert page.url == f"{base}/staff/login?next=/review/1"
    _password_step(page, base)
    page.goto(f"{base}/review")  # a password-only session is sent back to the second step
    assert "/staff/login" in page.url
    assert page.locator("#queue").count() == 0
    assert page.locator("#code").count() == 1
    posted = page.request.post(f"{base}/review/1/decide", form={"decision": "merge"},
                               max_redirects=0)
    assert posted.status == 303
    assert posted.headers["location"].startswith("/staff/login")
    page.fill("#code", "000000" if operator_totp.now() != "000000" else "111111")
    page.click("button[type=submit]")
    assert page.locator("#alert").count() == 1
    assert page.locator("#queue").count() == 0
    assert _candidate_status(review_server).state == matching_pb2.Candidate.STATE_REVIEW
    exported = singleid(review_server, "audit", "export")
    assert '"outcome":"UNAUTHENTICATED"' in exported
    assert "review/candidates" not in exported


def test_an_operator_with_both_factors_decides_and_the_decision_names_her(
        review_server: ServerProcess, operator_totp: pyotp.TOTP, browser: Any,
        tmp_path: Path) -> None:
    base = f"http://{review_server.http_addr}"
    page = browser.new_page()
    _password_step(page, base)
    page.fill("#code", operator_totp.now())
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/review")
    rows = page.locator("#queue tr")
    assert rows.count() == 2  # the header and one pair
    assert "FIRST_NAMES_DIFFER" in page.inner_text("#queue")
    page.click("#queue a")
    evidence = page.inner_text("#evidence")
    assert "анна" in evidence
    assert "мария" in evidence
    assert "+7916" in evidence  # masked, never whole
    assert "+79161234567" not in evidence
    assert page.locator("#operator").count() == 0  # no free-text operator any more
    page.screenshot(path=str(tmp_path / "candidate.png"), full_page=True)
    page.click("#not-same")
    page.wait_for_url(f"{base}/review")
    assert page.locator("#empty").count() == 1
    decided = _candidate_status(review_server)
    assert decided.state == matching_pb2.Candidate.STATE_NOT_SAME
    assert decided.operator == "ivanova"
    page.goto(f"{base}/review/1")
    assert page.inner_text("#decided-by") == "ivanova"
    records = [json.loads(line) for line in
               singleid(review_server, "audit", "export").splitlines()]
    actions = [(r["actor"], r["action"], r["outcome"]) for r in records]
    assert ("operator:ivanova", "review/candidates/1:not_same", "OK") in actions
    assert ("operator:ivanova", "review/candidates/1:view", "OK") in actions
    decision = next(r for r in records if r["action"] == "review/candidates/1:not_same")
    assert decision["customer_id"]
    assert "Анна" not in json.dumps(records, ensure_ascii=False)
    assert "intact" in singleid(review_server, "audit", "verify")
