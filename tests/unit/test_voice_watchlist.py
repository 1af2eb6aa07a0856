"""The 1:N watchlist search finds the entries over the threshold, best first."""

from __future__ import annotations

import numpy as np

from singleid.voiceprint.service.watchlist import search


def test_search_finds_the_matching_entry_among_many() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(5000, 256)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = [f"e{i}" for i in range(len(matrix))]
    probe = matrix[1234] + 0.02 * rng.normal(size=256).astype(np.float32)
    probe /= np.linalg.norm(probe)
    hits = search(ids, matrix, probe, threshold=0.8)
    assert [h.entry_id for h in hits] == ["e1234"]
    assert hits[0].score > 0.9
    assert search(ids, matrix, -probe, threshold=0.8) == []
    assert search([], np.zeros((0, 256), np.float32), probe, threshold=0.0) == []
