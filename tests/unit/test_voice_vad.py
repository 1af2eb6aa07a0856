"""The one-pass silero-vad gives the segments silero's own frame-by-frame loop gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from silero_vad import get_speech_timestamps, load_silero_vad

from singleid.voiceprint import speech
from singleid.voiceprint.audio import MODEL_RATE, resample

from ..conftest import require
from ..voice_data import MISSING, fsdd_concat, read, voice_data_present, voxforge


def _reference(samples: np.ndarray) -> tuple[tuple[int, int], ...]:
    with torch.inference_mode():
        stamps = get_speech_timestamps(torch.from_numpy(samples), load_silero_vad(),
                                       sampling_rate=MODEL_RATE, speech_pad_ms=0)
    return tuple((int(s["start"]), int(s["end"])) for s in stamps)


@pytest.mark.parametrize("speaker", ["Ara", "bebe", "BlueB", "bonzer"])
def test_segments_match_silero_on_real_speech(speaker: str) -> None:
    require(voice_data_present(), MISSING)
    for path in voxforge(speaker)[:2]:
        samples, rate = read(path)
        assert rate == MODEL_RATE
        assert speech._speech_segments(samples) == _reference(samples)


def test_segments_match_silero_on_telephone_audio_and_noise() -> None:
    require(voice_data_present(), MISSING)
    digits = resample(fsdd_concat("theo", range(5, 6)), 8000, MODEL_RATE)
    noise = np.random.default_rng(0).normal(0, 0.05, MODEL_RATE * 2).astype(np.float32)
    for samples in (digits, noise, np.concatenate([noise[:7000], digits])):
        assert speech._speech_segments(samples) == _reference(samples)


def test_probabilities_match_the_streaming_model_frame_by_frame() -> None:
    require(voice_data_present(), MISSING)
    samples, _ = read(voxforge("becz03")[0])
    samples = samples[:MODEL_RATE * 3]
    model = load_silero_vad()
    with torch.inference_mode():
        expected = [float(model(torch.from_numpy(samples[i:i + 512]), MODEL_RATE))
                    for i in range(0, len(samples) - 511, 512)]
    got = speech.SequenceVad().probabilities(samples)
    assert len(got) == (len(samples) + 511) // 512
    assert np.allclose(got[:len(expected)], expected, atol=1e-5)
