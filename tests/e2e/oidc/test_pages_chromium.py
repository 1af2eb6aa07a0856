"""The pages in headless Chromium (Debian's ``chromium``, driven by Playwright), JavaScript off.

Skips when /usr/bin/chromium is absent, except under CI=true (``./dev setup``
installs it there).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from singleid.idp.oidc.testing import PASSWORD, Oidc, pkce, query_of

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _require(available: bool, reason: str) -> None:
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    _require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is not installed (./dev setup)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only when it will run

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        installed = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True,
                                   timeout=60, check=True).stdout
        assert browser.version in installed  # Debian's build, not a downloaded one
        yield browser
        browser.close()


@pytest.fixture
def relying_party() -> Iterator[tuple[str, list[str]]]:
    """A real callback endpoint (a browser follows the redirect to it): what arrived there."""
    landed: list[str] = []

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/cb"):  # not the browser's /favicon.ico
                landed.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"relying party")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/cb", landed
    server.shutdown()


def _page(chromium: Any, locale: str) -> Any:
    return chromium.new_context(java_script_enabled=False, locale=locale).new_page()


def _labelled(page: Any) -> None:
    """Every visible input has a label that names it (what a screen reader announces)."""
    for field in page.locator("input:not([type=hidden])").all():
        field_id = field.get_attribute("id")
        assert field_id
        assert page.locator(f'label[for="{field_id}"]').count() == 1


def test_sign_in_and_consent_in_russian(oidc: Oidc, chromium: Any,
                                        relying_party: tuple[str, list[str]]) -> None:
    callback, landed = relying_party
    client = oidc.add_client(redirect_uri=callback)
    user, _ = oidc.add_login(f"+7 916 {secrets.randbelow(900) + 100}-{secrets.randbelow(90) + 10}"
                             f"-{secrets.randbelow(90) + 10}")
    _, challenge = pkce()
    params = oidc.auth_params(client["client_id"], code_challenge=challenge,
                              code_challenge_method="S256", redirect_uri=callback)
    page = _page(chromium, "ru-RU")
    page.goto(oidc.url("/authorize", **params))
    assert page.locator("html").get_attribute("lang") == "ru"
    assert page.locator("h1").inner_text() == "Вход"
    _labelled(page)
    page.get_by_label("Телефон или электронная почта").fill(user)
    page.get_by_label("Пароль").fill("неверный пароль")
    page.get_by_role("button", name="Войти").click()
    assert "Неверный логин или пароль" in page.get_by_role("alert").inner_text()
    page.get_by_label("Пароль").fill(PASSWORD)
    page.get_by_role("button", name="Войти").click()
    assert page.locator("h1").inner_text() == "Разрешение"
    page.get_by_role("button", name="Разрешить").click()
    assert len(landed) == 1
    returned = query_of(landed[0])
    assert returned["state"] == params["state"]
    assert returned["code"]
    page.context.close()


def test_registration_in_english(oidc: Oidc, chromium: Any,
                                 relying_party: tuple[str, list[str]]) -> None:
    callback, landed = relying_party
    client = oidc.add_client(redirect_uri=callback)
    _, challenge = pkce()
    params = oidc.auth_params(client["client_id"], code_challenge=challenge,
                              code_challenge_method="S256", ui_locales="en",
                              redirect_uri=callback)
    page = _page(chromium, "ru-RU")  # ui_locales wins over the browser's language
    page.goto(oidc.url("/authorize", **params))
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_role("link", name="Create an account").click()
    _labelled(page)
    page.get_by_label("Phone or email").fill(f"chromium-{secrets.token_hex(4)}@example.com")
    page.get_by_label("How should we address you").fill("Ivan")
    page.get_by_label("Password (at least 8 characters)").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    assert page.locator("h1").inner_text() == "Permission"
    page.get_by_role("button", name="Allow").click()
    assert len(landed) == 1
    assert query_of(landed[0])["code"]
    page.context.close()
