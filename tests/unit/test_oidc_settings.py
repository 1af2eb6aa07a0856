"""SINGLEID_ISSUER: the OIDC issuer, by default derived from the HTTP address."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from singleid.settings import Settings


def test_the_issuer_defaults_to_the_http_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SINGLEID_ISSUER", raising=False)
    monkeypatch.setenv("SINGLEID_HTTP_ADDR", "127.0.0.1:9443")
    assert Settings().effective_issuer == "http://127.0.0.1:9443"
    monkeypatch.setenv("SINGLEID_ISSUER", "https://id.bank.example/")
    assert Settings().effective_issuer == "https://id.bank.example"


@pytest.mark.parametrize("bad", ["id.bank.example", "ftp://id.bank.example",
                                 "https://id.bank.example/?x=1", "https://id.bank.example/#f"])
def test_an_issuer_must_be_an_http_url_without_query_or_fragment(
        monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("SINGLEID_ISSUER", bad)
    with pytest.raises(ValidationError):
        Settings()
