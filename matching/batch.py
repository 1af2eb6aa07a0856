"""Batch dedupe over records in memory: block, fit, score, decide, cluster; on N processes.

Pure (no database): the service feeds it the decrypted accounts, and the
benchmarks feed it generated ones, so both measure the same code. Comparison
levels of every blocked pair are computed once (in worker processes when
``workers`` > 1, which fork after the features exist and so share them), then
weights, probabilities and hard rules are vectorised with numpy; only pairs at
or above the review threshold become :class:`~singleid.matching.model.Scored`.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from singleid.matching import model as fs
from singleid.matching.record import Features

CHUNK = 20_000
_SHARED: list[Features] = []


@dataclass
class Dedupe:
    model: fs.Model
    candidate_pairs: int
    decisions: list[fs.PairDecision]
    clusters: list[list[int]]
    demoted: list[fs.PairDecision]


def _levels(chunk: list[tuple[int, int]]) -> np.ndarray[Any, np.dtype[np.int8]]:
    features = _SHARED
    return np.asarray([fs.compare(features[i], features[j]) for i, j in chunk],
                      dtype=np.int8).reshape(len(chunk), len(fs.COMPARISONS))


def level_matrix(features: Sequence[Features], pairs: list[tuple[int, int]], workers: int
                 ) -> np.ndarray[Any, np.dtype[np.int8]]:
    global _SHARED  # noqa: PLW0603 - read by forked workers, copy-on-write
    _SHARED = list(features)
    chunks = [pairs[k:k + CHUNK] for k in range(0, len(pairs), CHUNK)]
    try:
        if workers > 1 and len(chunks) > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_levels, chunks)
        else:
            parts = [_levels(chunk) for chunk in chunks]
    finally:
        _SHARED = []
    if not parts:
        return np.zeros((0, len(fs.COMPARISONS)), dtype=np.int8)
    return np.concatenate(parts)


def weights(model: fs.Model, features: Sequence[Features], levels: np.ndarray[Any, Any],
            left: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Match weights of every pair, term-frequency adjusted as :meth:`Model.level_weight`."""
    total = np.full(len(levels), math.log2(model.prior / (1 - model.prior)))
    for k, comparison in enumerate(fs.COMPARISONS):
        m = np.maximum(np.asarray(model.m[comparison.name]), 1e-6)
        u = np.maximum(np.asarray(model.u[comparison.name]), 1e-9)
        table = np.log2(m / u)
        column = levels[:, k].astype(np.int64)
        known = column != fs.NULL
        total[known] += table[column[known]]
        if comparison.tf_value is not None and comparison.name in model.tf:
            tf = model.tf[comparison.name]
            value_of = comparison.tf_value
            u0 = u[0]
            per_record = np.asarray([fs.tf_u(tf[value], u0) if (value := value_of(f)) in tf
                                     else u0 for f in features])
            exact = column == 0
            adjusted = np.log2(m[0] / per_record[left[exact]])
            total[exact] += adjusted - table[0]
    return total


def dedupe(features: Sequence[Features], thresholds: fs.Thresholds, *, workers: int = 1,
           model: fs.Model | None = None, excluded: set[tuple[int, int]] | None = None,
           conflict: Callable[[int, int], bool] | None = None) -> Dedupe:
    """Block, fit (unless ``model`` is given), score, decide and cluster."""
    pairs = sorted(fs.candidate_pairs(features) - (excluded or set()))
    levels = level_matrix(features, pairs, workers)
    if model is None:
        model = fs.fit_levels(features, levels)
    left = np.asarray([i for i, _ in pairs], dtype=np.int64)
    if pairs:
        total = weights(model, features, levels, left)
        probability = 1 / (1 + np.exp2(-np.clip(total, -60, 60)))
        keep = np.nonzero(probability >= thresholds.review)[0]
    else:
        keep = np.zeros(0, dtype=np.int64)
    decisions = []
    for index in keep:
        i, j = pairs[index]
        scored = model.score(features[i], features[j])
        action = fs.decide(scored, thresholds)
        if action != "none":
            decisions.append(fs.PairDecision(i, j, scored, action))

    def default_conflict(x: int, y: int) -> bool:
        rules = fs.hard_rules(features[x], features[y], fs.compare(features[x], features[y]))
        return bool(fs.CONFLICT_RULES.intersection(rules))

    clusters, demoted = fs.cluster(len(features), decisions, conflict or default_conflict)
    return Dedupe(model, len(pairs), decisions, clusters, demoted)
