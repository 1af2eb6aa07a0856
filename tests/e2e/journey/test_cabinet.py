"""The sample relying party, end to end in headless Chromium against a real provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from singleid.demo import seed
from singleid.idp.oidc.testing import Oidc, start_oidc
from tests.e2e.journey.conftest import Cabinet, free_port, run_demo, sign_in, start_cabinet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oidc]:
    oidc = start_oidc(tmp_path_factory.mktemp("cabinet") / "data")
    yield oidc
    oidc.server.stop()


@pytest.fixture(scope="module")
def cabinet(provider: Oidc) -> Iterator[Cabinet]:
    port = free_port()
    run_demo(provider.env, port)
    app = start_cabinet(Path(provider.env["SINGLEID_DATA_DIR"]) / seed.CABINET_CLIENT_FILE,
                        provider.server.grpc_addr, port)
    yield app
    app.stop()


def test_a_customer_signs_in_and_sees_her_profile(cabinet: Cabinet, chromium: Any) -> None:
    page = sign_in(chromium, cabinet.url, seed.ANNA_PHONE, seed.ANNA_PASSWORD)
    page.wait_for_url(cabinet.url + "/")
    assert page.locator("#name").inner_text() == "Аня"
    profile = page.locator("#profile").inner_text()
    assert "gold" in profile  # the loyalty tier, read over gRPC from ProfileService
    assert "Смирнова" in profile
    page.get_by_role("button", name="Sign out").click()
    assert page.get_by_role("link", name="Sign in with singleid").count() == 1
    page.context.close()


def test_a_legacy_cards_login_opts_in_and_signs_in(cabinet: Cabinet, chromium: Any) -> None:
    page = sign_in(chromium, cabinet.url, seed.BORIS_EMAIL, seed.BORIS_LEGACY_PASSWORD)
    assert page.locator("h1").inner_text() == "Make this your ecosystem login?"
    page.get_by_role("button", name="Yes, make it my ecosystem login").click()
    if page.get_by_role("button", name="Allow").count():
        page.get_by_role("button", name="Allow").click()
    page.wait_for_url(cabinet.url + "/")
    assert page.locator("#name").inner_text() == "Борис Петров"
    page.context.close()

    again = sign_in(chromium, cabinet.url, seed.BORIS_EMAIL, seed.BORIS_LEGACY_PASSWORD)
    again.wait_for_url(cabinet.url + "/")  # now an ecosystem login: no question
    assert again.locator("#name").inner_text() == "Борис Петров"
    again.context.close()


def test_a_wrong_password_stays_on_singleid(cabinet: Cabinet, chromium: Any) -> None:
    page = sign_in(chromium, cabinet.url, seed.ANNA_PHONE, "not her password")
    assert "Wrong login or password." in page.get_by_role("alert").inner_text()
    assert not page.url.startswith(cabinet.url)
    page.context.close()
