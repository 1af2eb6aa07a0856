"""Row-level helpers: sealing a person, blind blocking keys, loading accounts."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from singleid.keyring import Keyring, Sealed
from singleid.matching import models
from singleid.matching.model import Model, blocking_keys
from singleid.matching.record import Features, Person


def seal_person(keyring: Keyring, person: Person) -> Sealed:
    return keyring.seal_text(json.dumps(person.to_dict(), ensure_ascii=False,
                                        sort_keys=True), models.PERSON_PURPOSE)


def open_person(keyring: Keyring, row: models.LegacyAccount) -> Person:
    text = keyring.open_text(Sealed(row.person_key_id, row.person_ciphertext),
                             models.PERSON_PURPOSE)
    return Person.from_dict(json.loads(text))


def content_hash(keyring: Keyring, person: Person, password_hash: str) -> bytes:
    doc = json.dumps([person.to_dict(), password_hash], ensure_ascii=False, sort_keys=True)
    return keyring.blind_index(doc, models.CONTENT_PURPOSE)


def block_indexes(keyring: Keyring, features: Features) -> list[bytes]:
    return [keyring.blind_index(key, models.BLOCK_PURPOSE) for key in blocking_keys(features)]


def replace_block_keys(session: Session, keyring: Keyring, account_pk: int,
                       features: Features) -> None:
    session.execute(delete(models.BlockKey).where(models.BlockKey.account_pk == account_pk))
    session.add_all(models.BlockKey(account_pk=account_pk, block_key=key)
                    for key in set(block_indexes(keyring, features)))


def load_model(session: Session, keyring: Keyring) -> Model | None:
    """The latest fitted model; None when there is none or it predates today's comparisons."""
    row = session.scalars(select(models.FittedModel).order_by(
        models.FittedModel.id.desc()).limit(1)).one_or_none()
    if row is None:
        return None
    text = keyring.open_text(Sealed(row.key_id, row.ciphertext), models.MODEL_PURPOSE)
    model = Model.from_dict(json.loads(text))
    return model if model.fits_comparisons() else None


class ModelCache:
    """The latest fitted model, opened once per fit.

    Opening it (decrypt, parse the term-frequency tables) costs more than the
    rest of an incremental match on a large store; each use reads only the
    latest row's ID.
    """

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._cached: tuple[int, Model | None] | None = None

    def latest(self, session: Session) -> Model | None:
        latest_id = session.scalar(select(func.max(models.FittedModel.id)))
        if latest_id is None:
            return None
        if self._cached is None or self._cached[0] != latest_id:
            self._cached = (latest_id, load_model(session, self._keyring))
        return self._cached[1]


def save_model(session: Session, keyring: Keyring, model: Model, now: object) -> None:
    sealed = keyring.seal_text(json.dumps(model.to_dict(), ensure_ascii=False),
                               models.MODEL_PURPOSE)
    session.add(models.FittedModel(ciphertext=sealed.ciphertext, key_id=sealed.key_id,
                                   records=model.records, created_at=now))


def ordered_pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def pairs_with_status(session: Session, statuses: Iterable[str]) -> set[tuple[int, int]]:
    return {(a, b) for a, b in session.execute(select(
        models.MatchPair.account_a, models.MatchPair.account_b).where(
        models.MatchPair.status.in_(list(statuses))))}
