"""The review page in headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from singleid.testing import ServerProcess
from singleid.v1 import admin_pb2, admin_pb2_grpc, matching_pb2, matching_pb2_grpc
from tests.conftest import require

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
ANNA = dict(last_name="Петрова", first_name="Анна", middle_name="Сергеевна",
            birth_date="05.03.1985", phone="8 916 123-45-67", city="Москва")


@pytest.fixture
def review_server(tmp_path: Path) -> Iterator[ServerProcess]:
    require(Path(CHROMIUM).exists() or shutil.which("chromium") is not None,
            f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    require(importlib.util.find_spec("playwright") is not None, "playwright is not installed")
    process = ServerProcess(data_dir=tmp_path / "data",
                            database_url=f"sqlite:///{tmp_path / 'singleid.db'}").start()
    with process.channel() as channel:
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


def test_an_operator_reviews_a_pair_side_by_side_and_rejects_it(
        review_server: ServerProcess, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional until here

    base = f"http://{review_server.http_addr}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/review")
            rows = page.locator("#queue tr")
            assert rows.count() == 2  # the header and one pair
            assert "FIRST_NAMES_DIFFER" in page.inner_text("#queue")
            page.click("#queue a")
            evidence = page.inner_text("#evidence")
            assert "анна" in evidence
            assert "мария" in evidence
            assert "+7916" in evidence  # masked, never whole
            assert "+79161234567" not in evidence
            page.screenshot(path=str(tmp_path / "candidate.png"), full_page=True)
            page.click("#not-same")  # the operator's name is required
            assert page.url.endswith("/decide") is False
            page.fill("#operator", "op-ivanova")
            page.click("#not-same")
            page.wait_for_url(f"{base}/review")
            assert page.locator("#empty").count() == 1
            with review_server.channel() as channel:
                matching = matching_pb2_grpc.MatchingServiceStub(channel)
                decided = matching.GetCandidate(matching_pb2.GetCandidateRequest(
                    name="candidates/1"))
            assert decided.state == matching_pb2.Candidate.STATE_NOT_SAME
            assert decided.operator == "op-ivanova"
        finally:
            browser.close()
