"""AES-256-GCM envelope encryption with key IDs, and HMAC-SHA256 blind indexes.

A key ring is a JSON document::

    {"primary": "k2",
     "keys": {"k1": "<base64 32 bytes>", "k2": "<base64 32 bytes>"},
     "index_key": "<base64 32 bytes>"}

New writes use the primary key; every key stays available for reading, so a
rotation never makes old ciphertext unreadable. The key ID is stored beside each
ciphertext. The index key is not rotated with the data keys: a blind index must
stay stable for lookups to work, and rotating it means rebuilding every index.

``SINGLEID_KEYRING`` says where the ring lives: ``file:PATH`` or ``env:VAR``.
Empty means a development ring generated into the data dir, with a loud warning.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from singleid.errors import FailedPrecondition

log = logging.getLogger(__name__)

_NONCE_BYTES = 12
_KEY_BYTES = 32
_RELOAD_CHECK_SECONDS = 1.0
DEV_KEYRING_NAME = "dev-keyring.json"


class KeyringError(RuntimeError):
    """The key ring is missing, malformed, or lacks a key a ciphertext names."""


@dataclass(frozen=True)
class Sealed:
    """A ciphertext and the ID of the key that sealed it."""

    key_id: str
    ciphertext: bytes


@dataclass(frozen=True)
class KeyMaterial:
    primary: str
    keys: dict[str, bytes]
    index_key: bytes

    @classmethod
    def generate(cls) -> KeyMaterial:
        key_id = new_key_id()
        return cls(primary=key_id, keys={key_id: AESGCM.generate_key(bit_length=256)},
                   index_key=secrets.token_bytes(_KEY_BYTES))

    @classmethod
    def from_json(cls, text: str) -> KeyMaterial:
        try:
            doc = json.loads(text)
            keys = {kid: base64.b64decode(value) for kid, value in doc["keys"].items()}
            material = cls(primary=doc["primary"], keys=keys,
                           index_key=base64.b64decode(doc["index_key"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyringError(f"malformed key ring: {exc.__class__.__name__}") from None
        if material.primary not in material.keys:
            raise KeyringError(f"primary key {material.primary!r} is not in the ring")
        if any(len(k) != _KEY_BYTES for k in [*material.keys.values(), material.index_key]):
            raise KeyringError("every key must be 32 bytes (AES-256, HMAC-SHA256)")
        return material

    def to_json(self) -> str:
        return json.dumps({
            "primary": self.primary,
            "keys": {kid: base64.b64encode(k).decode() for kid, k in self.keys.items()},
            "index_key": base64.b64encode(self.index_key).decode(),
        }, indent=2)

    def rotated(self) -> KeyMaterial:
        key_id = new_key_id()
        return KeyMaterial(primary=key_id,
                           keys={**self.keys, key_id: AESGCM.generate_key(bit_length=256)},
                           index_key=self.index_key)


def new_key_id() -> str:
    return time.strftime("k%Y%m%d-") + secrets.token_hex(3)


class Keyring:
    """Seals and opens values, and computes blind indexes.

    A file-backed ring notices when the file changes (a ``singleid keys rotate``
    from another process) and reloads, so a running server writes with the new
    primary key within a second and can read what the new key sealed at once.
    """

    def __init__(self, material: KeyMaterial, source: Path | None = None) -> None:
        self._material = material
        self._source = source
        self._mtime = source.stat().st_mtime_ns if source else 0
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()

    @property
    def primary_key_id(self) -> str:
        self._maybe_reload()
        return self._material.primary

    @property
    def material(self) -> KeyMaterial:
        return self._material

    def seal(self, plaintext: bytes, purpose: str) -> Sealed:
        """Encrypt with the primary key; ``purpose`` is bound as associated data."""
        self._maybe_reload()
        material = self._material
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(material.keys[material.primary]).encrypt(nonce, plaintext, purpose.encode())
        return Sealed(material.primary, nonce + sealed)

    def open(self, sealed: Sealed, purpose: str) -> bytes:
        key = self._material.keys.get(sealed.key_id)
        if key is None:
            self._reload()
            key = self._material.keys.get(sealed.key_id)
        if key is None:
            raise KeyringError(f"key {sealed.key_id!r} is not in the key ring")
        nonce, body = sealed.ciphertext[:_NONCE_BYTES], sealed.ciphertext[_NONCE_BYTES:]
        return AESGCM(key).decrypt(nonce, body, purpose.encode())

    def seal_text(self, text: str, purpose: str) -> Sealed:
        return self.seal(text.encode(), purpose)

    def open_text(self, sealed: Sealed, purpose: str) -> str:
        return self.open(sealed, purpose).decode()

    def blind_index(self, normalized: str, purpose: str) -> bytes:
        """HMAC-SHA256 of a normalised value; ``purpose`` keeps kinds apart."""
        message = purpose.encode() + b"\x00" + normalized.encode()
        return hmac.new(self._material.index_key, message, hashlib.sha256).digest()

    def _maybe_reload(self) -> None:
        if self._source is None or time.monotonic() - self._checked_at < _RELOAD_CHECK_SECONDS:
            return
        self._checked_at = time.monotonic()
        if self._source.stat().st_mtime_ns != self._mtime:
            self._reload()

    def _reload(self) -> None:
        if self._source is None:
            return
        with self._lock:
            mtime = self._source.stat().st_mtime_ns
            self._material = KeyMaterial.from_json(self._source.read_text())
            self._mtime = mtime
            log.info("key ring reloaded", extra={"primary_key_id": self._material.primary})


def load_keyring(spec: str, data_dir: Path) -> Keyring:
    """Load the ring that ``SINGLEID_KEYRING`` names (see the module docstring)."""
    if spec.startswith("env:"):
        text = os.environ.get(spec[4:])
        if not text:
            raise KeyringError(f"SINGLEID_KEYRING names {spec[4:]}, which is not set")
        return Keyring(KeyMaterial.from_json(text))
    if spec.startswith("file:"):
        path = Path(spec[5:])
        if not path.exists():
            raise KeyringError(f"SINGLEID_KEYRING file {path} does not exist")
        return Keyring(KeyMaterial.from_json(path.read_text()), source=path)
    if spec:
        raise KeyringError("SINGLEID_KEYRING must be file:PATH, env:VAR or empty")
    return Keyring(*_development_ring(data_dir))


def _development_ring(data_dir: Path) -> tuple[KeyMaterial, Path]:
    path = data_dir / DEV_KEYRING_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        write_keyring_file(path, KeyMaterial.generate())
    log.warning(
        "DEVELOPMENT KEY RING in use: %s was generated on this machine and is not protected. "
        "Set SINGLEID_KEYRING=file:PATH or env:VAR before storing real customers' data.", path)
    return KeyMaterial.from_json(path.read_text()), path


def write_keyring_file(path: Path, material: KeyMaterial) -> None:
    write_secret_file(path, material.to_json())


def write_secret_file(path: Path, text: str) -> None:
    """Write a file that holds a secret: atomically, with owner-only permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def rotate_keyring(spec: str, data_dir: Path) -> tuple[str, str]:
    """Add a new primary key to a file-backed ring; return (old, new) primary IDs."""
    if spec.startswith("env:"):
        raise FailedPrecondition(
            "an env: key ring is managed by whoever sets the variable; rotate it there",
            reason="KEYRING_NOT_WRITABLE", field="SINGLEID_KEYRING")
    path = Path(spec[5:]) if spec.startswith("file:") else data_dir / DEV_KEYRING_NAME
    ring = load_keyring(spec, data_dir)
    rotated = ring.material.rotated()
    write_keyring_file(path, rotated)
    return ring.material.primary, rotated.primary
