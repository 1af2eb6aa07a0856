"""Audio fingerprints for replay detection; the raw audio is never kept.

A Haitsma-Kalker style binary fingerprint of the telephone band: the 16 kHz
signal's power spectrum in 17 bands between 300 and 3400 Hz (so an 8 kHz
re-recording of the same audio still matches), 64 ms frames every 8 ms; each
frame gives 16 bits, the signs of the band-energy differences across frequency
and time. Two recordings are the same audio when, at their best alignment,
fewer than ``REPLAY_BIT_ERROR_RATE`` of the bits differ over at least
``MIN_OVERLAP_FRAMES`` frames. Different takes of the same words by the same
speaker differ in about half of their bits.

A fingerprint cannot be turned back into audio: it keeps one bit per band
difference, not the spectrum.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from singleid.voiceprint.audio import MODEL_RATE, Samples

FRAME = 1024           # 64 ms at 16 kHz
HOP = 128              # 8 ms
BANDS = 17
LOW_HZ, HIGH_HZ = 300.0, 3400.0
MAX_FRAMES = 3750      # about 30 s
MIN_OVERLAP_FRAMES = 125  # about 1 s
REPLAY_BIT_ERROR_RATE = 0.25

Fingerprint = npt.NDArray[np.uint16]


def fingerprint(samples: Samples) -> Fingerprint:
    if len(samples) < FRAME + 2 * HOP:
        return np.zeros(0, dtype=np.uint16)
    n = min(1 + (len(samples) - FRAME) // HOP, MAX_FRAMES + 1)
    index = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    frames = samples[index] * np.hanning(FRAME).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(FRAME, 1.0 / MODEL_RATE)
    edges = np.geomspace(LOW_HZ, HIGH_HZ, BANDS + 1)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
                      for lo, hi in itertools.pairwise(edges)], axis=1)
    energy = np.log(bands + 1e-10)
    diff = energy[:, :-1] - energy[:, 1:]           # across frequency: 16 values
    bits = (diff[1:] - diff[:-1]) > 0               # across time
    weights = (1 << np.arange(BANDS - 1)).astype(np.uint32)
    return np.asarray((bits * weights).sum(axis=1), dtype=np.uint16)


def to_bytes(fp: Fingerprint) -> bytes:
    return fp.astype("<u2").tobytes()


def from_bytes(data: bytes) -> Fingerprint:
    return np.frombuffer(data, dtype="<u2").astype(np.uint16)


def _signs(fp: Fingerprint) -> npt.NDArray[np.float64]:
    """Each frame's 16 bits as +1/-1 (frames x 16)."""
    bits = (fp[:, None].astype(np.uint32) >> np.arange(16, dtype=np.uint32)) & 1
    return np.asarray(bits * 2.0 - 1.0, dtype=np.float64)


def bit_error_rate(a: Fingerprint, b: Fingerprint) -> float:
    """The lowest bit error rate over alignments that overlap at least MIN_OVERLAP_FRAMES.

    Every alignment at once: with bits as +1/-1, agreements minus disagreements at
    an offset is the cross-correlation of the two sign sequences, summed over the
    16 bit positions, which one FFT gives for all offsets.
    """
    if min(len(a), len(b)) < MIN_OVERLAP_FRAMES:
        return 1.0
    size = len(a) + len(b) - 1
    padded = 1 << (size - 1).bit_length()  # a power of two: the FFT's fast sizes
    spectrum = (np.fft.rfft(_signs(a), padded, axis=0)
                * np.fft.rfft(_signs(b)[::-1], padded, axis=0))
    correlation = np.rint(np.fft.irfft(spectrum, padded, axis=0)[:size].sum(axis=1))
    offsets = np.arange(size) - (len(b) - 1)  # a[i + offset] is aligned with b[i]
    overlap = np.minimum(len(a) - np.maximum(offsets, 0), len(b) - np.maximum(-offsets, 0))
    usable = overlap >= MIN_OVERLAP_FRAMES
    errors = (16 * overlap[usable] - correlation[usable]) / 2
    return float(np.min(errors / (16 * overlap[usable])))


def is_replay(a: Fingerprint, b: Fingerprint) -> bool:
    return bit_error_rate(a, b) < REPLAY_BIT_ERROR_RATE
