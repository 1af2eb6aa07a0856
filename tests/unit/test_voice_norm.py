"""AS-norm: the formula on known vectors, its invariances, and the table that carries the cohort."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from singleid.voiceprint.calibration import CalibrationTable, build_table, bundled_table
from singleid.voiceprint.norm import Cohort


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> npt.NDArray[np.float32]:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def test_as_norm_follows_the_formula_on_the_top_k() -> None:
    rng = np.random.default_rng(1)
    cohort = Cohort(_unit(rng, 30), top_k=5)
    template, embedding = _unit(rng, 2)
    score = float(template @ embedding)
    top_t = np.sort(cohort.embeddings @ template)[-5:]
    top_e = np.sort(cohort.embeddings @ embedding)[-5:]
    expected = ((score - top_t.mean()) / top_t.std() + (score - top_e.mean()) / top_e.std()) / 2
    assert cohort.normalise(score, template, embedding) == pytest.approx(expected, rel=1e-5)


def test_the_matrix_form_matches_trial_by_trial() -> None:
    rng = np.random.default_rng(2)
    cohort = Cohort(_unit(rng, 40), top_k=10)
    templates, embeddings = _unit(rng, 3), _unit(rng, 4)
    scores = (templates @ embeddings.T).astype(np.float64)
    many = cohort.normalise_many(scores, templates, embeddings)
    for i in range(3):
        for j in range(4):
            assert many[i, j] == pytest.approx(
                cohort.normalise(float(scores[i, j]), templates[i], embeddings[j]), rel=1e-5)


def test_a_voice_close_to_many_impostors_is_scored_down() -> None:
    # Two trials with the same cosine: the one whose test voice resembles the cohort
    # (a "lamb") must get the lower normalised score.
    rng = np.random.default_rng(3)
    cohort_rows = _unit(rng, 50)
    crowd = cohort_rows[:10].mean(axis=0)
    lamb = crowd / np.linalg.norm(crowd)
    loner = _unit(rng, 1)[0]
    cohort = Cohort(cohort_rows, top_k=10)
    template = _unit(rng, 1)[0]
    assert cohort.normalise(0.5, template, lamb) < cohort.normalise(0.5, template, loner)


def test_bad_cohorts_are_refused() -> None:
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="top_k"):
        Cohort(_unit(rng, 5), top_k=6)
    with pytest.raises(ValueError, match="at least one"):
        Cohort(np.zeros((0, 16), dtype=np.float32), top_k=1)


def test_a_table_with_a_cohort_round_trips_and_keeps_raw_points() -> None:
    rng = np.random.default_rng(5)
    cohort = Cohort(_unit(rng, 20), top_k=4, speakers=5)
    targets, non_targets = rng.normal(3, 1, 300), rng.normal(0, 1, 3000)
    raw = (rng.normal(0.8, 0.05, 300), rng.normal(0.5, 0.1, 3000))
    table, _ = build_table(targets, non_targets, model_id="m", model_version="v",
                           cohort=cohort, raw=raw)
    again = CalibrationTable.from_json(table.to_json())
    assert again.cohort is not None
    assert np.array_equal(again.cohort.embeddings, cohort.embeddings)
    assert (again.cohort.top_k, again.cohort.speakers) == (4, 5)
    assert again.operating_points == table.operating_points
    watch = again.raw_point("far_0_1pct")
    assert watch is not None
    assert 0.5 < watch.threshold < 1.0
    template, embedding = _unit(rng, 2)
    assert again.normalise(0.3, template, embedding) == pytest.approx(
        cohort.normalise(0.3, template, embedding))


def test_the_bundled_table_normalises_with_its_cohort() -> None:
    table = bundled_table("ge2e-resemblyzer-0.1.4")
    assert table is not None
    assert table.cohort is not None
    assert table.cohort.dim == 256
    assert table.cohort.top_k <= len(table.cohort.embeddings)
    assert table.raw_point("far_0_1pct") is not None
