"""Speech checks with silero-vad: net speech, silence, clipping and level.

Every figure is measured on the 16 kHz waveform. A check that fails raises
FAILED_PRECONDITION: the request was well formed, but the recording cannot be
scored; the IVR asks the caller to speak again. The reason and the measured
figure travel in ``ErrorInfo.metadata``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

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

_local = threading.local()


def _vad_model() -> object:
    """One silero-vad model per thread: the model keeps state between windows."""
    model = getattr(_local, "model", None)
    if model is None:
        from silero_vad import load_silero_vad  # noqa: PLC0415 - heavy import

        model = load_silero_vad()
        _local.model = model
    return model


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
    import torch  # noqa: PLC0415
    from silero_vad import get_speech_timestamps  # noqa: PLC0415

    with torch.inference_mode():
        stamps = get_speech_timestamps(torch.from_numpy(samples), _vad_model(),
                                       sampling_rate=MODEL_RATE, speech_pad_ms=0)
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
