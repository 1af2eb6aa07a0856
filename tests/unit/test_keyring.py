from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from singleid.errors import FailedPrecondition
from singleid.keyring import (
    DEV_KEYRING_NAME,
    KeyMaterial,
    Keyring,
    KeyringError,
    Sealed,
    load_keyring,
    rotate_keyring,
)


def test_seal_and_open_round_trip_with_key_id() -> None:
    ring = Keyring(KeyMaterial.generate())
    sealed = ring.seal_text("+79161234567", "identifier.phone")
    assert sealed.key_id == ring.primary_key_id
    assert b"79161234567" not in sealed.ciphertext
    assert ring.open_text(sealed, "identifier.phone") == "+79161234567"


def test_sealing_is_randomised() -> None:
    ring = Keyring(KeyMaterial.generate())
    assert ring.seal_text("x", "p").ciphertext != ring.seal_text("x", "p").ciphertext


def test_purpose_is_bound_as_associated_data() -> None:
    ring = Keyring(KeyMaterial.generate())
    sealed = ring.seal_text("4506123456", "identifier.passport")
    with pytest.raises(InvalidTag):
        ring.open(sealed, "identifier.phone")


def test_tampering_is_detected() -> None:
    ring = Keyring(KeyMaterial.generate())
    sealed = ring.seal_text("secret", "p")
    flipped = bytes([sealed.ciphertext[-1] ^ 1])
    with pytest.raises(InvalidTag):
        ring.open(Sealed(sealed.key_id, sealed.ciphertext[:-1] + flipped), "p")


def test_blind_index_is_deterministic_keyed_and_separated_by_purpose() -> None:
    material = KeyMaterial.generate()
    ring = Keyring(material)
    assert ring.blind_index("+79161234567", "phone") == ring.blind_index("+79161234567", "phone")
    assert ring.blind_index("+79161234567", "phone") != ring.blind_index("+79161234567", "email")
    other = Keyring(KeyMaterial.generate())
    assert ring.blind_index("x", "p") != other.blind_index("x", "p")
    # Rotation keeps the index key, so lookups keep working.
    assert Keyring(material.rotated()).blind_index("x", "p") == ring.blind_index("x", "p")


def test_rotation_keeps_old_data_readable_and_writes_with_the_new_key() -> None:
    material = KeyMaterial.generate()
    old = Keyring(material)
    sealed = old.seal_text("old value", "p")
    new = Keyring(material.rotated())
    assert new.primary_key_id != old.primary_key_id
    assert new.open_text(sealed, "p") == "old value"
    assert new.seal_text("new value", "p").key_id == new.primary_key_id


def test_unknown_key_id_is_a_clear_error() -> None:
    ring = Keyring(KeyMaterial.generate())
    with pytest.raises(KeyringError, match="not in the key ring"):
        ring.open(Sealed("k-missing", b"\x00" * 40), "p")


def test_development_ring_is_generated_once_with_owner_only_permissions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = load_keyring("", tmp_path)
    path = tmp_path / DEV_KEYRING_NAME
    assert path.exists()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert "DEVELOPMENT KEY RING" in caplog.text
    second = load_keyring("", tmp_path)
    assert second.primary_key_id == first.primary_key_id


def test_env_and_file_rings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    material = KeyMaterial.generate()
    monkeypatch.setenv("TEST_RING", material.to_json())
    assert load_keyring("env:TEST_RING", tmp_path).primary_key_id == material.primary
    path = tmp_path / "ring.json"
    path.write_text(material.to_json())
    assert load_keyring(f"file:{path}", tmp_path).primary_key_id == material.primary


@pytest.mark.parametrize(("spec", "message"), [
    ("env:UNSET_RING_VARIABLE", "not set"),
    ("file:/nonexistent/ring.json", "does not exist"),
    ("vault:secret", "must be file:PATH"),
])
def test_bad_specs_fail_clearly(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        load_keyring(spec, tmp_path)


@pytest.mark.parametrize("text", [
    "not json",
    json.dumps({"primary": "k1", "keys": {}, "index_key": ""}),
    json.dumps({"primary": "k1", "keys": {"k1": "c2hvcnQ="}, "index_key": "c2hvcnQ="}),
])
def test_malformed_rings_fail_without_echoing_key_material(text: str) -> None:
    with pytest.raises(KeyringError) as error:
        KeyMaterial.from_json(text)
    assert "c2hvcnQ" not in str(error.value)


def test_rotate_file_ring_and_a_running_ring_notices(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    running = load_keyring("", tmp_path)
    sealed_before = running.seal_text("before", "p")
    old, new = rotate_keyring("", tmp_path)
    assert old == sealed_before.key_id
    assert new != old
    # A ring loaded from the file reads what the rotated key sealed at once...
    fresh = load_keyring("", tmp_path)
    sealed_after = fresh.seal_text("after", "p")
    assert running.open_text(sealed_after, "p") == "after"
    # ...and starts writing with it once it rechecks the file.
    monkeypatch.setattr("singleid.keyring._RELOAD_CHECK_SECONDS", 0.0)
    assert running.seal_text("x", "p").key_id == new


def test_env_rings_are_not_rotated_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_RING", KeyMaterial.generate().to_json())
    with pytest.raises(FailedPrecondition):
        rotate_keyring("env:TEST_RING", tmp_path)
