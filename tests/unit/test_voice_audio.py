"""Audio in: G.711 tables, decoding; every malformed input gets a clear status naming the field."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import soundfile

from singleid.errors import InvalidArgument
from singleid.voiceprint import audio
from singleid.voiceprint.audio import AudioFormat, Encoding

PCM16K = AudioFormat(Encoding.PCM16LE, 16_000)


def _tone(seconds: float, rate: int = 16_000, level: float = 0.3) -> audio.Samples:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _wav(samples: audio.Samples, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_g711_tables_match_the_standard_decoder() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # noqa: PLC0415 - the reference, deprecated

    every_byte = bytes(range(256))
    mulaw = np.frombuffer(audioop.ulaw2lin(every_byte, 2), "<i2") / 32768.0
    alaw = np.frombuffer(audioop.alaw2lin(every_byte, 2), "<i2") / 32768.0
    assert np.array_equal(mulaw.astype(np.float32), audio.MULAW_TABLE)
    assert np.array_equal(alaw.astype(np.float32), audio.ALAW_TABLE)


@pytest.mark.parametrize("subtype", ["PCM_16", "ULAW", "ALAW"])
def test_wav_decodes_to_the_same_signal(subtype: str) -> None:
    tone = _tone(0.5, 8000)
    wave = audio.decode(_wav(tone, 8000, subtype), AudioFormat(Encoding.WAV))
    assert wave.sample_rate == 8000
    assert np.max(np.abs(wave.samples - tone)) < 0.02


def test_pcm_resamples_to_16k() -> None:
    wave = audio.decode(audio.encode_pcm16(_tone(1.0, 8000)), AudioFormat(Encoding.PCM16LE, 8000))
    assert audio.to_model_rate(wave).samples.shape == (16_000,)


def _reason(exc: pytest.ExceptionInfo[InvalidArgument]) -> tuple[str, str | None]:
    return exc.value.reason, exc.value.field


def test_empty_audio() -> None:
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(b"", PCM16K)
    assert _reason(exc) == ("AUDIO_EMPTY", "audio.content")


def test_odd_pcm_bytes_are_a_truncated_sample() -> None:
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(b"\x00\x01\x02", PCM16K)
    assert _reason(exc) == ("AUDIO_TRUNCATED", "audio.content")


def test_truncated_wav() -> None:
    data = _wav(_tone(1.0), 16_000)
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(data[: len(data) // 2], AudioFormat(Encoding.WAV))
    assert _reason(exc) == ("AUDIO_TRUNCATED", "audio.content")
    assert exc.value.metadata["declared_bytes"] == str(32_000)


def test_garbage_is_not_a_wav() -> None:
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(b"RIFX" + bytes(100), AudioFormat(Encoding.WAV))
    assert _reason(exc) == ("AUDIO_UNREADABLE", "audio.content")


def test_a_wav_header_rate_that_contradicts_the_config() -> None:
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(_wav(_tone(0.5), 16_000), AudioFormat(Encoding.WAV, 8000))
    assert _reason(exc) == ("SAMPLE_RATE_MISMATCH", "audio.config.sample_rate_hertz")
    assert exc.value.metadata["header_sample_rate"] == "16000"


def test_an_unsupported_rate_in_the_header() -> None:
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(_wav(_tone(0.5, 12_345), 12_345), AudioFormat(Encoding.WAV))
    assert _reason(exc) == ("UNSUPPORTED_SAMPLE_RATE", "audio.content")


@pytest.mark.parametrize(("fmt", "field"), [
    (AudioFormat(Encoding.PCM16LE, 44_100), "audio.config.sample_rate_hertz"),
    (AudioFormat(Encoding.MULAW, 16_000), "audio.config.sample_rate_hertz"),
    (AudioFormat(Encoding.ALAW, 0), "audio.config.sample_rate_hertz"),
])
def test_raw_encodings_need_their_rates(fmt: AudioFormat, field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(b"\x00\x00", fmt)
    assert _reason(exc) == ("UNSUPPORTED_SAMPLE_RATE", field)


def test_flac_sent_as_wav_is_an_encoding_mismatch() -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, _tone(0.5), 16_000, format="FLAC")
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(buffer.getvalue(), AudioFormat(Encoding.WAV))
    assert exc.value.reason in {"ENCODING_MISMATCH", "AUDIO_UNREADABLE"}


def test_ten_minutes_of_audio_is_refused_before_decoding() -> None:
    ten_minutes = bytes(2 * 16_000 * 600)
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(ten_minutes, PCM16K)
    assert _reason(exc) == ("AUDIO_TOO_LONG", "audio.content")


def test_a_long_wav_is_refused_from_its_header() -> None:
    # 8 kHz mu-law: 61 s fits in the byte limit, so the header's length is what refuses it.
    data = _wav(np.zeros(8000 * 61, dtype=np.float32), 8000, "ULAW")
    assert len(data) < audio.MAX_AUDIO_BYTES
    with pytest.raises(InvalidArgument) as exc:
        audio.decode(data, AudioFormat(Encoding.WAV))
    assert _reason(exc) == ("AUDIO_TOO_LONG", "audio.content")


def test_buffer_refuses_a_large_chunk_and_a_long_stream() -> None:
    buffer = audio.AudioBuffer(PCM16K)
    with pytest.raises(InvalidArgument) as exc:
        buffer.add(bytes(audio.MAX_CHUNK_BYTES + 1))
    assert _reason(exc) == ("CHUNK_TOO_LARGE", "audio_chunk")
    chunk = bytes(audio.MAX_CHUNK_BYTES)
    def fill() -> None:
        for _ in range(1000):
            buffer.add(chunk)

    with pytest.raises(InvalidArgument) as exc:
        fill()
    assert _reason(exc) == ("AUDIO_TOO_LONG", "audio_chunk")
    # Bounded: it never held more than the limit.
    assert buffer.size <= audio.max_bytes(PCM16K)
