"""What the journey tests share: headless Chromium, the sample app, and one way to reach gRPC.

Every gRPC channel these tests open comes from :func:`channel`, so that
calling with credentials is a change in one place.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
START_SECONDS = 30.0


def channel(target: str) -> grpc.Channel:
    """The journey's one way to open a channel to singleid (tokens will be added here).

    Typed clients of ``singleid.clients`` borrow it (``Client(channel=...)``). Each
    channel has its own TCP connection, so that with several server processes
    (SO_REUSEPORT) two channels may well reach two different ones.
    """
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cabinet:
    """A running ``python -m singleid.clients.cabinet``."""

    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_cabinet(client_file: Path, grpc_target: str, port: int) -> Cabinet:
    """The sample app on ``port`` (its redirect URI is registered by ``singleid demo``)."""
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "singleid.clients.cabinet", "--client-file", str(client_file),
         "--listen", url, "--grpc", grpc_target],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    cabinet = Cabinet(url, process)
    threading.Thread(target=lambda: cabinet.output.extend(process.stdout or ()),
                     daemon=True).start()
    deadline = time.monotonic() + START_SECONDS
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return cabinet
        if process.poll() is not None or time.monotonic() > deadline:
            cabinet.stop()
            raise RuntimeError("the cabinet did not start:\n" + "".join(cabinet.output[-30:]))
        time.sleep(0.1)


def run_demo(env: dict[str, str], cabinet_port: int) -> str:
    """``singleid demo`` for a cabinet on ``cabinet_port``; its output (what to try)."""
    result = subprocess.run(
        [sys.executable, "-m", "singleid", "demo", "--cabinet-url",
         f"http://127.0.0.1:{cabinet_port}"], env=env, capture_output=True, text=True,
        timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (never a downloaded browser)."""
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is not installed (./dev setup)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only when it will run

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()


def sign_in(chromium: Any, cabinet_url: str, login: str, password: str) -> Any:
    """Open the cabinet in a fresh browser, sign in on singleid's page; the page, wherever it is.

    Consent to the cabinet is given when asked; a legacy login's question is left open.
    """
    page = chromium.new_context(locale="en-US").new_page()
    page.goto(cabinet_url + "/")
    page.get_by_role("link", name="Sign in with singleid").click()
    page.get_by_label("Phone or email").fill(login)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    allow_if_asked(page)
    return page


def allow_if_asked(page: Any) -> None:
    if page.get_by_role("button", name="Allow").count():
        page.get_by_role("button", name="Allow").click()
