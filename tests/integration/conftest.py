"""Integration fixtures: one real ``singleid serve`` per module and backend, and its client.

Starting a server costs about a second, so the tests of one module share one
(on SQLite, and on a fresh PostgreSQL database of its own), each test working
on account IDs and identifiers nobody else in the module uses (``fresh``).
Tests that need an empty database of their own use ``server`` from
``tests/conftest.py`` instead.
"""

from __future__ import annotations

import itertools
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
import psycopg
import pytest
from sqlalchemy import make_url

from singleid.bearer import fetch_client_credentials
from singleid.clients import CustomersClient, ProfileClient
from singleid.testing import ServerProcess
from singleid.v1 import oidc_pb2, oidc_pb2_grpc

PG_URL = os.environ.get("SINGLEID_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ON_CI = os.environ.get("CI", "").lower() == "true"
PRODUCTS = ("cards", "loans", "loyalty", "messenger", "insurance")
# Generous: 2 shared cores, and PostgreSQL fsyncs every commit.
CLIENT_TIMEOUT_SECONDS = 30.0


@dataclass
class Backend:
    """A running server and where its data lives, for tests that look at the data itself."""

    name: str
    database_url: str
    data_dir: Path
    server: ServerProcess


def _admin_conninfo() -> str:
    url = make_url(PG_URL).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


def _skip_or_fail(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            pg_available: bool) -> Iterator[Backend]:
    """One server for the whole module, on a database nobody else uses."""
    data_dir = tmp_path_factory.mktemp(f"shared-{request.param}")
    database = ""
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'singleid.db'}"
    else:
        if not pg_available:
            _skip_or_fail(f"PostgreSQL is not reachable at {PG_URL}")
        database = f"singleid_it_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        url = make_url(PG_URL).set(database=database).render_as_string(hide_password=False)
    process = ServerProcess(data_dir=data_dir / "data", database_url=url).start()
    try:
        yield Backend(request.param, url, data_dir / "data", process)
    finally:
        process.stop()
        if database:
            with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def client(backend: Backend) -> Iterator[CustomersClient]:
    """A client of the module's server, with the usual products registered."""
    with CustomersClient(backend.server.grpc_addr, timeout=CLIENT_TIMEOUT_SECONDS,
                         auth=backend.server.token) as shared:
        assert isinstance(shared, CustomersClient)
        for code in PRODUCTS:
            shared.create_product(code, code.title())
        yield shared


# One sequence for the whole run, from a random start: values never repeat within a
# run (each module's database is new), and a number is not always the same test's.
_SEQUENCE = itertools.count(secrets.randbelow(10**6))


@dataclass
class Fresh:
    """Values no other test of the run uses: account IDs, phones, emails, passports."""

    prefix: str = field(default_factory=lambda: secrets.token_hex(4))

    def account(self, label: str = "acc") -> str:
        return f"{label}-{self.prefix}-{next(_SEQUENCE)}"

    def phone(self) -> str:
        """A valid Russian mobile number in E.164."""
        while True:
            number = f"+7916{next(_SEQUENCE) % 10**7:07d}"
            if phonenumbers.is_valid_number(phonenumbers.parse(number)):
                return number

    def email(self) -> str:
        return f"user.{self.prefix}.{next(_SEQUENCE)}@example.com"

    def passport(self) -> str:
        """Ten digits: a 4-digit series and a 6-digit number, neither all zeros."""
        n = next(_SEQUENCE)
        return f"{4000 + n // 900_000 % 5000}{100_000 + n % 900_000}"

    def telegram(self) -> str:
        return str(10**10 + next(_SEQUENCE))


@pytest.fixture
def fresh() -> Fresh:
    return Fresh()


@dataclass
class Callers:
    """Service clients of a server with the bindings a test wants, their tokens, and typed
    gRPC clients that send a given token: the one place tests build authenticated clients."""

    server: ServerProcess

    def create(self, client_id: str, scopes: list[str], **binding: Any) -> tuple[str, str]:
        """Register a client_credentials client (as the bootstrap admin); its ID and secret."""
        with self.server.channel() as channel:
            created = oidc_pb2_grpc.OidcAdminServiceStub(channel).CreateOidcClient(
                oidc_pb2.CreateOidcClientRequest(client_id=client_id, scopes=scopes,
                                                 grant_types=["client_credentials"], **binding),
                timeout=CLIENT_TIMEOUT_SECONDS)
        return client_id, created.client_secret

    def update(self, client_id: str, **changes: Any) -> None:
        with self.server.channel() as channel:
            oidc_pb2_grpc.OidcAdminServiceStub(channel).UpdateOidcClient(
                oidc_pb2.UpdateOidcClientRequest(client_id=client_id, **changes),
                timeout=CLIENT_TIMEOUT_SECONDS)

    def token(self, client_id: str, secret: str, scope: str = "") -> str:
        return fetch_client_credentials(f"http://{self.server.http_addr}/token", client_id,
                                        secret, scope=scope)[0]

    def customers(self, token: str) -> CustomersClient:
        return CustomersClient(self.server.grpc_addr, timeout=CLIENT_TIMEOUT_SECONDS, auth=token,
                               attempts=1)

    def profile(self, token: str) -> ProfileClient:
        return ProfileClient(self.server.grpc_addr, timeout=CLIENT_TIMEOUT_SECONDS, auth=token,
                             attempts=1)


@pytest.fixture(scope="module")
def callers(backend: Backend) -> Callers:
    return Callers(backend.server)
