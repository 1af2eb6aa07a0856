"""The embedding backends: GE2E from the resemblyzer wheel, ECAPA from a speechbrain directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from singleid.voiceprint import backends
from singleid.voiceprint.backends import BackendUnavailable, EcapaEncoder, Ge2eEncoder


@pytest.fixture(scope="module")
def ge2e() -> Ge2eEncoder:
    encoder = backends.load_backend("ge2e")
    assert isinstance(encoder, Ge2eEncoder)
    return encoder


def _speechlike(seed: int, seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    f0 = 110 + 20 * seed
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 15))
    return (0.05 * voice * (1 + np.sin(2 * np.pi * 3 * t)) + 0.003 * rng.normal(size=len(t))
            ).astype(np.float32)


def test_ge2e_loads_the_bundled_weights_and_embeds_to_unit_vectors(ge2e: Ge2eEncoder) -> None:
    assert ge2e.model_id == backends.GE2E_ID
    assert len(ge2e.model_version) == 16
    a = ge2e.embed(_speechlike(1))
    assert a.shape == (256,)
    assert a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(a, ge2e.embed(_speechlike(1)))  # deterministic
    # Short audio (under one 1.6 s partial) is padded, not refused.
    assert ge2e.embed(_speechlike(2, 0.5)).shape == (256,)


def test_partial_slices_cover_the_utterance() -> None:
    assert len(backends.partial_slices(16_000)) == 1
    slices = backends.partial_slices(16_000 * 5)
    assert slices[0] == slice(0, 160)
    assert slices[-1].stop * 160 >= 16_000 * 5 * 0.9


def test_ecapa_loads_from_a_speechbrain_directory_written_from_a_random_model(
        tmp_path: Path) -> None:
    # Small channels keep the test fast; the layout and the loading path are speechbrain's own.
    model_dir = backends.write_random_ecapa(tmp_path / "ecapa", channels=(64, 64, 64, 64, 192),
                                            lin_neurons=32, seed=7)
    assert {p.name for p in model_dir.iterdir()} >= {"hyperparams.yaml", "embedding_model.ckpt"}
    encoder = backends.load_backend("ecapa", model_dir)
    assert isinstance(encoder, EcapaEncoder)
    assert encoder.model_id == backends.ECAPA_ID
    assert encoder.dim == 32
    embedding = encoder.embed(_speechlike(1))
    assert embedding.shape == (32,)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    # The weights are the checkpoint's: another seed is another model version.
    other = backends.write_random_ecapa(tmp_path / "other", channels=(64, 64, 64, 64, 192),
                                        lin_neurons=32, seed=8)
    assert backends.load_backend("ecapa", other).model_version != encoder.model_version


def test_ecapa_needs_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"hyperparams\.yaml"):
        backends.load_backend("ecapa", tmp_path)
    with pytest.raises(BackendUnavailable, match="SINGLEID_VOICE_ECAPA_DIR"):
        backends.load_backend("ecapa", None)
    with pytest.raises(BackendUnavailable, match="unknown voice backend"):
        backends.load_backend("wav2vec", None)


def test_a_broken_torchaudio_fails_with_a_clear_message(tmp_path: Path) -> None:
    # A torchaudio that fails to import, as the CUDA build does with its .so files in place.
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise OSError('libcudart.so.13: cannot open shared object')\n")
    code = ("from singleid.voiceprint.backends import check_torchaudio\n"
            "check_torchaudio()\n")
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "torchaudio cannot be imported" in result.stderr
    assert "./dev setup" in result.stderr


def test_a_backend_without_its_calibration_table_does_not_start(tmp_path: Path) -> None:
    from singleid.voiceprint.calibration import build_table  # noqa: PLC0415
    from singleid.voiceprint.config import VoiceSettings  # noqa: PLC0415
    from singleid.voiceprint.service import CalibrationError, VoiceEngine  # noqa: PLC0415

    model_dir = backends.write_random_ecapa(tmp_path / "ecapa", channels=(32, 32, 32, 32, 96),
                                            lin_neurons=16)
    settings = VoiceSettings(backend="ecapa", ecapa_dir=model_dir)
    with pytest.raises(CalibrationError, match="singleid voiceprint calibrate"):
        VoiceEngine(settings)
    # A table made for another model is refused too; the right one is loaded.
    rng = np.random.default_rng(0)
    encoder = backends.load_backend("ecapa", model_dir)
    wrong, _ = build_table(rng.normal(1, 1, 50), rng.normal(0, 1, 50), model_id=encoder.model_id,
                           model_version="other")
    (tmp_path / "wrong.json").write_text(wrong.to_json())
    with pytest.raises(CalibrationError, match="calibrate again"):
        VoiceEngine(settings.model_copy(update={"calibration": tmp_path / "wrong.json"}))
    right, _ = build_table(rng.normal(1, 1, 50), rng.normal(0, 1, 50), model_id=encoder.model_id,
                           model_version=encoder.model_version)
    (tmp_path / "right.json").write_text(right.to_json())
    engine = VoiceEngine(settings.model_copy(update={"calibration": tmp_path / "right.json"}))
    assert engine.model_id == backends.ECAPA_ID
    assert engine.operating_point == right.operating_points["far_1pct"]
