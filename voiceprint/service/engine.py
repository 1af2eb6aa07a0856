"""The signal path of one request: decode, resample, check the speech, embed, fingerprint.

CPU-bound and thread-safe; the API runs it in the context's bounded pool.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from singleid.errors import FailedPrecondition
from singleid.voiceprint import audio, fingerprint, speech
from singleid.voiceprint.backends import SpeakerEncoder, load_backend
from singleid.voiceprint.calibration import CalibrationTable, OperatingPoint, bundled_table
from singleid.voiceprint.config import VoiceSettings
from singleid.voiceprint.service.types import AudioInput

log = logging.getLogger(__name__)


class CalibrationError(RuntimeError):
    """The threshold table is missing or belongs to another model."""


@dataclass(frozen=True)
class Processed:
    embedding: audio.Samples
    net_speech_seconds: float
    fingerprint: fingerprint.Fingerprint


class VoiceEngine:
    """The loaded model and its calibration; one per process, shared by every request."""

    def __init__(self, settings: VoiceSettings, encoder: SpeakerEncoder | None = None,
                 table: CalibrationTable | None = None) -> None:
        self.settings = settings
        self.encoder = encoder or load_backend(settings.backend, settings.ecapa_dir,
                                               settings.torch_threads)
        self.table = table or self._load_table()
        self.operating_point = self._point(settings.operating_point)
        self.watchlist_point = self._raw_point(settings.watchlist_operating_point)

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    @property
    def model_version(self) -> str:
        return self.encoder.model_version

    def _load_table(self) -> CalibrationTable:
        if self.settings.calibration is not None:
            table = CalibrationTable.load(self.settings.calibration)
        else:
            bundled = bundled_table(self.encoder.model_id)
            if bundled is None:
                raise CalibrationError(
                    f"no calibration for model {self.encoder.model_id}: run `singleid voiceprint "
                    "calibrate DIR` and set SINGLEID_VOICE_CALIBRATION to the table it writes")
            table = bundled
        if (table.model_id, table.model_version) != (self.encoder.model_id,
                                                     self.encoder.model_version):
            raise CalibrationError(
                f"the calibration table is for {table.model_id}/{table.model_version}, the "
                f"backend is {self.encoder.model_id}/{self.encoder.model_version}: calibrate "
                "again")
        return table

    def _point(self, name: str) -> OperatingPoint:
        point = self.table.operating_points.get(name)
        if point is None:
            raise CalibrationError(f"operating point {name!r} is not in the calibration table "
                                   f"(has {', '.join(sorted(self.table.operating_points))})")
        return point

    def _raw_point(self, name: str) -> OperatingPoint:
        """An operating point on cosine scores: the watchlist search is not normalised."""
        point = self.table.raw_point(name)
        if point is None:
            raise CalibrationError(f"operating point {name!r} on raw scores is not in the "
                                   "calibration table: calibrate again")
        return point

    def process(self, item: AudioInput, *, field: str, min_speech: float) -> Processed:
        """Decode, check and embed one recording (errors name ``field``)."""
        return process(self.encoder, item, field=field, min_speech=min_speech)


def decode(item: AudioInput, field: str) -> audio.Waveform:
    """Decode and resample to 16 kHz (cheap); INVALID_ARGUMENT naming the field."""
    return audio.to_model_rate(audio.decode(item.content, item.format, field))


def embed(encoder: SpeakerEncoder, wave: audio.Waveform, *, field: str,
          min_speech: float) -> Processed:
    """The speech checks (FAILED_PRECONDITION naming the field), the embedding, the fingerprint."""
    report = speech.analyse(wave)
    speech.check(report, min_net_speech=min_speech, field=field)
    embedding = encoder.embed(speech.speech_only(wave, report))
    if not np.all(np.isfinite(embedding)):
        raise FailedPrecondition("no usable voice in the recording", reason="NO_EMBEDDING",
                                 field=field)
    return Processed(embedding=embedding, net_speech_seconds=report.net_speech_seconds,
                     fingerprint=fingerprint.fingerprint(wave.samples))


def process(encoder: SpeakerEncoder, item: AudioInput, *, field: str,
            min_speech: float) -> Processed:
    return embed(encoder, decode(item, field), field=field, min_speech=min_speech)
