"""A typed client for ``singleid.v1.VoiceprintService``: the IVR's side of the streams.

The streaming calls send a config message and then the audio in chunks (20 ms
of audio each by default, optionally paced at real time, as an IVR does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias, TypeVar

import grpc

from singleid.clients.base import (
    DEFAULT_ATTEMPTS,
    BaseClient,
    _error,
    new_idempotency_key,
)
from singleid.v1 import voiceprint_pb2, voiceprint_pb2_grpc

Encoding: TypeAlias = voiceprint_pb2.AudioEncoding.ValueType
R = TypeVar("R")
DEFAULT_VOICE_TIMEOUT_SECONDS = 90.0
CHUNK_SECONDS = 0.02


def chunks(content: bytes, bytes_per_chunk: int) -> Iterator[bytes]:
    for start in range(0, len(content), bytes_per_chunk):
        yield content[start:start + bytes_per_chunk]


def chunk_bytes(encoding: Encoding, sample_rate: int) -> int:
    """Bytes in 20 ms of raw audio (containers: 640, as 20 ms of 16 kHz PCM)."""
    width = 2 if encoding == voiceprint_pb2.AUDIO_ENCODING_PCM16LE else 1
    if encoding in (voiceprint_pb2.AUDIO_ENCODING_WAV, voiceprint_pb2.AUDIO_ENCODING_FLAC):
        return 640
    return max(1, int(sample_rate * CHUNK_SECONDS) * width)


class VoiceprintClient(BaseClient):
    def __init__(self, target: str = "127.0.0.1:50051", *, channel: grpc.Channel | None = None,
                 timeout: float = DEFAULT_VOICE_TIMEOUT_SECONDS,
                 attempts: int = DEFAULT_ATTEMPTS) -> None:
        super().__init__(target, channel=channel, timeout=timeout, attempts=attempts)
        self.stub = voiceprint_pb2_grpc.VoiceprintServiceStub(self.channel)

    def __enter__(self) -> VoiceprintClient:
        return self

    def _stream(self, method: Callable[..., R], requests: Callable[[], Iterator[Any]]) -> R:
        try:
            return method(requests(), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def enroll_stream(self, customer_id: str, call_id: str, utterances: Sequence[bytes],
                      encoding: Encoding, sample_rate: int = 0, *, realtime: bool = False,
                      chunk_size: int = 0, idempotency_key: str = ""
                      ) -> voiceprint_pb2.Voiceprint:
        size = chunk_size or chunk_bytes(encoding, sample_rate)
        config = voiceprint_pb2.EnrollConfig(
            customer_id=customer_id, call_id=call_id,
            audio=voiceprint_pb2.AudioConfig(encoding=encoding, sample_rate_hertz=sample_rate),
            idempotency_key=idempotency_key or new_idempotency_key())

        def requests() -> Iterator[voiceprint_pb2.EnrollStreamRequest]:
            yield voiceprint_pb2.EnrollStreamRequest(config=config)
            for i, content in enumerate(utterances):
                if i:
                    yield voiceprint_pb2.EnrollStreamRequest(end_of_utterance=True)
                for piece in chunks(content, size):
                    if realtime:
                        time.sleep(CHUNK_SECONDS)
                    yield voiceprint_pb2.EnrollStreamRequest(audio_chunk=piece)

        return self._stream(self.stub.Enroll, requests)

    def verify_stream(self, customer_id: str, call_id: str, content: bytes, encoding: Encoding,
                      sample_rate: int = 0, *, realtime: bool = False, chunk_size: int = 0
                      ) -> voiceprint_pb2.VerifyResponse:
        size = chunk_size or chunk_bytes(encoding, sample_rate)
        config = voiceprint_pb2.VerifyConfig(
            customer_id=customer_id, call_id=call_id,
            audio=voiceprint_pb2.AudioConfig(encoding=encoding, sample_rate_hertz=sample_rate))

        def requests() -> Iterator[voiceprint_pb2.VerifyStreamRequest]:
            yield voiceprint_pb2.VerifyStreamRequest(config=config)
            for piece in chunks(content, size):
                if realtime:
                    time.sleep(CHUNK_SECONDS)
                yield voiceprint_pb2.VerifyStreamRequest(audio_chunk=piece)

        return self._stream(self.stub.Verify, requests)

    def enroll_audio(self, customer_id: str, call_id: str, utterances: Sequence[bytes],
                     encoding: Encoding, sample_rate: int = 0, *, idempotency_key: str = ""
                     ) -> voiceprint_pb2.Voiceprint:
        config = voiceprint_pb2.AudioConfig(encoding=encoding, sample_rate_hertz=sample_rate)
        request = voiceprint_pb2.EnrollAudioRequest(
            customer_id=customer_id, call_id=call_id,
            utterances=[voiceprint_pb2.Audio(config=config, content=c) for c in utterances],
            idempotency_key=idempotency_key or new_idempotency_key())
        return self._call(self.stub.EnrollAudio, request, idempotent=True)

    def verify_audio(self, customer_id: str, call_id: str, content: bytes, encoding: Encoding,
                     sample_rate: int = 0) -> voiceprint_pb2.VerifyResponse:
        request = voiceprint_pb2.VerifyAudioRequest(
            customer_id=customer_id, call_id=call_id, audio=voiceprint_pb2.Audio(
                config=voiceprint_pb2.AudioConfig(encoding=encoding,
                                                  sample_rate_hertz=sample_rate),
                content=content))
        # Not retried: each verification counts against the rate limits.
        return self._call(self.stub.VerifyAudio, request, idempotent=False)

    def get_voiceprint(self, customer_id: str) -> voiceprint_pb2.Voiceprint:
        return self._call(self.stub.GetVoiceprint,
                          voiceprint_pb2.GetVoiceprintRequest(customer_id=customer_id),
                          idempotent=True)

    def delete_voiceprint(self, customer_id: str, *, idempotency_key: str = "") -> None:
        self._call(self.stub.DeleteVoiceprint, voiceprint_pb2.DeleteVoiceprintRequest(
            customer_id=customer_id, idempotency_key=idempotency_key or new_idempotency_key()),
            idempotent=True)

    def add_to_watchlist(self, label: str, content: bytes, encoding: Encoding,
                         sample_rate: int = 0, *, idempotency_key: str = ""
                         ) -> voiceprint_pb2.WatchlistEntry:
        request = voiceprint_pb2.CreateWatchlistEntryRequest(
            label=label, audio=voiceprint_pb2.Audio(
                config=voiceprint_pb2.AudioConfig(encoding=encoding,
                                                  sample_rate_hertz=sample_rate),
                content=content), idempotency_key=idempotency_key or new_idempotency_key())
        return self._call(self.stub.CreateWatchlistEntry, request, idempotent=True)

    def delete_watchlist_entry(self, name: str, *, idempotency_key: str = "") -> None:
        self._call(self.stub.DeleteWatchlistEntry, voiceprint_pb2.DeleteWatchlistEntryRequest(
            name=name, idempotency_key=idempotency_key or new_idempotency_key()),
            idempotent=True)
