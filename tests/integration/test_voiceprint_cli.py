"""The voice commands as users run them: calibrate, evaluate (with its own server) and the IVR."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from singleid.voiceprint.calibration import CalibrationTable

from ..conftest import require
from ..voice_data import MISSING, VOXFORGE, voice_data_present

SUMMARY = re.compile(r"^EER \d+\.\d\d% \| FRR@FAR1% \d+\.\d\d% \| FRR@FAR0\.1% \d+\.\d\d% \| "
                     r"(\d+) target / (\d+) non-target trials$")
SPEAKERS = ("Ara", "becz03", "Blenderkitty")


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three speakers: two with three recordings (enrolled with two), one with two (too few)."""
    require(voice_data_present(), MISSING)
    root = tmp_path_factory.mktemp("corpus")
    for speaker, count in zip(SPEAKERS, (3, 3, 2), strict=True):
        (root / speaker / "session").mkdir(parents=True)
        for path in sorted((VOXFORGE / speaker).glob("*.flac"))[:count]:
            (root / speaker / "session" / path.name).symlink_to(path)
    return root


def _singleid(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "singleid", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)


def test_calibrate_writes_the_table_the_service_loads(small_corpus: Path, tmp_path: Path) -> None:
    result = _singleid("voiceprint", "calibrate", str(small_corpus), "--out", "cal",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    match = SUMMARY.match(result.stdout.strip().splitlines()[-1])
    assert match, result.stdout
    # Ara and becz03 are enrolled; their third recordings and the two of Blenderkitty
    # (too few to enroll) are verified against both: 2 target and 6 non-target trials.
    assert (int(match[1]), int(match[2])) == (2, 6)
    table = CalibrationTable.load(tmp_path / "cal" / "calibration-ge2e-resemblyzer-0.1.4.json")
    assert table.model_id == "ge2e-resemblyzer-0.1.4"
    assert (tmp_path / "cal" / "det.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_runs_the_protocol_through_a_server_it_starts(small_corpus: Path,
                                                               tmp_path: Path) -> None:
    result = _singleid("voiceprint", "evaluate", str(small_corpus), "--resample", "8000",
                       "--out", "eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    match = SUMMARY.match(result.stdout.strip().splitlines()[-1])
    assert match, result.stdout
    assert (int(match[1]), int(match[2])) == (2, 6)
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["resample"] == 8000
    assert report["target_trials"] == 2
    assert (tmp_path / "eval" / "det.png").exists()
    det = report["det"]  # the curve's points, for bench/run's report
    assert 2 <= len(det["far"]) == len(det["frr"]) <= 200
    assert det["far"] == sorted(det["far"], reverse=True)


@pytest.fixture(scope="module")
def cohort_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two speakers who are not in the small corpus, three recordings each."""
    require(voice_data_present(), MISSING)
    root = tmp_path_factory.mktemp("cohort")
    for speaker in ("bebe", "ben"):
        (root / speaker).mkdir()
        for path in sorted((VOXFORGE / speaker).glob("*.flac"))[:3]:
            (root / speaker / path.name).symlink_to(path)
    return root


def test_a_cohort_table_is_written_and_served(small_corpus: Path, cohort_corpus: Path,
                                             tmp_path: Path) -> None:
    result = _singleid("voiceprint", "calibrate", str(small_corpus), "--cohort",
                       str(cohort_corpus), "--top-k", "4", "--out", "cal", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "cal" / "calibration-ge2e-resemblyzer-0.1.4.json"
    table = CalibrationTable.load(path)
    assert table.cohort is not None
    assert (len(table.cohort.embeddings), table.cohort.top_k, table.cohort.speakers) == (6, 4, 2)
    assert "far_0_1pct" in table.raw_operating_points
    evaluated = subprocess.run(
        [sys.executable, "-m", "singleid", "voiceprint", "evaluate", str(small_corpus),
         "--out", "eval"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        check=False, env={**os.environ, "SINGLEID_VOICE_CALIBRATION": str(path)})
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    # The service scores with the table: each trial's LLR is a·AS-norm + b, so the
    # evaluation's scores are those of the in-process calibration.
    calibration = json.loads((tmp_path / "cal" / "report.json").read_text())
    assert sorted(report["target_scores"]) == pytest.approx(
        sorted(table.llr(s) for s in calibration["target_scores"]), abs=1e-3)


def test_a_cohort_sharing_speakers_with_the_calibration_set_is_refused(
        small_corpus: Path, tmp_path: Path) -> None:
    result = _singleid("voiceprint", "calibrate", str(small_corpus), "--cohort",
                       str(small_corpus), "--out", "cal", cwd=tmp_path)
    assert result.returncode == 2
    assert "--cohort" in result.stderr
    assert "Ara" in result.stderr
    assert not (tmp_path / "cal").exists()


def test_serve_refuses_to_start_when_torchaudio_cannot_be_imported(tmp_path: Path) -> None:
    fake = tmp_path / "shadow" / "torchaudio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise OSError('libcudart.so.13: cannot open')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow"),
           "SINGLEID_DATA_DIR": str(tmp_path / "data"), "SINGLEID_GRPC_ADDR": "127.0.0.1:0",
           "SINGLEID_HTTP_ADDR": "127.0.0.1:0"}
    result = subprocess.run([sys.executable, "-m", "singleid", "serve"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert "the voice service cannot start: torchaudio cannot be imported" in result.stderr
    assert "Traceback" not in result.stderr
