"""Authentication as users meet it: the development client, TLS, and client administration."""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from singleid.bearer import fetch_client_credentials
from singleid.clients import CustomersClient
from singleid.clients.auth import ClientCredentials
from singleid.errors import FailedPrecondition, NotFound, Unauthenticated

if TYPE_CHECKING:
    from tests.e2e.conftest import E2E

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def singleid(*args: str, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "singleid", *args], capture_output=True,
                            text=True, env={**os.environ, **env}, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_embedded_default_prints_a_development_client_that_works(e2e: E2E) -> None:
    http_addr = f"127.0.0.1:{free_port()}"  # a real port, so the printed issuer is reachable
    server = e2e.start(env={"SINGLEID_BOOTSTRAP_CLIENT": "", "SINGLEID_HTTP_ADDR": http_addr})
    output = "".join(server.output)
    assert "development client 'singleid-dev'" in output
    assert 'grpcurl -plaintext -H "authorization: Bearer $TOKEN"' in output
    saved = e2e.root / "data" / "dev-client.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    secret = json.loads(saved.read_text())["client_secret"]
    assert secret not in output
    printed = [line.strip() for line in server.output
               if line.strip().startswith(("SECRET=", "TOKEN="))]
    token = subprocess.run(["bash", "-euc", "\n".join([*printed, 'echo "$TOKEN"'])],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert token.startswith("eyJ"), token  # the printed commands get a JWT access token
    auth = ClientCredentials("singleid-dev", secret,
                             token_endpoint=f"http://{server.http_addr}/token")
    with CustomersClient(server.grpc_addr, auth=auth) as client:
        client.create_product("cards", "Cards")
        assert client.register_customer("cards", "c-1").customer_id


def test_clients_are_added_bound_updated_disabled_and_deleted_from_the_cli(e2e: E2E) -> None:
    server = e2e.start(env={"SINGLEID_AUTH_REFRESH_SECONDS": "1"})
    env = {"SINGLEID_DATA_DIR": str(e2e.root / "data")}
    added = singleid("oidc", "client", "add", "--client-id", "cards-svc", "--grant-type",
                     "client_credentials", "--scope", "customers.read", "--product", "cards",
                     "--source", "cards", "--sensitivity", "personal", env=env)
    assert (added["product"], added["source"], added["sensitivity"]) == ("cards", "cards",
                                                                         "personal")
    auth = ClientCredentials("cards-svc", added["client_secret"],
                             token_endpoint=f"http://{server.http_addr}/token")
    with CustomersClient(server.grpc_addr, auth=auth, attempts=1) as client:
        assert not _refused(client)
        updated = singleid("oidc", "client", "update", "cards-svc", "--sensitivity", "ordinary",
                           "--disable", env=env)
        assert updated["disabled"] is True
        assert updated["sensitivity"] == "ordinary"
        e2e.wait_until(lambda: _refused(client), 5, "the disabled client to be refused")
    assert singleid("oidc", "client", "delete", "cards-svc", env=env) == {"deleted": "cards-svc"}


def _refused(client: CustomersClient) -> bool:
    """Whether a read is refused for the client's sake (an unknown account is admitted)."""
    try:
        client.resolve_by_account("cards", "nobody")
    except Unauthenticated as exc:
        return exc.reason in ("CLIENT_DISABLED", "CLIENT_CREDENTIALS_REFUSED")
    except (NotFound, FailedPrecondition):
        return False
    return False


def _certificate(directory: Path, common_name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{common_name}.pem", directory / f"{common_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_serves_both_ports(e2e: E2E, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server = e2e.start(env={"SINGLEID_TLS_CERT": str(cert), "SINGLEID_TLS_KEY": str(key)})
    assert "http=https://" in "".join(server.output)
    port = server.http_addr.rpartition(":")[2]
    context = ssl.create_default_context(cafile=str(cert))
    basic = b64encode(":".join(server.credentials).encode()).decode()
    request = urllib.request.Request(
        f"https://localhost:{port}/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={"Authorization": f"Basic {basic}"})
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        token = json.load(response)["access_token"]
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    grpc_port = server.grpc_addr.rpartition(":")[2]
    with CustomersClient(f"localhost:{grpc_port}", auth=token, credentials=credentials) as client:
        client.create_product("cards", "Cards")
    # Plaintext never connects.
    with grpc.insecure_channel(server.grpc_addr) as plain, pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(plain).result(timeout=3)


def test_a_client_certificate_must_name_the_tokens_client(e2e: E2E, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    admin_cert, admin_key = _certificate(tmp_path, "singleid-test-admin")
    other_cert, other_key = _certificate(tmp_path, "someone-else")
    authorities = tmp_path / "clients.pem"
    authorities.write_bytes(admin_cert.read_bytes() + other_cert.read_bytes())
    server = e2e.start(env={"SINGLEID_TLS_CERT": str(cert), "SINGLEID_TLS_KEY": str(key),
                            "SINGLEID_TLS_CLIENT_CA": str(authorities)})
    port = server.http_addr.rpartition(":")[2]
    context = ssl.create_default_context(cafile=str(cert))
    basic = b64encode(":".join(server.credentials).encode()).decode()
    request = urllib.request.Request(
        f"https://localhost:{port}/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={"Authorization": f"Basic {basic}"})
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        token = json.load(response)["access_token"]
    target = f"localhost:{server.grpc_addr.rpartition(':')[2]}"

    def client(certificate: Path, private_key: Path) -> CustomersClient:
        return CustomersClient(target, auth=token, attempts=1,
                               credentials=grpc.ssl_channel_credentials(
                                   cert.read_bytes(), private_key.read_bytes(),
                                   certificate.read_bytes()))

    with client(admin_cert, admin_key) as matching:
        matching.create_product("cards", "Cards")
    with client(other_cert, other_key) as mismatched, pytest.raises(Unauthenticated) as info:
        mismatched.create_product("loans", "Loans")
    assert info.value.reason == "CERTIFICATE_CLIENT_MISMATCH"


def test_a_key_rotated_out_of_the_jwks_is_refused(e2e: E2E) -> None:
    """Two rotations retire the key that signed a token (JWKS keeps the newest two)."""
    server = e2e.start(env={"SINGLEID_AUTH_REFRESH_SECONDS": "1"})
    old = server.token
    with CustomersClient(server.grpc_addr, auth=old, attempts=1) as client:
        assert not _refused(client)  # verified once: the process remembers it
    env = {"SINGLEID_DATA_DIR": str(e2e.root / "data")}
    for _ in range(2):
        singleid("oidc", "keys", "rotate", env=env)
    with CustomersClient(server.grpc_addr, auth=old, attempts=1) as client:
        e2e.wait_until(lambda: _key_retired(client), 5, "the old key to be refused")
    fresh = fetch_client_credentials(f"http://{server.http_addr}/token",
                                     *server.credentials)[0]
    with CustomersClient(server.grpc_addr, auth=fresh, attempts=1) as client:
        assert not _refused(client)


def _key_retired(client: CustomersClient) -> bool:
    try:
        client.resolve_by_account("cards", "nobody")
    except Unauthenticated as exc:
        return exc.reason == "TOKEN_KEY_RETIRED"
    except (NotFound, FailedPrecondition):
        return False
    return False
