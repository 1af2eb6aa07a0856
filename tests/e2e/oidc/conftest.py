"""A real ``singleid serve`` for the OIDC tests (see ``singleid.idp.oidc.testing``)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from singleid.idp.oidc.testing import Oidc, start_oidc


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oidc]:
    """One provider on SQLite shared by a module's tests (each test makes its own clients)."""
    provider = start_oidc(tmp_path_factory.mktemp("oidc") / "data")
    yield provider
    provider.server.stop()


@pytest.fixture
def channel(oidc: Oidc) -> Iterator[grpc.Channel]:
    """The one place the OIDC tests open a gRPC channel to the provider's server."""
    with grpc.insecure_channel(oidc.server.grpc_addr) as opened:
        yield opened
