"""What operators see: health, reflection, metrics (summed across workers), JSON logs, no PII."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from singleid.clients import CustomersClient
from singleid.clients.customers import identifier
from singleid.errors import FailedPrecondition, InvalidArgument, NotFound
from singleid.testing import ServerProcess
from singleid.v1 import customers_pb2

if TYPE_CHECKING:
    from tests.e2e.conftest import E2E, Sample

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REGISTER = "/singleid.v1.CustomerService/RegisterCustomer"
RESOLVE = "/singleid.v1.CustomerService/ResolveCustomer"
# Personal data a registration carries; none of it may reach the logs, in any spelling.
PHONE, PHONE_E164, PHONE_DIGITS = "8 (916) 555-01-23", "+79165550123", "9165550123"
EMAIL = "anna.secret@example.org"
DISPLAY_NAME = "Анна Секретова"


def test_health_and_reflection(e2e: E2E) -> None:
    server = e2e.start()
    with grpc.insecure_channel(server.grpc_addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", "singleid.v1.CustomerService", "singleid.v1.AdminService"]:
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"singleid.v1.CustomerService", "singleid.v1.AdminService",
                "grpc.health.v1.Health"} <= services
        # The descriptors come with them, so grpcurl can build requests.
        pool = DescriptorPool(database)
        methods = {m.name for m in pool.FindServiceByName("singleid.v1.CustomerService").methods}
        assert {"RegisterCustomer", "ResolveCustomer", "MergeCustomers"} <= methods
        register = pool.FindMessageTypeByName("singleid.v1.RegisterCustomerRequest")
        assert "idempotency_key" in register.fields_by_name
    assert server.stop() == 0


def _calls(client: CustomersClient, prefix: str, ok: int) -> None:
    """``ok`` registrations, and one each of NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT."""
    for n in range(ok):
        client.register_customer("cards", f"{prefix}-{n}")
    with pytest.raises(NotFound):
        client.resolve_by_account("cards", f"{prefix}-missing")
    with pytest.raises(FailedPrecondition):
        client.register_customer("no-such-product", f"{prefix}-x")
    with pytest.raises(InvalidArgument):
        client.register_customer("cards", "")


def _assert_counts(s: list[Sample], e2e: E2E, registrations: int, rounds: int) -> None:
    metric = e2e.metric
    assert metric(s, "singleid_grpc_requests_total", method=REGISTER, code="OK") == registrations
    assert metric(s, "singleid_grpc_requests_total", method=RESOLVE, code="NOT_FOUND") == rounds
    assert metric(s, "singleid_grpc_requests_total", method=REGISTER,
                  code="FAILED_PRECONDITION") == rounds
    assert metric(s, "singleid_grpc_requests_total", method=REGISTER,
                  code="INVALID_ARGUMENT") == rounds
    assert metric(s, "singleid_grpc_errors_total", method=RESOLVE,
                  reason="ACCOUNT_NOT_FOUND") == rounds
    assert metric(s, "singleid_grpc_errors_total", method=REGISTER,
                  reason="UNKNOWN_PRODUCT") == rounds
    histogram = "singleid_grpc_request_duration_seconds"
    assert metric(s, f"{histogram}_count", method=REGISTER) == registrations + 2 * rounds
    assert metric(s, f"{histogram}_bucket", method=REGISTER, le="+Inf") == (
        registrations + 2 * rounds)
    assert metric(s, f"{histogram}_sum", method=REGISTER) > 0
    assert metric(s, f"{histogram}_count", method=RESOLVE) == rounds


def test_metrics_count_calls_by_method_code_and_reason(e2e: E2E) -> None:
    server = e2e.start()
    e2e.create_product(server)
    with e2e.client(server) as client:
        _calls(client, "m", ok=5)
    e2e.scrape_until(server.http_addr,
                     lambda samples: _assert_counts(samples, e2e, registrations=5, rounds=1))
    assert server.stop() == 0


def test_metrics_add_up_across_workers(e2e: E2E) -> None:
    server = e2e.start(workers=2)
    pids = set(e2e.serving_pids(server))
    e2e.create_product(server)
    rounds = 16  # one connection each: both workers get some
    for n in range(rounds):
        with e2e.open_channel(server) as channel:
            _calls(CustomersClient(channel=channel), f"w{n}", ok=3)
    served = {int(p.stem.rpartition("_")[2])
              for p in (server.data_dir / "metrics").glob("counter_*.db")}
    assert served == pids, "the connections all went to one worker; nothing to add up"
    def adds_up(samples: list[Sample]) -> None:
        _assert_counts(samples, e2e, registrations=3 * rounds, rounds=rounds)

    e2e.scrape_until(server.http_addr, adds_up)
    for _ in range(4):  # each scrape is a new connection, answered by either worker
        adds_up(e2e.scrape(server.http_addr))
    assert server.stop() == 0


def _register_personal_data(e2e: E2E, server: ServerProcess) -> None:
    with e2e.client(server) as client:
        reply = client.register_customer("cards", "pii-1", display_name=DISPLAY_NAME, identifiers=[
            identifier(customers_pb2.IDENTIFIER_KIND_PHONE, PHONE, verified=True),
            identifier(customers_pb2.IDENTIFIER_KIND_EMAIL, EMAIL)])
        client.resolve_by_identifier(customers_pb2.IDENTIFIER_KIND_PHONE, PHONE_E164)
        client.get_customer(reply.customer_id)
        # A second account with the same phone: a match candidate, still nothing in the log.
        client.register_customer("cards", "pii-2", identifiers=[
            identifier(customers_pb2.IDENTIFIER_KIND_PHONE, PHONE_E164)])
        with pytest.raises(InvalidArgument):
            client.register_customer("cards", "pii-3", identifiers=[
                identifier(customers_pb2.IDENTIFIER_KIND_EMAIL, f"not an email {PHONE_DIGITS}")])
        with pytest.raises(NotFound):
            client.resolve_by_identifier(customers_pb2.IDENTIFIER_KIND_EMAIL,
                                         "other." + EMAIL)


def _assert_json_lines_without_pii(server: ServerProcess) -> None:
    text = "".join(server.output)
    for secret in [PHONE, PHONE_E164, PHONE_DIGITS, EMAIL, DISPLAY_NAME, "5550123"]:
        assert secret not in text, f"{secret!r} is in the server's output"
    for line in server.output:
        if line.startswith("singleid listening:"):
            continue
        record = json.loads(line)  # every other line is one JSON object
        assert {"time", "level", "logger", "pid", "message"} <= set(record), line


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_logs_are_json_lines_without_personal_data(e2e: E2E, level: str) -> None:
    server = e2e.start(env={"SINGLEID_LOG_LEVEL": level})
    e2e.create_product(server)
    _register_personal_data(e2e, server)
    assert server.stop() == 0
    records = e2e.log_records(server)
    assert {"serving", "stopped"} <= {r["message"] for r in records}
    if level == "DEBUG":
        assert any(r["level"] == "debug" for r in records), "DEBUG logged nothing more"
    _assert_json_lines_without_pii(server)
