"""``singleid demo`` on SQLite and PostgreSQL: what it seeds, and a second run changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import require
from tests.voice_data import MISSING, VOICE_DIR, voice_data_present

pytestmark = pytest.mark.slow

COUNTED = ("products", "customers", "product_accounts", "customer_identifiers", "oidc_clients",
           "oidc_logins", "oidc_legacy_logins", "profile_attributes", "outbox_events")


def _demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "singleid", "demo"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {table: int(connection.execute(text(f"SELECT count(*) FROM {table}"))
                               .scalar_one()) for table in COUNTED}
    finally:
        engine.dispose()


def test_demo_seeds_once_and_prints_what_to_try(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "SINGLEID_DATA_DIR": str(data_dir), "SINGLEID_DATABASE_URL": database_url,
           "SINGLEID_LOG_LEVEL": "WARNING"}
    env.pop("SINGLEID_DEMO_VOICE_DIR", None)
    first = _demo(env)
    seeded = _counts(database_url)
    second = _demo(env)

    assert _counts(database_url) == seeded
    assert seeded["products"] >= 4
    assert seeded["oidc_clients"] == 1
    assert seeded["oidc_logins"] == 1
    assert seeded["oidc_legacy_logins"] == 1
    assert "created product loyalty" in first.stderr
    assert "0 things created" in second.stdout
    client = json.loads((data_dir / "demo-cabinet-client.json").read_text())
    assert client["client_id"] == "loyalty-cabinet"
    assert client["redirect_uri"] == "http://127.0.0.1:8000/auth/callback"
    assert (data_dir / "demo-cabinet-client.json").stat().st_mode & 0o077 == 0
    assert client["client_secret"] not in first.stdout + first.stderr  # only in the file
    assert "python -m singleid.clients.cabinet --client-file" in first.stdout
    assert first.stdout.count("Anna: ") == 1
    assert first.stdout.splitlines()[3] == second.stdout.splitlines()[3]  # the same Anna


def test_demo_enrolls_a_voiceprint_once_when_given_recordings(tmp_path: Path) -> None:
    require(voice_data_present(), MISSING)
    env = {**os.environ, "SINGLEID_DATA_DIR": str(tmp_path / "data"),
           "SINGLEID_DATABASE_URL": f"sqlite:///{tmp_path / 'singleid.db'}",
           "SINGLEID_LOG_LEVEL": "WARNING", "SINGLEID_DEMO_VOICE_DIR": str(VOICE_DIR)}
    assert "Anna's voiceprint enrolled (Ara)" in _demo(env).stdout
    again = _demo(env)
    assert "Anna's voiceprint exists (Ara)" in again.stdout
    assert "0 things created" in again.stdout
    without = _demo({**env, "SINGLEID_DEMO_VOICE_DIR": str(tmp_path)})
    assert "no voiceprint enrolled: no recordings of Ara" in without.stdout
