"""Speech checks with silero-vad: net speech, silence, clipping and level.

Every figure is measured on the 16 kHz waveform. A check that fails raises
FAILED_PRECONDITION: the request was well formed, but the recording cannot be
scored; the IVR asks the caller to speak again. The reason and the measured
figure travel in ``ErrorInfo.metadata``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from singleid.errors import FailedPrecondition
from singleid.voiceprint.audio import MODEL_RATE, Samples, Waveform

SILENCE_PEAK_DBFS = -60.0      # a recording whose loudest sample is below this is silence
LOW_LEVEL_DBFS = -65.0         # speech whose RMS is below this is too quiet
_VAD_PEAK_DBFS = -3.0          # the VAD hears the recording boosted to this peak (at most +50 dB)
_VAD_MAX_GAIN_DB = 50.0
CLIPPED_FRACTION = 0.01        # more than 1% of samples at full scale is clipping
_PAD_SAMPLES = MODEL_RATE // 50  # 20 ms kept around each speech segment
_EPS = 1e-10

_WINDOW = 512                  # silero-vad's frame at 16 kHz (32 ms)
_CONTEXT = 64                  # samples of the previous frame it prepends
_lock = threading.Lock()


class SequenceVad:
    """silero-vad over a whole utterance in one pass, instead of one call per 32 ms frame.

    The streaming model runs, per frame, a feature extractor and encoder that see
    only that frame (with 64 samples of context) and an LSTM cell that carries
    state. The frames are independent up to the cell, so they go through the
    encoder as one batch, the cell's weights run as an ``nn.LSTM`` over the
    sequence, and the decoder takes every step at once: the same probabilities
    (to float rounding) for an eighth of the time. No state is kept between
    calls, so one instance serves every thread.
    """

    def __init__(self) -> None:
        import torch  # noqa: PLC0415
        from silero_vad import load_silero_vad  # noqa: PLC0415 - heavy import

        self._model: Any = load_silero_vad()._model  # the 16 kHz network
        cell = self._model.decoder.rnn
        self._lstm = torch.nn.LSTM(cell.weight_hh.shape[1], cell.weight_hh.shape[1], 1)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self._lstm, f"{name}_l0").copy_(getattr(cell, name))
        self._lstm.eval()

    def probabilities(self, samples: Samples) -> list[float]:
        """The speech probability of each 32 ms frame (the last one zero-padded)."""
        import torch  # noqa: PLC0415

        count = (len(samples) + _WINDOW - 1) // _WINDOW
        frames = np.zeros((count, _WINDOW), dtype=np.float32)
        frames.reshape(-1)[:len(samples)] = samples
        context = np.zeros((count, _CONTEXT), dtype=np.float32)
        context[1:] = frames[:-1, -_CONTEXT:]
        with torch.inference_mode():
            batch = torch.from_numpy(np.concatenate([context, frames], axis=1))
            features = self._model.encoder(self._model.run_extractors(batch))  # frames x 128 x 1
            hidden, _ = self._lstm(features.squeeze(-1).unsqueeze(1))
            out = self._model.decoder.decoder(hidden.squeeze(1).unsqueeze(-1))
            return [float(p) for p in out.squeeze(1).mean(dim=1)]


_vad: SequenceVad | None = None


def _sequence_vad() -> SequenceVad:
    global _vad  # noqa: PLW0603 - one model per process, loaded on first use
    with _lock:
        if _vad is None:
            _vad = SequenceVad()
        return _vad


@dataclass(frozen=True)
class SpeechReport:
    seconds: float
    net_speech_seconds: float
    peak_dbfs: float
    speech_rms_dbfs: float
    clipped_fraction: float
    segments: tuple[tuple[int, int], ...]


def dbfs(value: float) -> float:
    return float(20.0 * np.log10(max(value, _EPS)))


def analyse(wave: Waveform) -> SpeechReport:
    """Measure a 16 kHz waveform: speech segments (silero-vad), level and clipping."""
    assert wave.sample_rate == MODEL_RATE
    samples = wave.samples
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    clipped = float(np.mean(np.abs(samples) >= wave.full_scale * 0.999)) if len(samples) else 0.0
    segments: tuple[tuple[int, int], ...] = ()
    if dbfs(peak) >= SILENCE_PEAK_DBFS:
        gain_db = min(_VAD_MAX_GAIN_DB, max(0.0, _VAD_PEAK_DBFS - dbfs(peak)))
        boosted = (samples * np.float32(10 ** (gain_db / 20))) if gain_db else samples
        segments = _speech_segments(boosted)
    voiced = _concat(samples, segments, pad=0)
    rms = float(np.sqrt(np.mean(np.square(voiced, dtype=np.float64)))) if len(voiced) else 0.0
    net = sum(end - start for start, end in segments) / MODEL_RATE
    return SpeechReport(seconds=wave.seconds, net_speech_seconds=net, peak_dbfs=dbfs(peak),
                        speech_rms_dbfs=dbfs(rms), clipped_fraction=clipped, segments=segments)


def _speech_segments(samples: Samples) -> tuple[tuple[int, int], ...]:
    """silero-vad's segments with its default settings, no padding (see :class:`SequenceVad`)."""
    from silero_vad.utils_vad import get_speech_timestamps_from_probs  # noqa: PLC0415

    if len(samples) == 0:
        return ()
    stamps = get_speech_timestamps_from_probs(
        _sequence_vad().probabilities(samples), sampling_rate=MODEL_RATE, speech_pad_ms=0,
        audio_length_samples=len(samples))
    return tuple((int(s["start"]), int(s["end"])) for s in stamps)


def _concat(samples: Samples, segments: tuple[tuple[int, int], ...], pad: int) -> Samples:
    if not segments:
        return np.zeros(0, dtype=np.float32)
    parts = [samples[max(0, start - pad):min(len(samples), end + pad)] for start, end in segments]
    return np.concatenate(parts).astype(np.float32, copy=False)


def speech_only(wave: Waveform, report: SpeechReport) -> Samples:
    """The speech segments joined, with a little context around each (for the embedding)."""
    return _concat(wave.samples, report.segments, pad=_PAD_SAMPLES)


def check(report: SpeechReport, *, min_net_speech: float, field: str) -> None:
    """Raise FAILED_PRECONDITION naming the field, the reason and the measured figure."""
    figures = {"net_speech_seconds": f"{report.net_speech_seconds:.2f}",
               "audio_seconds": f"{report.seconds:.2f}"}
    if report.peak_dbfs < SILENCE_PEAK_DBFS:
        raise FailedPrecondition(
            f"the recording is silent (peak {report.peak_dbfs:.1f} dBFS)", reason="AUDIO_SILENT",
            field=field, metadata={**figures, "peak_dbfs": f"{report.peak_dbfs:.1f}",
                                   "threshold_dbfs": f"{SILENCE_PEAK_DBFS:g}"})
    if report.clipped_fraction > CLIPPED_FRACTION:
        raise FailedPrecondition(
            f"{report.clipped_fraction:.1%} of the samples are clipped "
            f"(at most {CLIPPED_FRACTION:.0%})", reason="AUDIO_CLIPPED", field=field,
            metadata={**figures, "clipped_fraction": f"{report.clipped_fraction:.4f}",
                      "threshold_fraction": f"{CLIPPED_FRACTION:g}"})
    if report.segments and report.speech_rms_dbfs < LOW_LEVEL_DBFS:
        raise FailedPrecondition(
            f"the speech level is {report.speech_rms_dbfs:.1f} dBFS (at least "
            f"{LOW_LEVEL_DBFS:g})", reason="AUDIO_LEVEL_TOO_LOW", field=field,
            metadata={**figures, "speech_rms_dbfs": f"{report.speech_rms_dbfs:.1f}",
                      "threshold_dbfs": f"{LOW_LEVEL_DBFS:g}"})
    if report.net_speech_seconds < min_net_speech:
        raise FailedPrecondition(
            f"{report.net_speech_seconds:.2f} s of speech; at least {min_net_speech:g} s needed",
            reason="NOT_ENOUGH_SPEECH", field=field,
            metadata={**figures, "min_net_speech_seconds": f"{min_net_speech:g}"})
