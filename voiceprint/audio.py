"""Audio in: decoding, limits and resampling to the models' 16 kHz.

Encodings: raw PCM16 little-endian (8 or 16 kHz), G.711 mu-law and A-law
(8 kHz), and WAV or FLAC files (libsndfile through ``soundfile``). Everything
is decoded to mono float32 in [-1, 1] and resampled with torchaudio.

Limits (the contract; the README repeats them):

- a stream or a whole request carries at most ``MAX_AUDIO_SECONDS`` of audio
  and at most ``MAX_AUDIO_BYTES`` of encoded bytes;
- a streamed chunk is at most ``MAX_CHUNK_BYTES``;
- an enrollment has at most ``MAX_UTTERANCES`` utterances.

A stream is stopped as soon as it crosses a limit, so memory stays bounded by
``MAX_AUDIO_BYTES`` per call.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import soundfile

from singleid.errors import InvalidArgument

Samples = npt.NDArray[np.float32]

MODEL_RATE = 16_000
MAX_AUDIO_SECONDS = 60.0
MAX_AUDIO_BYTES = 3 * 1024 * 1024
MAX_CHUNK_BYTES = 64 * 1024
MAX_UTTERANCES = 10
RAW_RATES = {8_000, 16_000}
CONTAINER_RATES = {8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000}
# The largest magnitude each encoding can express, as a fraction of full scale;
# a sample within 0.1% of it counts as clipped.
_FULL_SCALE = {"PCM16LE": 32767 / 32768, "MULAW": 32124 / 32768, "ALAW": 32256 / 32768}


class Encoding(StrEnum):
    PCM16LE = "PCM16LE"
    MULAW = "MULAW"
    ALAW = "ALAW"
    WAV = "WAV"
    FLAC = "FLAC"

    @property
    def is_container(self) -> bool:
        return self in (Encoding.WAV, Encoding.FLAC)


@dataclass(frozen=True)
class AudioFormat:
    encoding: Encoding
    sample_rate: int = 0  # 0: from the container's header

    def bytes_per_second(self) -> int:
        """Encoded bytes per second for raw encodings; 0 for containers."""
        if self.encoding is Encoding.PCM16LE:
            return 2 * self.sample_rate
        if self.encoding in (Encoding.MULAW, Encoding.ALAW):
            return self.sample_rate
        return 0


@dataclass(frozen=True)
class Waveform:
    """Mono float32 samples at ``sample_rate``; ``full_scale`` is the codec's largest value."""

    samples: Samples
    sample_rate: int
    full_scale: float = 32767 / 32768

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


def check_format(fmt: AudioFormat, field: str) -> None:
    """INVALID_ARGUMENT naming the field when an encoding and rate don't go together."""
    rate = fmt.sample_rate
    if fmt.encoding is Encoding.PCM16LE and rate not in RAW_RATES:
        raise InvalidArgument(f"PCM16LE needs sample_rate_hertz 8000 or 16000, got {rate}",
                              field=f"{field}.sample_rate_hertz",
                              reason="UNSUPPORTED_SAMPLE_RATE", metadata={"sample_rate": str(rate)})
    if fmt.encoding in (Encoding.MULAW, Encoding.ALAW) and rate != 8_000:
        raise InvalidArgument(f"{fmt.encoding} needs sample_rate_hertz 8000, got {rate}",
                              field=f"{field}.sample_rate_hertz",
                              reason="UNSUPPORTED_SAMPLE_RATE", metadata={"sample_rate": str(rate)})
    if fmt.encoding.is_container and rate and rate not in CONTAINER_RATES:
        raise InvalidArgument(f"unsupported sample_rate_hertz {rate}",
                              field=f"{field}.sample_rate_hertz",
                              reason="UNSUPPORTED_SAMPLE_RATE", metadata={"sample_rate": str(rate)})


def max_bytes(fmt: AudioFormat) -> int:
    """The most encoded bytes a call may send in this format."""
    per_second = fmt.bytes_per_second()
    if per_second:
        return min(MAX_AUDIO_BYTES, int(per_second * MAX_AUDIO_SECONDS))
    return MAX_AUDIO_BYTES


class AudioBuffer:
    """Collects streamed chunks, refusing a chunk or a total over the limits."""

    def __init__(self, fmt: AudioFormat, field: str = "audio_chunk") -> None:
        self.format = fmt
        self.field = field
        self._limit = max_bytes(fmt)
        self._parts: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if len(chunk) > MAX_CHUNK_BYTES:
            raise InvalidArgument(
                f"a chunk may hold at most {MAX_CHUNK_BYTES} bytes, got {len(chunk)}",
                field=self.field, reason="CHUNK_TOO_LARGE",
                metadata={"limit_bytes": str(MAX_CHUNK_BYTES), "chunk_bytes": str(len(chunk))})
        if self.size + len(chunk) > self._limit:
            raise too_long(self.field, self.size + len(chunk), self._limit)
        self._parts.append(chunk)
        self.size += len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return data


def too_long(field: str, received_bytes: int, limit_bytes: int) -> InvalidArgument:
    return InvalidArgument(
        f"audio over the limit of {MAX_AUDIO_SECONDS:g} s / {limit_bytes} bytes",
        field=field, reason="AUDIO_TOO_LONG",
        metadata={"limit_seconds": f"{MAX_AUDIO_SECONDS:g}", "limit_bytes": str(limit_bytes),
                  "received_bytes": str(received_bytes)})


def decode(content: bytes, fmt: AudioFormat, field: str = "audio") -> Waveform:
    """Decode to mono float32 at the audio's own rate; INVALID_ARGUMENT on anything malformed."""
    check_format(fmt, f"{field}.config")
    if not content:
        raise InvalidArgument("no audio", field=f"{field}.content", reason="AUDIO_EMPTY")
    if len(content) > max_bytes(fmt):
        raise too_long(f"{field}.content", len(content), max_bytes(fmt))
    if fmt.encoding is Encoding.PCM16LE:
        if len(content) % 2:
            raise InvalidArgument("PCM16LE audio has an odd number of bytes (truncated sample)",
                                  field=f"{field}.content", reason="AUDIO_TRUNCATED")
        samples = np.frombuffer(content, dtype="<i2").astype(np.float32) / 32768.0
        wave = Waveform(samples, fmt.sample_rate, _FULL_SCALE["PCM16LE"])
    elif fmt.encoding is Encoding.MULAW:
        wave = Waveform(MULAW_TABLE[np.frombuffer(content, dtype=np.uint8)], fmt.sample_rate,
                        _FULL_SCALE["MULAW"])
    elif fmt.encoding is Encoding.ALAW:
        wave = Waveform(ALAW_TABLE[np.frombuffer(content, dtype=np.uint8)], fmt.sample_rate,
                        _FULL_SCALE["ALAW"])
    else:
        wave = _decode_container(content, fmt, field)
    if wave.seconds > MAX_AUDIO_SECONDS:
        raise InvalidArgument(
            f"{wave.seconds:.1f} s of audio; the limit is {MAX_AUDIO_SECONDS:g} s",
            field=f"{field}.content", reason="AUDIO_TOO_LONG",
            metadata={"limit_seconds": f"{MAX_AUDIO_SECONDS:g}",
                      "audio_seconds": f"{wave.seconds:.2f}"})
    if len(wave.samples) == 0:
        raise InvalidArgument("no audio samples", field=f"{field}.content", reason="AUDIO_EMPTY")
    return wave


def _decode_container(content: bytes, fmt: AudioFormat, field: str) -> Waveform:
    if fmt.encoding is Encoding.WAV:
        _check_riff(content, f"{field}.content")
    try:
        with soundfile.SoundFile(io.BytesIO(content)) as sound:
            kind = sound.format
            subtype = sound.subtype
            rate = int(sound.samplerate)
            channels = int(sound.channels)
            if kind != fmt.encoding.value:
                raise InvalidArgument(f"the content is {kind}, not {fmt.encoding.value}",
                                      field=f"{field}.config.encoding",
                                      reason="ENCODING_MISMATCH", metadata={"detected": kind})
            if sound.frames > MAX_AUDIO_SECONDS * max(rate, 1) + 1:
                raise InvalidArgument(
                    f"{sound.frames / max(rate, 1):.1f} s of audio; the limit is "
                    f"{MAX_AUDIO_SECONDS:g} s", field=f"{field}.content",
                    reason="AUDIO_TOO_LONG",
                    metadata={"limit_seconds": f"{MAX_AUDIO_SECONDS:g}",
                              "audio_seconds": f"{sound.frames / max(rate, 1):.2f}"})
            data = sound.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise InvalidArgument(f"not a readable {fmt.encoding.value} file: {_short(exc)}",
                              field=f"{field}.content", reason="AUDIO_UNREADABLE") from None
    if rate not in CONTAINER_RATES:
        raise InvalidArgument(f"the header's sample rate {rate} Hz is not supported",
                              field=f"{field}.content", reason="UNSUPPORTED_SAMPLE_RATE",
                              metadata={"sample_rate": str(rate)})
    if fmt.sample_rate and fmt.sample_rate != rate:
        raise InvalidArgument(
            f"sample_rate_hertz {fmt.sample_rate} differs from the header's {rate} Hz",
            field=f"{field}.config.sample_rate_hertz", reason="SAMPLE_RATE_MISMATCH",
            metadata={"header_sample_rate": str(rate), "sample_rate": str(fmt.sample_rate)})
    if channels > 2:
        raise InvalidArgument(f"{channels} channels; send mono (or stereo)",
                              field=f"{field}.content", reason="TOO_MANY_CHANNELS")
    samples = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    scale = _FULL_SCALE.get({"ULAW": "MULAW", "ALAW": "ALAW"}.get(subtype, "PCM16LE"), 1.0)
    return Waveform(samples, rate, scale)


def _check_riff(content: bytes, field: str) -> None:
    """A WAV whose data chunk promises more bytes than it has is truncated."""
    if len(content) < 12 or content[:4] not in (b"RIFF", b"RF64") or content[8:12] != b"WAVE":
        raise InvalidArgument("not a WAV file (no RIFF/WAVE header)", field=field,
                              reason="AUDIO_UNREADABLE")
    if content[:4] == b"RF64":
        return
    offset = 12
    while offset + 8 <= len(content):
        chunk_id = content[offset:offset + 4]
        (size,) = struct.unpack_from("<I", content, offset + 4)
        body = offset + 8
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF are what streaming writers put before they know the size.
            if size not in (0, 0xFFFFFFFF) and body + size > len(content):
                raise InvalidArgument(
                    f"the WAV data chunk declares {size} bytes but {len(content) - body} "
                    "are present", field=field, reason="AUDIO_TRUNCATED",
                    metadata={"declared_bytes": str(size),
                              "present_bytes": str(len(content) - body)})
            return
        offset = body + size + (size & 1)
    raise InvalidArgument("the WAV file has no data chunk (truncated?)", field=field,
                          reason="AUDIO_TRUNCATED")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def to_model_rate(wave: Waveform) -> Waveform:
    """Resample to 16 kHz with torchaudio (8 kHz telephone audio goes up)."""
    if wave.sample_rate == MODEL_RATE:
        return wave
    import torch  # noqa: PLC0415 - heavy; only where audio is processed
    import torchaudio.functional as taf  # noqa: PLC0415

    resampled = taf.resample(torch.from_numpy(wave.samples), wave.sample_rate, MODEL_RATE)
    return Waveform(resampled.numpy().astype(np.float32), MODEL_RATE, wave.full_scale)


def resample(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    if from_rate == to_rate:
        return samples
    import torch  # noqa: PLC0415
    import torchaudio.functional as taf  # noqa: PLC0415

    out = taf.resample(torch.from_numpy(np.ascontiguousarray(samples)), from_rate, to_rate)
    return np.asarray(out.numpy(), dtype=np.float32)


# -- G.711 (ITU-T) decoding tables, so nothing depends on the deprecated audioop --

def _mulaw(byte: int) -> int:
    u = ~byte & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return -magnitude if u & 0x80 else magnitude


def _alaw(byte: int) -> int:
    a = byte ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    segment_base = 8 if exponent == 0 else 0x108
    magnitude = ((mantissa << 4) + segment_base) << max(exponent - 1, 0)
    return magnitude if a & 0x80 else -magnitude


MULAW_TABLE: Samples = np.array([_mulaw(b) for b in range(256)], dtype=np.float32) / 32768.0
ALAW_TABLE: Samples = np.array([_alaw(b) for b in range(256)], dtype=np.float32) / 32768.0


def encode_pcm16(samples: Samples) -> bytes:
    """Float samples to PCM16LE bytes (for clients, tests and the evaluation)."""
    clipped = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
    return clipped.tobytes()


def encode_wav(samples: Samples, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
