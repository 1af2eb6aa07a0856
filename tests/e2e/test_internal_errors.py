"""An unexpected failure under a running server: INTERNAL, a generic message, a logged traceback.

Provoked from outside, with no change to the server: a table dropped under it, or
its key ring file corrupted (a file-backed ring reloads when the file changes).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import make_url

from singleid.clients.customers import identifier
from singleid.errors import Internal, SingleIdError
from singleid.rpc_status import INTERNAL_MESSAGE
from singleid.testing import ServerProcess
from singleid.v1 import customers_pb2

if TYPE_CHECKING:
    from tests.e2e.conftest import E2E, Sample

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REGISTER = "/singleid.v1.CustomerService/RegisterCustomer"
PHONE = "+7 916 777-12-34"


def _drop_outbox(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        with sqlite3.connect(url.database, timeout=10) as lite:
            lite.execute("DROP TABLE outbox_events")
        return
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as pg:
        pg.execute("DROP TABLE outbox_events")


def _register(e2e: E2E, server: ServerProcess, account: str, phone: str = PHONE) -> None:
    """A new customer: the phone is new, so it is sealed with the key ring."""
    with e2e.client(server) as client:
        client.register_customer("cards", account, identifiers=[
            identifier(customers_pb2.IDENTIFIER_KIND_PHONE, phone, verified=True)])


def _assert_internal(e2e: E2E, server: ServerProcess, error: SingleIdError, cause: str,
                     phone: str) -> dict[str, Any]:
    """The caller learns nothing but that it failed; the log has the whole story, not the PII."""
    assert isinstance(error, Internal), repr(error)
    assert error.message == INTERNAL_MESSAGE
    assert error.reason == "INTERNAL"
    assert cause not in error.message

    def logged() -> list[dict[str, Any]]:
        return [r for r in e2e.log_records(server)
                if r["level"] == "error" and r.get("method") == REGISTER]

    e2e.wait_until(lambda: bool(logged()), 10, "the error to be logged")
    record = logged()[0]
    assert record["message"] == f"unhandled error in {REGISTER}"
    assert record["traceback"].startswith("Traceback (most recent call last)")
    assert cause in record["traceback"]

    def counted(samples: list[Sample]) -> None:
        assert e2e.metric(samples, "singleid_grpc_requests_total", method=REGISTER,
                          code="INTERNAL") >= 1
        assert e2e.metric(samples, "singleid_grpc_errors_total", method=REGISTER,
                          reason="INTERNAL") >= 1

    e2e.scrape_until(server.http_addr, counted)
    output = "".join(server.output)
    digits = "".join(ch for ch in phone if ch.isdigit())
    assert phone not in output
    assert digits[1:] not in output  # nor in E.164 or any other spelling
    return record


def _still_serving(e2e: E2E, server: ServerProcess) -> None:
    with e2e.open_channel(server) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with e2e.client(server) as client:
        assert client.resolve_by_account("cards", "before").customer_id


def test_a_table_dropped_under_the_server_is_internal(e2e: E2E, database_url: str) -> None:
    server = e2e.start(database_url)
    e2e.create_product(server)
    _register(e2e, server, "before", e2e.phone(1))

    _drop_outbox(database_url)
    with pytest.raises(SingleIdError) as failed:
        _register(e2e, server, "after")
    _assert_internal(e2e, server, failed.value, "outbox_events", PHONE)
    _still_serving(e2e, server)  # reads need no outbox
    assert server.stop() == 0


def test_a_corrupted_key_ring_is_internal(e2e: E2E) -> None:
    server = e2e.start()
    e2e.create_product(server)
    _register(e2e, server, "before", e2e.phone(1))

    (server.data_dir / "dev-keyring.json").write_text("{not json")
    phones: list[str] = []
    errors: list[SingleIdError] = []

    def failed() -> bool:
        # The ring notices a changed file within a second; until then writes succeed.
        phones.append(e2e.phone(100 + len(phones)))
        try:
            _register(e2e, server, f"after-{len(phones)}", phones[-1])
        except SingleIdError as exc:
            errors.append(exc)
            return True
        return False

    e2e.wait_until(failed, 10, "the corrupted key ring to be read")
    _assert_internal(e2e, server, errors[0], "KeyringError", phones[-1])
    _still_serving(e2e, server)
    assert server.stop() == 0
