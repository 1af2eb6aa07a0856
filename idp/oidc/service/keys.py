"""ID-token signing keys: RS256 and ES256, sealed with the key ring, rotated with an overlap.

Each rotation adds a *generation* holding one key per algorithm. Tokens are
signed with the newest generation; JWKS publishes the newest two, so a token
signed just before a rotation keeps validating until it expires.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from singleid import events
from singleid.db import Database, utcnow
from singleid.idp.oidc import models
from singleid.keyring import Keyring, Sealed

ALGORITHMS = ("RS256", "ES256")
PUBLISHED_GENERATIONS = 2
CACHE_SECONDS = 1.0
EVENT_SOURCE = "/singleid/idp/oidc"

Key = RSAKey | ECKey


@dataclass(frozen=True)
class KeyView:
    kid: str
    alg: str
    generation: int


@dataclass(frozen=True)
class _Loaded:
    generation: int
    signing: dict[str, Key]  # alg -> private key of the newest generation
    public: KeySet
    public_json: dict[str, Any]


class SigningKeys:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._loaded_at = 0.0

    # -- rotation -------------------------------------------------------------

    def rotate(self) -> list[KeyView]:
        """Add a generation of keys (one per algorithm); the previous stays published."""
        created = self._db.run_write(self._add_generation)
        self._loaded = None
        return created

    def ensure(self) -> None:
        """Create the first generation if there is none (start-up, first use)."""
        with self._db.read() as session:
            if session.scalar(select(func.max(models.SigningKey.generation))) is not None:
                return
        self._db.run_write(lambda s: self._add_generation(s, only_if_empty=True))

    def _add_generation(self, session: Session, only_if_empty: bool = False) -> list[KeyView]:
        newest = session.scalar(select(func.max(models.SigningKey.generation)))
        if only_if_empty and newest is not None:
            return []
        generation = (newest or 0) + 1
        now = utcnow()
        views = []
        for alg in ALGORITHMS:
            kid = f"{alg.lower()}-{time.strftime('%Y%m%d')}-{secrets.token_hex(4)}"
            params: Any = {"kid": kid, "alg": alg, "use": "sig"}
            key: Key = (RSAKey.generate_key(2048, parameters=params, private=True)
                        if alg == "RS256" else
                        ECKey.generate_key("P-256", parameters=params, private=True))
            sealed = self._keyring.seal_text(json.dumps(key.as_dict(private=True)),
                                             models.signing_key_purpose(kid))
            session.add(models.SigningKey(
                kid=kid, alg=alg, generation=generation,
                public_jwk=dict(key.as_dict(private=False)),
                private_ciphertext=sealed.ciphertext, private_key_id=sealed.key_id,
                created_at=now))
            views.append(KeyView(kid, alg, generation))
        events.emit(session, type="oidc.signing_keys_rotated.v1", source=EVENT_SOURCE,
                    subject=f"generation/{generation}",
                    data={"generation": generation, "kids": [v.kid for v in views]})
        return views

    # -- use ----------------------------------------------------------------

    def signing_key(self, alg: str) -> Key:
        return self._current().signing[alg]

    def public_key_set(self) -> KeySet:
        return self._current().public

    def jwks(self) -> dict[str, Any]:
        return self._current().public_json

    def published(self) -> list[KeyView]:
        with self._db.read() as session:
            return [KeyView(r.kid, r.alg, r.generation) for r in self._published_rows(session)]

    def _current(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None and time.monotonic() - self._loaded_at < CACHE_SECONDS:
            return loaded
        with self._lock:
            with self._db.read() as session:
                newest = session.scalar(select(func.max(models.SigningKey.generation)))
            if newest is None:
                self.ensure()
            if self._loaded is None or self._loaded.generation != newest or newest is None:
                self._loaded = self._load()
            self._loaded_at = time.monotonic()
            return self._loaded

    @staticmethod
    def _published_rows(session: Session) -> list[models.SigningKey]:
        generations = list(session.scalars(
            select(models.SigningKey.generation).distinct()
            .order_by(models.SigningKey.generation.desc()).limit(PUBLISHED_GENERATIONS)))
        return list(session.scalars(
            select(models.SigningKey).where(models.SigningKey.generation.in_(generations))
            .order_by(models.SigningKey.generation.desc(), models.SigningKey.alg)))

    def _load(self) -> _Loaded:
        with self._db.read() as session:
            rows = self._published_rows(session)
        newest = rows[0].generation
        signing: dict[str, Key] = {}
        for row in rows:
            if row.generation == newest:
                text = self._keyring.open_text(Sealed(row.private_key_id, row.private_ciphertext),
                                               models.signing_key_purpose(row.kid))
                signing[row.alg] = (RSAKey if row.alg == "RS256" else ECKey).import_key(
                    json.loads(text))
        public_json: Any = {"keys": [row.public_jwk for row in rows]}
        return _Loaded(newest, signing, KeySet.import_key_set(public_json), public_json)
