"""Every singleid.v1 method declares its scope, and the README's table says the same."""

from __future__ import annotations

import re
from pathlib import Path

from singleid.idp.oidc.access import required_scope
from singleid.idp.oidc.service.clients import API_SCOPES
from singleid.v1 import (
    admin_pb2,
    customers_pb2,
    matching_pb2,
    oidc_pb2,
    profile_pb2,
    voiceprint_pb2,
)

README = Path(__file__).parents[2] / "README.md"
ROW = re.compile(r"^\| `([a-z.]+)` \| (`.*`) \|$")


def _declared() -> dict[str, str]:
    declared = {}
    for module in (admin_pb2, customers_pb2, matching_pb2, oidc_pb2, profile_pb2,
                   voiceprint_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                scope = required_scope(f"/{service.full_name}/{method.name}")
                assert scope in API_SCOPES, f"{service.name}.{method.name}: scope {scope!r}"
                declared[f"{service.name}.{method.name}"] = scope
    return declared


def test_every_method_has_a_known_scope_and_the_readme_table_matches() -> None:
    documented = {}
    for line in README.read_text().splitlines():
        if match := ROW.match(line):
            for method in re.findall(r"`([A-Za-z]+\.[A-Za-z]+)`", match.group(2)):
                documented[method] = match.group(1)
    assert documented == _declared()


def test_open_methods_have_no_scope() -> None:
    assert required_scope("/grpc.health.v1.Health/Check") is None
    assert required_scope("/singleid.v1.CustomerService/NoSuchMethod") is None
