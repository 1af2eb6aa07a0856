"""A private_key_jwt assertion is accepted once, even by two `serve --workers 2` processes."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from singleid.idp.oidc.testing import Oidc, start_oidc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ATTEMPTS = 24


@pytest.fixture
def two_workers(database_url: str, tmp_path: Path) -> Iterator[Oidc]:
    oidc = start_oidc(tmp_path / "data", database_url, workers=2)
    yield oidc
    oidc.server.stop()


def _post(oidc: Oidc, assertion: str) -> str:
    # A client of its own per request: a new connection, which SO_REUSEPORT may give
    # to either worker.
    with httpx.Client(timeout=30) as http:
        response = http.post(oidc.url("/token"), data={
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion})
        return "issued" if response.status_code == 200 else str(response.json()["error"])


def test_a_replayed_assertion_is_refused_by_every_worker(two_workers: Oidc,
                                                         tmp_path: Path) -> None:
    oidc = two_workers
    key = ECKey.generate_key("P-256", parameters={"kid": "rp-1", "alg": "ES256"}, private=True)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    client = oidc.add_client("--grant-type", "client_credentials", "--auth-method",
                             "private_key_jwt", "--jwks", str(jwks), redirect_uri="")
    now = int(time.time())
    assertion = jwt.encode({"alg": "ES256", "kid": "rp-1"}, {
        "iss": client["client_id"], "sub": client["client_id"], "aud": oidc.url("/token"),
        "iat": now, "exp": now + 120, "jti": secrets.token_hex(8)}, key)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _post(oidc, assertion), range(ATTEMPTS)))
    assert outcomes.count("issued") == 1, outcomes
    assert outcomes.count("invalid_client") == ATTEMPTS - 1, outcomes
