"""Calibration: EER and FRR at fixed FAR on known score distributions, the LLR fit, the table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from singleid.voiceprint.calibration import (
    CalibrationTable,
    build_table,
    bundled_table,
    metrics,
    plot_det,
    summary_line,
)

SUMMARY = re.compile(r"^EER \d+\.\d\d% \| FRR@FAR1% \d+\.\d\d% \| FRR@FAR0\.1% \d+\.\d\d% \| "
                     r"\d+ target / \d+ non-target trials$")


def test_separated_scores_have_zero_eer() -> None:
    m = metrics(np.array([0.8, 0.9, 0.95]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert m.eer == 0.0
    assert m.frr_at_far["far_1pct"].frr == 0.0
    assert 0.4 < m.frr_at_far["far_1pct"].threshold <= 0.8


def test_gaussian_scores_give_the_textbook_eer() -> None:
    # Two unit-variance Gaussians 2 apart: EER = Phi(-1) = 15.87%.
    rng = np.random.default_rng(0)
    m = metrics(rng.normal(2, 1, 20_000), rng.normal(0, 1, 20_000))
    assert m.eer == pytest.approx(0.1587, abs=0.01)
    assert m.frr_at_far["far_1pct"].far <= 0.01
    # FRR at FAR 1%: Phi(2.326 - 2) = 62.8%.
    assert m.frr_at_far["far_1pct"].frr == pytest.approx(0.628, abs=0.02)


def test_llr_fit_is_increasing_and_zero_near_the_crossing() -> None:
    rng = np.random.default_rng(1)
    table, _ = build_table(rng.normal(0.8, 0.05, 5000), rng.normal(0.4, 0.05, 5000),
                           model_id="m", model_version="v")
    assert table.a > 0
    assert abs(table.llr(0.6)) < 0.5
    assert table.probability(0.9) > 0.99 > 0.01 > table.probability(0.3)


def test_table_round_trips_through_json() -> None:
    rng = np.random.default_rng(2)
    table, _ = build_table(rng.normal(1, 1, 100), rng.normal(0, 1, 1000), model_id="m",
                           model_version="v", source="test")
    assert CalibrationTable.from_json(table.to_json()) == table


def test_the_bundled_table_is_for_the_default_model() -> None:
    table = bundled_table("ge2e-resemblyzer-0.1.4")
    assert table is not None
    assert {"far_1pct", "far_0_1pct", "eer"} <= set(table.operating_points)
    assert bundled_table("no-such-model") is None


def test_summary_line_and_det_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    targets, non_targets = rng.normal(2, 1, 300), rng.normal(0, 1, 3000)
    m = metrics(targets, non_targets)
    line = summary_line(m, len(targets), len(non_targets))
    assert SUMMARY.match(line), line
    assert line.endswith("300 target / 3000 non-target trials")
    plot_det(m, tmp_path / "det.png", "test")
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
