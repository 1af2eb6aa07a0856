"""The one typed settings object, read from ``SINGLEID_*`` environment variables.

The variable names are a contract: other tools drive the service through them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Set by the supervisor in each worker process it starts.
WORKER_ENV = "SINGLEID_WORKER_INDEX"


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SINGLEID_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./.singleid"),
        description="Where the embedded database, the development key ring and metrics live.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means sqlite:///<data_dir>/singleid.db.",
    )
    grpc_addr: str = Field(default="127.0.0.1:50051", description="gRPC listen address.")
    http_addr: str = Field(default="127.0.0.1:8080", description="HTTP listen address.")
    keyring: str = Field(
        default="",
        description=(
            "Where the encryption keys come from: file:PATH (a JSON key ring) or env:VAR "
            "(the same JSON in a variable). Empty means a development key ring generated "
            "into the data dir."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    blocking_threads: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Worker threads per process for synchronous work (database calls).",
    )
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    issuer: str = Field(
        default="",
        description="The OpenID Connect issuer URL; empty means http://<SINGLEID_HTTP_ADDR>.",
    )

    auth: Literal["on", "off"] = Field(
        default="on",
        description=(
            "Token check on every singleid.v1 gRPC call; off only on loopback addresses "
            "(benchmarks, local experiments)."
        ),
    )
    auth_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How often each process reloads signing keys, disabled clients and revoked "
        "tokens: a disabled client or a rotated-out key is refused within twice this.",
    )
    bootstrap_client: str = Field(
        default="",
        description="CLIENT_ID:SECRET of an unbound administrator client (all scopes) that "
        "start-up creates or resets: for tests and automation.",
    )
    rate_limit_per_client: float = Field(
        default=0.0, ge=0, description="gRPC calls a second per client and process; 0: no limit."
    )
    rate_limit_burst: int = Field(default=100, ge=1, description="Calls a client may burst.")
    tls_cert: Path | None = Field(default=None, description="PEM certificate chain for TLS.")
    tls_key: Path | None = Field(default=None, description="PEM private key for TLS.")
    tls_client_ca: Path | None = Field(
        default=None, description="PEM CA bundle: gRPC callers must present a client "
        "certificate it signed (mTLS), whose common name is their token's client ID."
    )
    allow_plaintext: bool = Field(
        default=False, description="Listen on a non-loopback address without TLS anyway."
    )

    @field_validator("grpc_addr", "http_addr")
    @classmethod
    def _check_addr(cls, value: str) -> str:
        return _host_port(value)

    @field_validator("issuer")
    @classmethod
    def _check_issuer(cls, value: str) -> str:
        bad_scheme = bool(value) and not value.startswith(("https://", "http://"))
        if bad_scheme or "?" in value or "#" in value:
            raise ValueError("expected an http(s) URL without query or fragment")
        return value.rstrip("/")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def effective_issuer(self) -> str:
        return self.issuer or f"{'https' if self.tls else 'http'}://{self.http_addr}"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'singleid.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
