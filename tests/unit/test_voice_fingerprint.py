"""Replay fingerprints: the same audio matches through gain, delay and the telephone band."""

from __future__ import annotations

import numpy as np

from singleid.voiceprint import audio, fingerprint


def _babble(seed: int, seconds: float = 4.0) -> audio.Samples:
    """Speech-like noise: random formant-ish bursts, different for every seed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16_000)
    noise = rng.normal(0, 1, n).astype(np.float32)
    envelope = np.repeat(rng.uniform(0, 1, n // 800 + 1), 800)[:n].astype(np.float32)
    return (0.1 * noise * envelope).astype(np.float32)


def test_the_same_recording_through_a_telephone_line_is_a_replay() -> None:
    original = _babble(1)
    line = audio.resample(audio.resample(original, 16_000, 8000), 8000, 16_000)
    replayed = np.concatenate([np.zeros(4000, np.float32), 0.4 * line])
    a, b = fingerprint.fingerprint(original), fingerprint.fingerprint(replayed)
    assert fingerprint.bit_error_rate(a, b) < 0.2
    assert fingerprint.is_replay(a, b)


def test_different_recordings_are_not_replays() -> None:
    a, b = fingerprint.fingerprint(_babble(1)), fingerprint.fingerprint(_babble(2))
    assert fingerprint.bit_error_rate(a, b) > 0.35
    assert not fingerprint.is_replay(a, b)


def test_fingerprints_round_trip_and_short_audio_gives_none() -> None:
    fp = fingerprint.fingerprint(_babble(3))
    assert np.array_equal(fingerprint.from_bytes(fingerprint.to_bytes(fp)), fp)
    assert len(fingerprint.fingerprint(np.zeros(100, np.float32))) == 0
