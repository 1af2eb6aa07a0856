from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from singleid.settings import Settings


def test_defaults_are_the_embedded_sqlite_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SINGLEID_DATABASE_URL", "SINGLEID_DATA_DIR", "SINGLEID_GRPC_ADDR",
                 "SINGLEID_HTTP_ADDR", "SINGLEID_KEYRING"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.effective_database_url == "sqlite:///.singleid/singleid.db"
    assert settings.grpc_addr == "127.0.0.1:50051"
    assert settings.http_addr == "127.0.0.1:8080"
    assert settings.keyring == ""


def test_environment_variables_are_the_contract(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("SINGLEID_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SINGLEID_GRPC_ADDR", "0.0.0.0:6000")
    monkeypatch.setenv("SINGLEID_KEYRING", "file:/etc/ring.json")
    settings = Settings()
    assert settings.effective_database_url == f"sqlite:///{tmp_path}/singleid.db"
    assert settings.grpc_addr == "0.0.0.0:6000"
    monkeypatch.setenv("SINGLEID_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert Settings().effective_database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("addr", ["localhost", ":50051", "host:port", "host:70000"])
def test_bad_addresses_name_the_variable(monkeypatch: pytest.MonkeyPatch, addr: str) -> None:
    monkeypatch.setenv("SINGLEID_GRPC_ADDR", addr)
    with pytest.raises(ValidationError, match="grpc_addr"):
        Settings()
