"""Where the real voice recordings are (``../shared/data/voice``), and audio helpers for tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile

from singleid.voiceprint import audio

ROOT = Path(__file__).resolve().parents[1]
VOICE_DIR = Path(os.environ.get("SINGLEID_TEST_VOICE_DIR", ROOT.parent / "shared/data/voice"))
VOXFORGE = VOICE_DIR / "voxforge"
FSDD = VOICE_DIR / "fsdd"
MISSING = f"the voice recordings are not at {VOICE_DIR} (see ../shared/data/voice/README.md)"


def voice_data_present() -> bool:
    return VOXFORGE.is_dir() and FSDD.is_dir()


def voxforge(speaker: str) -> list[Path]:
    return sorted((VOXFORGE / speaker).glob("*.flac"))


def read(path: Path) -> tuple[audio.Samples, int]:
    samples, rate = soundfile.read(str(path), dtype="float32")
    return np.asarray(samples, dtype=np.float32), int(rate)


def fsdd_concat(speaker: str, indices: range, digits: range = range(10)) -> audio.Samples:
    """One FSDD speaker's digits joined (0.15 s of silence between), 8 kHz: 3 s or more."""
    gap = np.zeros(int(0.15 * 8000), dtype=np.float32)
    parts: list[audio.Samples] = []
    for index in indices:
        for digit in digits:
            clip, _ = read(FSDD / speaker / f"{digit}_{speaker}_{index}.wav")
            parts += [clip, gap]
    return np.concatenate(parts)


def mulaw_encode(samples: audio.Samples) -> bytes:
    """G.711 mu-law by nearest table value (the decoder's inverse, for tests)."""
    order = np.argsort(audio.MULAW_TABLE)
    table = audio.MULAW_TABLE[order]
    pos = np.clip(np.searchsorted(table, samples), 1, len(table) - 1)
    nearer = np.where(np.abs(table[pos - 1] - samples) <= np.abs(table[pos] - samples),
                      pos - 1, pos)
    return bytes(order[nearer].astype(np.uint8))


def pcm16(samples: audio.Samples) -> bytes:
    return audio.encode_pcm16(samples)
