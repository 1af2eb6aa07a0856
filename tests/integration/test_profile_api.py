"""ProfileService over a real socket (``singleid serve``), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from singleid.clients import CustomersClient, ProfileClient
from singleid.clients.profile import attribute_values, event_data, struct
from singleid.errors import Aborted, InvalidArgument, NotFound, PermissionDenied
from singleid.testing import ServerProcess
from singleid.v1 import profile_pb2, profile_pb2_grpc

pytestmark = pytest.mark.slow


@pytest.fixture
def customer(server: ServerProcess) -> str:
    with closing(CustomersClient(server.grpc_addr, auth=server.token)) as customers:
        customers.create_product("cards", "Cards")
        return customers.register_customer("cards", "c-1").customer_id


@pytest.fixture
def client(server: ServerProcess) -> Iterator[ProfileClient]:
    with ProfileClient(server.grpc_addr, timeout=30, auth=server.token) as profile_client:
        yield profile_client


def _raw(server: ServerProcess, request: profile_pb2.UpdateProfileRequest) -> grpc.RpcError:
    with server.channel() as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.UpdateProfile(request, timeout=30)
    return info.value


def test_bad_input_gets_a_clear_status_and_applies_nothing(
        server: ServerProcess, client: ProfileClient, customer: str) -> None:
    with pytest.raises(InvalidArgument) as unknown:
        client.update_profile(customer, "customer", {"favourite_colour": "red"})
    assert unknown.value.violations[0].field == "update_mask.paths[0]"
    with pytest.raises(InvalidArgument) as wrong_type:
        client.update_profile(customer, "customer", {"language": "ru", "preferred_name": 42})
    assert [v.field for v in wrong_type.value.violations] == ["preferred_name"]
    with pytest.raises(InvalidArgument) as oversize:
        client.update_profile(customer, "contact_center", {"contact_center_notes": "x" * 5000})
    assert oversize.value.violations[0].field == "contact_center_notes"
    with pytest.raises(InvalidArgument) as bad_mask:
        client.update_profile(customer, "customer", {"language": "ru"},
                              update_mask=["language", "values.language"])
    assert bad_mask.value.violations[0].field == "update_mask.paths[1]"
    with pytest.raises(NotFound) as unknown_customer:
        client.update_profile("0" * 26, "customer", {"language": "ru"})
    assert unknown_customer.value.reason == "CUSTOMER_NOT_FOUND"
    with pytest.raises(PermissionDenied) as unowned:
        client.update_profile(customer, "cards", {"loyalty_tier": "gold"})
    assert unowned.value.field == "loyalty_tier"
    assert "loyalty_tier" in unowned.value.message
    with pytest.raises(InvalidArgument) as bad_id:
        client.get_profile("not-an-id")
    assert bad_id.value.field == "customer_id"
    error = _raw(server, profile_pb2.UpdateProfileRequest(
        customer_id=customer, source="customer", update_mask=FieldMask(paths=["language"]),
        values=struct({"language": "klingon"})))
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "language" in (error.details() or "")
    profile = client.get_profile(customer)
    assert profile.version == 0
    assert not profile.attributes


def test_read_write_and_stale_version_over_the_wire(client: ProfileClient,
                                                    customer: str) -> None:
    written = client.update_profile(customer, "customer",
                                    {"preferred_name": "Аня", "phones": ["8 916 123 45 67"]})
    assert written.version == 1
    profile = client.get_profile(customer)
    assert attribute_values(profile) == {"preferred_name": "Аня", "phones": ["+79161234567"]}
    assert profile.etag == written.etag
    (phones,) = [a for a in profile.attributes if a.name == "phones"]
    assert phones.source == "customer"
    assert phones.version == 1
    assert phones.sensitivity == profile_pb2.SENSITIVITY_PERSONAL
    with pytest.raises(Aborted):
        client.update_profile(customer, "customer", {"language": "ru"}, expected_version=0)


def test_watch_changes_resumes_without_missing_anything(client: ProfileClient,
                                                        customer: str) -> None:
    client.update_profile(customer, "loyalty", {"loyalty_tier": "gold"})
    client.update_profile(customer, "customer", {"language": "ru"})
    stream = client.watch_changes(types=["profile.updated.v1"], timeout=10)
    first = next(stream)
    assert first.subject == customer
    assert event_data(first)["attributes"][0]["name"] == "loyalty_tier"
    del stream
    client.update_profile(customer, "customer", {"language": "en"})
    resumed = client.watch_changes(first.resume_token, types=["profile.updated.v1"],
                                   attributes=["language"], timeout=10)
    second, third = next(resumed), next(resumed)
    assert [event_data(e)["version"] for e in (second, third)] == [2, 3]
    assert b'"specversion":"1.0"' in third.cloudevent_json


CLIENTS = 32


def test_32_concurrent_writers_lose_no_update(server: ServerProcess, customer: str) -> None:
    """Each writer adds its own tag with expected_version, retrying on ABORTED."""
    versions: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def writer(index: int) -> int:
        tag = f"w{index:02d}"
        retries = 0
        with ProfileClient(server.grpc_addr, timeout=60, auth=server.token) as c:
            start.wait()
            while True:
                profile = c.get_profile(customer, ["tags_manual"])
                tags = attribute_values(profile).get("tags_manual", [])
                try:
                    result = c.update_profile(customer, "contact_center",
                                              {"tags_manual": [*tags, tag]},
                                              expected_version=profile.version)
                except Aborted:
                    retries += 1
                    continue
                with lock:
                    versions.append(result.version)
                return retries

    with ThreadPoolExecutor(CLIENTS) as pool:
        retries = sum(pool.map(writer, range(CLIENTS)))
    assert retries > 0, "the writers never collided: the test proves nothing"
    assert sorted(versions) == list(range(1, CLIENTS + 1))  # strictly increasing, no repeats
    with ProfileClient(server.grpc_addr, auth=server.token) as c:
        final = attribute_values(c.get_profile(customer))["tags_manual"]
        assert sorted(final) == [f"w{i:02d}" for i in range(CLIENTS)]  # no lost update
        events = list(c.watch_changes(types=["profile.updated.v1"], timeout=5))
    ours = [e for e in events if e.subject == customer]
    assert sorted(int(event_data(e)["version"]) for e in ours) == list(range(1, CLIENTS + 1))
    assert len({e.id for e in ours}) == CLIENTS  # exactly one event per committed change
