"""The ``singleid`` command as a user runs it: help, migrate, and clear configuration errors."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

COMMAND_TIMEOUT_SECONDS = 60


def singleid(*args: str, env: dict[str, str] | None = None,
             timeout: float = COMMAND_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "singleid", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout,
                          check=False)


def test_help_lists_every_command() -> None:
    result = singleid("--help")
    assert result.returncode == 0, result.stderr
    commands = result.stdout.partition("Commands:")[2].split()
    for command in ["serve", "migrate", "keys", "products", "customers"]:
        assert command in commands, result.stdout


def test_migrate_creates_a_fresh_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "singleid.db"
    env = {"SINGLEID_DATABASE_URL": f"sqlite:///{path}", "SINGLEID_DATA_DIR": str(tmp_path)}
    result = singleid("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"customers", "product_accounts", "customer_identifiers", "products",
            "outbox_events", "idempotency_records"} <= tables
    again = singleid("migrate", env=env)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (
            version,)


@pytest.fixture
def taken_addr() -> Iterator[str]:
    """An address another program listens on (without SO_REUSEPORT)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(("variable", "value", "workers"), [
    ("SINGLEID_GRPC_ADDR", "nonsense", "1"),
    ("SINGLEID_HTTP_ADDR", "127.0.0.1:99999", "1"),
    ("SINGLEID_GRPC_ADDR", "taken", "1"),
    ("SINGLEID_GRPC_ADDR", "taken", "2"),
    ("SINGLEID_HTTP_ADDR", "taken", "1"),
    ("SINGLEID_HTTP_ADDR", "taken", "2"),
    ("SINGLEID_GRPC_ADDR", "192.0.2.1:50051", "1"),  # TEST-NET: no interface of this machine
])
def test_a_bad_listen_address_is_a_clear_error(tmp_path: Path, taken_addr: str, variable: str,
                                               value: str, workers: str) -> None:
    """Malformed, out of range, in use, or not this machine's: the error names the variable."""
    env = {"SINGLEID_DATA_DIR": str(tmp_path / "data"), "SINGLEID_GRPC_ADDR": "127.0.0.1:0",
           "SINGLEID_HTTP_ADDR": "127.0.0.1:0",
           variable: taken_addr if value == "taken" else value}
    result = singleid("serve", "--workers", workers, env=env)
    assert result.returncode != 0
    assert variable in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "singleid listening" not in result.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_missing_key_ring_fails_at_start(tmp_path: Path, workers: str) -> None:
    """Not announced, not restarted forever: a clear error and a non-zero exit."""
    env = {"SINGLEID_DATA_DIR": str(tmp_path / "data"), "SINGLEID_GRPC_ADDR": "127.0.0.1:0",
           "SINGLEID_HTTP_ADDR": "127.0.0.1:0",
           "SINGLEID_KEYRING": f"file:{tmp_path / 'missing.json'}"}
    try:
        result = singleid("serve", "--workers", workers, env=env, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("serve kept running without a key ring")
    assert result.returncode != 0
    assert "SINGLEID_KEYRING" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "singleid listening" not in result.stdout
