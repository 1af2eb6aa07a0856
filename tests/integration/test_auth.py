"""Issue 9: every call authenticated, every action authorised, on SQLite and PostgreSQL.

Each refusal names why (reason, field), and leaves nothing changed.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from singleid import audit, callproof
from singleid.clients import CustomersClient
from singleid.db import Database
from singleid.errors import NotFound, PermissionDenied, SingleIdError, Unauthenticated
from singleid.idp.oidc.service import access
from singleid.idp.oidc.service.keys import SigningKeys
from singleid.keyring import load_keyring
from singleid.plugins import load_models
from singleid.testing import ServerProcess
from singleid.v1 import admin_pb2, admin_pb2_grpc

if TYPE_CHECKING:
    from tests.integration.conftest import Backend, Callers, Fresh

REFRESH_BOUND_SECONDS = 15.0  # twice the default refresh interval, plus a loaded machine


def _refused(call: Callable[[], Any], kind: type[SingleIdError]) -> SingleIdError:
    with pytest.raises(kind) as info:
        call()
    return info.value


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


def test_without_a_token_nothing_happens(backend: Backend, client: CustomersClient,
                                         fresh: Fresh) -> None:
    account = fresh.account()
    with grpc.insecure_channel(backend.server.grpc_addr) as channel:
        bare = CustomersClient(channel=channel, attempts=1)
        error = _refused(lambda: bare.register_customer("cards", account), Unauthenticated)
    assert error.reason == "TOKEN_MISSING"
    assert error.field == "authorization"
    _refused(lambda: client.resolve_by_account("cards", account), NotFound)


def test_health_stays_open(backend: Backend) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(backend.server.grpc_addr) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_tampered_signature_is_refused(backend: Backend, callers: Callers,
                                         client: CustomersClient, fresh: Fresh) -> None:
    header, payload, signature = backend.server.token.split(".")
    middle = len(signature) // 2
    other = "A" if signature[middle] != "A" else "B"
    flipped = signature[:middle] + other + signature[middle + 1:]
    account = fresh.account()
    with callers.customers(f"{header}.{payload}.{flipped}") as forged:
        error = _refused(lambda: forged.register_customer("cards", account), Unauthenticated)
    assert error.reason == "TOKEN_BAD_SIGNATURE"
    _refused(lambda: client.resolve_by_account("cards", account), NotFound)


def test_an_expired_token_is_refused(backend: Backend, callers: Callers,
                                     client: CustomersClient) -> None:
    """Signed with the server's own current key, but past its exp."""
    load_models()
    db = Database(backend.database_url)
    try:
        keys = SigningKeys(db, load_keyring("", backend.data_dir))
        issuer = _claims(backend.server.token)["iss"]
        expired = access.issue(keys, issuer, "singleid-test-admin", None, "customers.read", -5)
    finally:
        db.dispose()
    with callers.customers(expired) as late:
        error = _refused(lambda: late.resolve_by_account("cards", "nobody"), Unauthenticated)
    assert error.reason == "TOKEN_EXPIRED"


def test_a_token_of_another_kind_is_refused(callers: Callers) -> None:
    with callers.customers("not-a-jwt") as odd:
        error = _refused(lambda: odd.resolve_by_account("cards", "nobody"), Unauthenticated)
    assert error.reason == "TOKEN_MALFORMED"


def test_a_missing_scope_is_named(callers: Callers, client: CustomersClient,
                                  fresh: Fresh) -> None:
    reader = callers.create(fresh.account("reader"), ["customers.read"], product="cards")
    account = fresh.account()
    with callers.customers(callers.token(*reader)) as customers:
        error = _refused(lambda: customers.register_customer("cards", account), PermissionDenied)
        assert error.reason == "SCOPE_MISSING"
        assert error.metadata["scope"] == "customers.write"
        _refused(lambda: customers.resolve_by_account("cards", account), NotFound)


def test_a_product_acts_for_itself_only(callers: Callers, client: CustomersClient,
                                        fresh: Fresh) -> None:
    cards = callers.create(fresh.account("cards-svc"), ["customers.read", "customers.write"],
                           product="cards")
    account = fresh.account()
    with callers.customers(callers.token(*cards)) as customers:
        error = _refused(lambda: customers.register_customer("loans", account),
                         PermissionDenied)
        assert (error.reason, error.field) == ("ANOTHER_PRODUCT", "product")
        _refused(lambda: client.resolve_by_account("loans", account), NotFound)
        # Its own product, named or left out, is fine.
        own = customers.register_customer("cards", account)
        loans_account = fresh.account()
        client.link_product_account(own.customer_id, "loans", loans_account)
        error = _refused(lambda: customers.unlink_product_account("loans", loans_account),
                         PermissionDenied)
        assert error.field == "product"
        seen = {a.product for a in customers.list_product_accounts(own.customer_id)}
        assert seen == {"cards"}
    assert {a.product for a in client.list_product_accounts(own.customer_id)} == {"cards",
                                                                                 "loans"}


def test_a_source_writes_as_itself_only(callers: Callers, client: CustomersClient,
                                        fresh: Fresh) -> None:
    loyalty = callers.create(fresh.account("loyalty-svc"), ["profile.read", "profile.write"],
                             product="loyalty", source="loyalty")
    customer_id = client.register_customer("loyalty", fresh.account()).customer_id
    with callers.profile(callers.token(*loyalty)) as profile:
        error = _refused(lambda: profile.update_profile(customer_id, "cards",
                                                        {"segment": "mass"}), PermissionDenied)
        assert (error.reason, error.field) == ("ANOTHER_SOURCE", "source")
        assert profile.get_profile(customer_id).version == 0
        profile.update_profile(customer_id, "loyalty", {"loyalty_tier": "gold"})
        assert [a.name for a in profile.get_profile(customer_id).attributes] == ["loyalty_tier"]


def test_get_profile_withholds_what_the_client_may_not_read(
        backend: Backend, callers: Callers, client: CustomersClient, fresh: Fresh) -> None:
    customer_id = client.register_customer("cards", fresh.account()).customer_id
    with callers.profile(backend.server.token) as admin:
        admin.update_profile(customer_id, "customer", {"preferred_name": "Аня"})
        admin.update_profile(customer_id, "loyalty", {"loyalty_tier": "gold"})
    plain = callers.create(fresh.account("analytics"), ["profile.read"])
    with callers.profile(callers.token(*plain)) as profile:
        seen = profile.get_profile(customer_id)
    assert [a.name for a in seen.attributes] == ["loyalty_tier"]
    assert list(seen.withheld_attributes) == ["preferred_name"]


def test_the_contact_center_sees_the_card_only_in_a_verified_call(
        backend: Backend, callers: Callers, client: CustomersClient, fresh: Fresh) -> None:
    customer_id = client.register_customer("cards", fresh.account()).customer_id
    other_id = client.register_customer("cards", fresh.account()).customer_id
    with callers.profile(backend.server.token) as admin:
        for who in (customer_id, other_id):
            admin.update_profile(who, "customer", {"preferred_name": "Аня"})
    center = callers.create(fresh.account("contact-center"), ["profile.read"],
                            sensitivity="personal", verified_call_only=True)
    # The proof an accepting Verify returns (voiceprint tests check that Verify gives it).
    keyring = load_keyring("", backend.data_dir)
    proof = callproof.issue(keyring, customer_id, "call-1")
    expired = callproof.issue(keyring, customer_id, "call-1", lifetime_seconds=-1)

    def names(who: str, **step_up: str) -> list[str]:
        return [a.name for a in profile.get_profile(who, **step_up).attributes]

    with callers.profile(callers.token(*center)) as profile:
        assert names(customer_id) == []
        assert list(profile.get_profile(customer_id).withheld_attributes) == ["preferred_name"]
        assert names(customer_id, verified_call_proof=proof, call_id="call-1") == [
            "preferred_name"]
        assert names(customer_id, verified_call_proof=proof, call_id="call-2") == []
        assert names(other_id, verified_call_proof=proof, call_id="call-1") == []
        assert names(customer_id, verified_call_proof=expired, call_id="call-1") == []
        assert names(customer_id, verified_call_proof=proof[:-2] + "xx",
                     call_id="call-1") == []


def test_a_disabled_client_is_refused_within_the_bound(callers: Callers,
                                                        client: CustomersClient,
                                                        fresh: Fresh) -> None:
    service = callers.create(fresh.account("soon-disabled"), ["customers.read"],
                             product="cards")
    token = callers.token(*service)
    with callers.customers(token) as customers:
        _refused(lambda: customers.resolve_by_account("cards", "nobody"), NotFound)
        callers.update(service[0], disabled=True)
        started = time.monotonic()
        refusal: Unauthenticated | None = None
        while refusal is None:
            try:
                customers.resolve_by_account("cards", "nobody")
            except Unauthenticated as exc:
                refusal = exc
            except NotFound:
                assert time.monotonic() - started < REFRESH_BOUND_SECONDS, "still admitted"
                time.sleep(0.2)
        assert refusal.reason == "CLIENT_DISABLED"
    with pytest.raises(Exception, match="401"):
        callers.token(*service)  # and it gets no new token


def test_admin_methods_need_the_admin_scope(backend: Backend, callers: Callers,
                                            fresh: Fresh) -> None:
    service = callers.create(fresh.account("no-admin"), ["customers.read", "customers.write"])
    with grpc.insecure_channel(backend.server.grpc_addr) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateProduct(admin_pb2.CreateProductRequest(code="sneaky"), timeout=30,
                               metadata=(("authorization", f"Bearer {callers.token(*service)}"),))
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'admin'" in (info.value.details() or "")


@pytest.mark.parametrize("env", [{}, {"SINGLEID_AUTH": "off", "SINGLEID_ALLOW_PLAINTEXT": "1"}])
def test_serve_refuses_beyond_loopback_without_tls(tmp_path: Any, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "singleid", "serve"], capture_output=True, text=True, timeout=120,
        check=False, env={"PATH": "/usr/bin:/bin", "SINGLEID_DATA_DIR": str(tmp_path),
                          "SINGLEID_GRPC_ADDR": "0.0.0.0:0", "SINGLEID_HTTP_ADDR": "127.0.0.1:0",
                          **env})
    assert result.returncode != 0
    assert "SINGLEID_GRPC_ADDR" in result.stderr
    assert ("without TLS" in result.stderr) == (not env)


def test_a_client_over_its_rate_limit_is_told_when_to_retry(tmp_path: Any) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", env={
        "SINGLEID_RATE_LIMIT_PER_CLIENT": "0.5", "SINGLEID_RATE_LIMIT_BURST": "2"}).start()
    try:
        with grpc.insecure_channel(server.grpc_addr) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            metadata = tuple(server.metadata)
            for _ in range(2):
                stub.ListProducts(admin_pb2.ListProductsRequest(), timeout=30, metadata=metadata)
            with pytest.raises(grpc.RpcError) as info:
                stub.ListProducts(admin_pb2.ListProductsRequest(), timeout=30, metadata=metadata)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(info.value)
        assert status is not None
        retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert len(retry) == 1
        info_detail = error_details_pb2.RetryInfo()
        retry[0].Unpack(info_detail)
        assert 0 < info_detail.retry_delay.ToTimedelta().total_seconds() <= 2
    finally:
        server.stop()


def test_a_revoked_token_is_refused_within_the_bound(backend: Backend, callers: Callers,
                                                      client: CustomersClient,
                                                      fresh: Fresh) -> None:
    client_id, secret = callers.create(fresh.account("revoking"), ["customers.read"],
                                       product="cards")
    token = callers.token(client_id, secret)
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    revoke = urllib.request.Request(
        f"http://{backend.server.http_addr}/revoke",
        data=urllib.parse.urlencode({"token": token}).encode(),
        headers={"Authorization": f"Basic {basic}"})
    with callers.customers(token) as customers:
        _refused(lambda: customers.resolve_by_account("cards", "nobody"), NotFound)
        with urllib.request.urlopen(revoke, timeout=30) as response:
            assert response.status == 200
        started = time.monotonic()
        while True:
            try:
                customers.resolve_by_account("cards", "nobody")
            except NotFound:
                assert time.monotonic() - started < REFRESH_BOUND_SECONDS, "still admitted"
                time.sleep(0.2)
                continue
            except Unauthenticated as exc:
                refusal = exc
            break
    assert refusal.reason == "TOKEN_REVOKED"


def _audit_records(backend: Backend, client_id: str) -> list[dict[str, Any]]:
    load_models()
    db = Database(backend.database_url)
    try:
        return [r for r in audit.export(db) if r["actor"] == f"client:{client_id}"]
    finally:
        db.dispose()


def test_mutations_refusals_and_personal_reads_are_audited_without_values(
        backend: Backend, callers: Callers, client: CustomersClient, fresh: Fresh) -> None:
    service = callers.create(fresh.account("audited"), ["customers.write", "profile.read",
                                                        "profile.write"],
                             product="cards", source="customer", sensitivity="personal")
    token = callers.token(*service)
    with callers.customers(token) as customers:
        customer_id = customers.register_customer("cards", fresh.account()).customer_id
        _refused(lambda: customers.register_customer("loans", fresh.account()),
                 PermissionDenied)
    with callers.profile(token) as profile:
        profile.update_profile(customer_id, "customer", {"preferred_name": "Аня"})
        profile.get_profile(customer_id)
    records = _audit_records(backend, service[0])
    seen = [(r["action"].rpartition("/")[2], r["outcome"], r["customer_id"],
             r["attributes"]) for r in records]
    assert seen == [
        ("RegisterCustomer", "OK", customer_id, []),
        ("RegisterCustomer", "PERMISSION_DENIED", None, []),
        ("UpdateProfile", "OK", customer_id, ["preferred_name"]),
        ("GetProfile", "OK", customer_id, ["preferred_name"])]
    assert all(r["peer"].startswith("ipv") for r in records)
    assert "Аня" not in json.dumps(records, ensure_ascii=False)
