"""Driving a running provider as a browser without JavaScript would: for tests and benchmarks.

The server listens on a port picked here, so that its issuer
(``SINGLEID_ISSUER``) is the address the clients use. Forms are read with
plain regular expressions (the CSRF token, the carried authorization request).
Needs the development extras (httpx).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from singleid.testing import ServerProcess

CALLBACK = "http://127.0.0.1:65500/cb"  # nobody listens; a port browsers allow
PASSWORD = "correct horse battery staple"  # noqa: S105 - the test logins' password


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def form_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Oidc:
    """One running provider, its CLI, and browser-like helpers."""

    server: ServerProcess
    issuer: str
    env: dict[str, str]
    counter: list[int] = field(default_factory=lambda: [0])

    def cli(self, *args: str, stdin: str = "") -> Any:
        result = subprocess.run(  # noqa: S603 - our own command
            [sys.executable, "-m", "singleid", *args], input=stdin, env=self.env,
            capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def unique(self, prefix: str) -> str:
        self.counter[0] += 1
        return f"{prefix}-{self.counter[0]}-{secrets.token_hex(3)}"

    def add_client(self, *extra: str, redirect_uri: str = CALLBACK) -> dict[str, Any]:
        args = ["oidc", "client", "add", "--client-id", self.unique("app")]
        if redirect_uri:
            args += ["--redirect-uri", redirect_uri]
        return dict(self.cli(*args, *extra))

    def add_login(self, identifier: str = "", password: str = PASSWORD,
                  name: str = "Anna") -> tuple[str, str]:
        identifier = identifier or f"{self.unique('user')}@example.com"
        flag = "--email" if "@" in identifier else "--phone"
        result = self.cli("login", "add", flag, identifier, "--name", name,
                          stdin=password + "\n")
        return identifier, str(result["customer_id"])

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.issuer, follow_redirects=False, timeout=30)

    def auth_params(self, client_id: str, **extra: str) -> dict[str, str]:
        params = {"client_id": client_id, "response_type": "code",
                  "scope": "openid profile email phone", "redirect_uri": CALLBACK,
                  "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8)}
        params.update(extra)
        return params

    def sign_in(self, browser: httpx.Client, params: dict[str, str], identifier: str,
                password: str = PASSWORD, *, consent: bool = True) -> httpx.Response:
        """Authorize, fill the login form, approve consent: the last response."""
        page = browser.get("/authorize", params=params)
        if page.status_code == 302:  # a live session answers at once
            return page
        assert page.status_code == 200, page.text
        fields = form_fields(page.text)
        response = browser.post("/login", data={**fields, "identifier": identifier,
                                                "password": password})
        if consent and response.status_code == 200 and 'action="/consent"' in response.text:
            response = browser.post("/consent", data={**form_fields(response.text),
                                                      "decision": "allow"})
        return response

    def code(self, browser: httpx.Client, params: dict[str, str], identifier: str,
             password: str = PASSWORD) -> str:
        response = self.sign_in(browser, params, identifier, password)
        assert response.status_code == 302, response.text[-500:]
        returned = query_of(response.headers["location"])
        assert returned.get("state") == params["state"]
        return returned["code"]

    def token(self, client: dict[str, Any], **data: str) -> httpx.Response:
        with httpx.Client(base_url=self.issuer, timeout=30) as http:
            return http.post("/token", data=data,
                             auth=(client["client_id"], client["client_secret"]))

    def tokens_for(self, client: dict[str, Any], identifier: str,
                   **extra: str) -> dict[str, Any]:
        verifier, challenge = pkce()
        params = self.auth_params(client["client_id"], code_challenge=challenge,
                                  code_challenge_method="S256", **extra)
        with self.browser() as browser:
            code = self.code(browser, params, identifier)
        response = self.token(client, grant_type="authorization_code", code=code,
                              redirect_uri=CALLBACK, code_verifier=verifier)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def jwks(self) -> dict[str, Any]:
        return dict(httpx.get(self.issuer + "/jwks", timeout=30).json())

    def url(self, path: str, **params: str) -> str:
        return self.issuer + path + ("?" + urlencode(params) if params else "")


def start_oidc(data_dir: Path, database_url: str = "", workers: int = 1,
               extra_env: dict[str, str] | None = None) -> Oidc:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    database_url = database_url or f"sqlite:///{data_dir / 'singleid.db'}"
    extra = {"SINGLEID_HTTP_ADDR": f"127.0.0.1:{port}", "SINGLEID_ISSUER": issuer,
             # Several workers are seen starting by their INFO "serving" lines.
             "SINGLEID_LOG_LEVEL": "WARNING" if workers == 1 else "INFO", **(extra_env or {})}
    env = {**os.environ, "SINGLEID_DATA_DIR": str(data_dir),
           "SINGLEID_DATABASE_URL": database_url, **extra}
    oidc = Oidc(ServerProcess(data_dir=data_dir, database_url=database_url, env=extra,
                              workers=workers), issuer, env)
    if workers > 1:
        # Create the development key ring, the schema and the signing keys once, before
        # several workers would race to create them.
        oidc.cli("oidc", "keys", "list")
    try:
        oidc.server.start()
    except RuntimeError:
        oidc.server.kill()  # a worker that never came up must not outlive the run
        raise
    return oidc
