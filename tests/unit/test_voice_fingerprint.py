"""Replay fingerprints: the same audio matches through gain, delay and the telephone band."""

from __future__ import annotations

import numpy as np
import pytest

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


def _brute_force_ber(a: fingerprint.Fingerprint, b: fingerprint.Fingerprint) -> float:
    """Every alignment one by one: what the FFT form must equal."""
    best = 1.0
    for offset in range(-(len(b) - fingerprint.MIN_OVERLAP_FRAMES),
                        len(a) - fingerprint.MIN_OVERLAP_FRAMES + 1):
        a_part, b_part = a[max(0, offset):], b[max(0, -offset):]
        n = min(len(a_part), len(b_part))
        errors = sum(bin(int(x)).count("1") for x in np.bitwise_xor(a_part[:n], b_part[:n]))
        best = min(best, errors / (16 * n))
    return best


@pytest.mark.parametrize(("len_a", "len_b", "shift"), [(300, 700, 40), (700, 300, 0),
                                                        (125, 125, 0), (260, 261, 7)])
def test_the_fft_bit_error_rate_equals_the_brute_force_one(len_a: int, len_b: int,
                                                          shift: int) -> None:
    rng = np.random.default_rng(len_a + len_b)
    a = rng.integers(0, 1 << 16, len_a).astype(np.uint16)
    b = rng.integers(0, 1 << 16, len_b).astype(np.uint16)
    common = min(len_a, len_b) - shift - 5
    b[shift:shift + common] = a[:common] ^ 3  # a copy with two bits flipped per frame
    assert fingerprint.bit_error_rate(a, b) == pytest.approx(_brute_force_ber(a, b), abs=1e-12)
