"""The fraudster watchlist's in-memory index: one matrix, searched 1:N by a matrix product.

Entries are stored sealed; each process decrypts them once into a float32
matrix and reloads when the table changes (its count or newest row). Only
entries made by the running model are searched.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from singleid.db import Database
from singleid.keyring import Keyring, Sealed
from singleid.voiceprint import models
from singleid.voiceprint.service.types import WatchlistMatch

MAX_MATCHES = 5


@dataclass(frozen=True)
class _Snapshot:
    generation: tuple[int, str]
    ids: list[str]
    matrix: npt.NDArray[np.float32]


class WatchlistIndex:
    def __init__(self, db: Database, keyring: Keyring, model_id: str, model_version: str,
                 dim: int) -> None:
        self._db = db
        self._keyring = keyring
        self._model = (model_id, model_version)
        self._dim = dim
        self._lock = threading.Lock()
        self._snapshot = _Snapshot((-1, ""), [], np.zeros((0, dim), dtype=np.float32))

    def _generation(self) -> tuple[int, str]:
        with self._db.read() as session:
            count, newest = session.execute(
                select(func.count(), func.max(models.WatchlistEntry.created_at))
                .where(models.WatchlistEntry.model_id == self._model[0],
                       models.WatchlistEntry.model_version == self._model[1])).one()
        return int(count), str(newest)

    def refresh(self) -> _Snapshot:
        generation = self._generation()
        if generation == self._snapshot.generation:
            return self._snapshot
        with self._lock:
            if generation == self._snapshot.generation:
                return self._snapshot
            with self._db.read() as session:
                rows = session.execute(
                    select(models.WatchlistEntry.id, models.WatchlistEntry.embedding_key_id,
                           models.WatchlistEntry.embedding_ciphertext)
                    .where(models.WatchlistEntry.model_id == self._model[0],
                           models.WatchlistEntry.model_version == self._model[1])
                    .order_by(models.WatchlistEntry.id)).all()
            ids = [row[0] for row in rows]
            matrix = np.zeros((len(rows), self._dim), dtype=np.float32)
            for i, (_id, key_id, ciphertext) in enumerate(rows):
                plain = self._keyring.open(Sealed(key_id, ciphertext), models.WATCHLIST_PURPOSE)
                matrix[i] = np.frombuffer(plain, dtype="<f4")
            self._snapshot = _Snapshot(generation, ids, matrix)
            return self._snapshot

    def search(self, embedding: npt.NDArray[np.float32], threshold: float) -> list[WatchlistMatch]:
        snapshot = self.refresh()
        return search(snapshot.ids, snapshot.matrix, embedding, threshold)


def search(ids: list[str], matrix: npt.NDArray[np.float32], embedding: npt.NDArray[np.float32],
           threshold: float) -> list[WatchlistMatch]:
    """Every entry scoring at least ``threshold``, best first (at most MAX_MATCHES)."""
    if not ids:
        return []
    scores = matrix @ embedding.astype(np.float32)
    hits = np.nonzero(scores >= threshold)[0]
    best = hits[np.argsort(-scores[hits])][:MAX_MATCHES]
    return [WatchlistMatch(ids[i], float(scores[i])) for i in best]
