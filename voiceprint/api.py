"""The gRPC servicer for VoiceprintService: proto in, call the service, proto out.

Streams are read chunk by chunk into bounded buffers (``audio.AudioBuffer``):
a chunk or a stream over the limits stops the call at once with
INVALID_ARGUMENT naming the field. Each call has a server-side deadline
(``SINGLEID_VOICE_DEADLINE_SECONDS``) besides the client's. Decoding, the speech
checks and the model run in the context's bounded thread pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2

from singleid import caller as callers
from singleid import callproof
from singleid.errors import InvalidArgument
from singleid.prototime import timestamp
from singleid.server.context import AppContext
from singleid.v1 import voiceprint_pb2, voiceprint_pb2_grpc
from singleid.voiceprint import audio
from singleid.voiceprint.backends import BackendUnavailable
from singleid.voiceprint.config import VoiceSettings
from singleid.voiceprint.service import CalibrationError, VoiceEngine, VoiceprintService
from singleid.voiceprint.service.types import (
    AudioInput,
    Decision,
    VerifyResult,
    VoiceprintView,
    WatchlistEntryView,
)

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")

_ENCODINGS = {
    voiceprint_pb2.AUDIO_ENCODING_PCM16LE: audio.Encoding.PCM16LE,
    voiceprint_pb2.AUDIO_ENCODING_MULAW: audio.Encoding.MULAW,
    voiceprint_pb2.AUDIO_ENCODING_ALAW: audio.Encoding.ALAW,
    voiceprint_pb2.AUDIO_ENCODING_WAV: audio.Encoding.WAV,
    voiceprint_pb2.AUDIO_ENCODING_FLAC: audio.Encoding.FLAC,
}
_DECISIONS = {Decision.ACCEPT: voiceprint_pb2.VerifyResponse.DECISION_ACCEPT,
              Decision.REJECT: voiceprint_pb2.VerifyResponse.DECISION_REJECT}
WATCHLIST_PREFIX = "watchlist/"


def register(context: AppContext, server: grpc.aio.Server) -> list[str]:
    """The ``singleid.services`` entry point; refuses to start without a working voice stack."""
    settings = VoiceSettings()
    try:
        engine = VoiceEngine(settings)
    except (BackendUnavailable, CalibrationError) as exc:
        log.critical("the voice service cannot start: %s", exc)
        raise SystemExit(f"singleid: the voice service cannot start: {exc}") from None
    service = VoiceprintService(context.db, context.keyring, engine)
    voiceprint_pb2_grpc.add_VoiceprintServiceServicer_to_server(
        VoiceprintServicer(context, service, settings), server)
    return [voiceprint_pb2.DESCRIPTOR.services_by_name["VoiceprintService"].full_name]


class VoiceprintServicer(voiceprint_pb2_grpc.VoiceprintServiceServicer):
    def __init__(self, context: AppContext, service: VoiceprintService,
                 settings: VoiceSettings) -> None:
        self._run = context.run_blocking
        self._keyring = context.keyring
        self._service = service
        self._deadline = settings.deadline_seconds

    async def _within_deadline(self, work: Awaitable[T], context: Context) -> T:
        try:
            async with asyncio.timeout(self._deadline):
                return await work
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"the call took longer than the server's limit of "
                                f"{self._deadline:g} s")
            raise AssertionError("unreachable") from None

    async def Enroll(self, request_iterator: AsyncIterator[voiceprint_pb2.EnrollStreamRequest],
                     context: Context) -> voiceprint_pb2.Voiceprint:
        async def work() -> voiceprint_pb2.Voiceprint:
            config, utterances = await _read_enroll_stream(request_iterator)
            callers.note(config.customer_id)
            view = await self._run(self._service.enroll, config.customer_id, config.call_id,
                                   utterances, config.idempotency_key)
            return _voiceprint(view)

        return await self._within_deadline(work(), context)

    async def EnrollAudio(self, request: voiceprint_pb2.EnrollAudioRequest,
                          context: Context) -> voiceprint_pb2.Voiceprint:
        callers.note(request.customer_id)
        utterances = [_audio(u, f"utterances[{i}]") for i, u in enumerate(request.utterances)]
        _check_total([u.content for u in utterances], "utterances")
        view = await self._within_deadline(self._run(
            self._service.enroll, request.customer_id, request.call_id, utterances,
            request.idempotency_key), context)
        return _voiceprint(view)

    async def Verify(self, request_iterator: AsyncIterator[voiceprint_pb2.VerifyStreamRequest],
                     context: Context) -> voiceprint_pb2.VerifyResponse:
        async def work() -> voiceprint_pb2.VerifyResponse:
            config, item = await _read_verify_stream(request_iterator)
            result = await self._run(self._service.verify, config.customer_id, config.call_id,
                                     item)
            return self._verify_response(result, config.customer_id, config.call_id)

        return await self._within_deadline(work(), context)

    async def VerifyAudio(self, request: voiceprint_pb2.VerifyAudioRequest,
                          context: Context) -> voiceprint_pb2.VerifyResponse:
        item = _audio(request.audio, "audio")
        result = await self._within_deadline(self._run(
            self._service.verify, request.customer_id, request.call_id, item), context)
        return self._verify_response(result, request.customer_id, request.call_id)

    def _verify_response(self, result: VerifyResult, customer_id: str,
                         call_id: str) -> voiceprint_pb2.VerifyResponse:
        """The answer; an acceptance in a named call carries the verified-call proof."""
        callers.note(customer_id)
        response = _verify_response(result)
        if response.decision == voiceprint_pb2.VerifyResponse.DECISION_ACCEPT and call_id:
            response.verified_call_proof = callproof.issue(self._keyring, customer_id, call_id)
        return response

    async def GetVoiceprint(self, request: voiceprint_pb2.GetVoiceprintRequest,
                            context: Context) -> voiceprint_pb2.Voiceprint:
        return _voiceprint(await self._run(self._service.get, request.customer_id))

    async def DeleteVoiceprint(self, request: voiceprint_pb2.DeleteVoiceprintRequest,
                               context: Context) -> empty_pb2.Empty:
        callers.note(request.customer_id)
        await self._run(self._service.delete, request.customer_id, request.idempotency_key)
        return empty_pb2.Empty()

    async def CreateWatchlistEntry(self, request: voiceprint_pb2.CreateWatchlistEntryRequest,
                                   context: Context) -> voiceprint_pb2.WatchlistEntry:
        item = _audio(request.audio, "audio")
        view = await self._within_deadline(self._run(
            self._service.add_to_watchlist, request.label, item, request.idempotency_key),
            context)
        return _watchlist_entry(view)

    async def DeleteWatchlistEntry(self, request: voiceprint_pb2.DeleteWatchlistEntryRequest,
                                   context: Context) -> empty_pb2.Empty:
        if not request.name.startswith(WATCHLIST_PREFIX):
            raise InvalidArgument("expected watchlist/{entry_id}", field="name",
                                  reason="INVALID_NAME")
        await self._run(self._service.remove_from_watchlist,
                        request.name.removeprefix(WATCHLIST_PREFIX), request.idempotency_key)
        return empty_pb2.Empty()


# -- streams -----------------------------------------------------------------------

def _format(config: voiceprint_pb2.AudioConfig, field: str) -> audio.AudioFormat:
    encoding = _ENCODINGS.get(config.encoding)
    if encoding is None:
        raise InvalidArgument("must be a known AudioEncoding", field=f"{field}.encoding",
                              reason="UNKNOWN_AUDIO_ENCODING")
    fmt = audio.AudioFormat(encoding, int(config.sample_rate_hertz))
    audio.check_format(fmt, field)
    return fmt


def _audio(message: voiceprint_pb2.Audio, field: str) -> AudioInput:
    if not message.HasField("config"):
        raise InvalidArgument("required", field=f"{field}.config", reason="AUDIO_CONFIG_REQUIRED")
    return AudioInput(content=message.content, format=_format(message.config, f"{field}.config"))


def _check_total(contents: list[bytes], field: str) -> None:
    total = sum(len(c) for c in contents)
    if total > audio.MAX_AUDIO_BYTES:
        raise audio.too_long(field, total, audio.MAX_AUDIO_BYTES)


async def _read_enroll_stream(
        requests: AsyncIterator[voiceprint_pb2.EnrollStreamRequest],
) -> tuple[voiceprint_pb2.EnrollConfig, list[AudioInput]]:
    config: voiceprint_pb2.EnrollConfig | None = None
    fmt: audio.AudioFormat | None = None
    buffer: audio.AudioBuffer | None = None
    utterances: list[AudioInput] = []
    total = 0
    async for message in requests:
        which = message.WhichOneof("request")
        if config is None:
            if which != "config":
                raise InvalidArgument("the first message must carry the config", field="config",
                                      reason="CONFIG_REQUIRED")
            config = message.config
            fmt = _format(config.audio, "config.audio")
            buffer = audio.AudioBuffer(fmt)
            continue
        assert buffer is not None
        assert fmt is not None
        if which == "config":
            raise InvalidArgument("only the first message may carry the config", field="config",
                                  reason="CONFIG_REPEATED")
        if which == "audio_chunk":
            if total + len(message.audio_chunk) > audio.max_bytes(fmt):
                raise audio.too_long("audio_chunk", total + len(message.audio_chunk),
                                     audio.max_bytes(fmt))
            buffer.add(message.audio_chunk)
            total += len(message.audio_chunk)
        elif which == "end_of_utterance" and buffer.size:
            if len(utterances) >= audio.MAX_UTTERANCES:
                raise InvalidArgument(f"at most {audio.MAX_UTTERANCES} utterances",
                                      field="end_of_utterance", reason="TOO_MANY_UTTERANCES")
            utterances.append(AudioInput(buffer.take(), fmt))
    if config is None or fmt is None or buffer is None:
        raise InvalidArgument("the stream carried no config", field="config",
                              reason="CONFIG_REQUIRED")
    if buffer.size:
        utterances.append(AudioInput(buffer.take(), fmt))
    return config, utterances


async def _read_verify_stream(
        requests: AsyncIterator[voiceprint_pb2.VerifyStreamRequest],
) -> tuple[voiceprint_pb2.VerifyConfig, AudioInput]:
    config: voiceprint_pb2.VerifyConfig | None = None
    buffer: audio.AudioBuffer | None = None
    async for message in requests:
        which = message.WhichOneof("request")
        if config is None:
            if which != "config":
                raise InvalidArgument("the first message must carry the config", field="config",
                                      reason="CONFIG_REQUIRED")
            config = message.config
            buffer = audio.AudioBuffer(_format(config.audio, "config.audio"))
            continue
        assert buffer is not None
        if which == "config":
            raise InvalidArgument("only the first message may carry the config", field="config",
                                  reason="CONFIG_REPEATED")
        buffer.add(message.audio_chunk)
    if config is None or buffer is None:
        raise InvalidArgument("the stream carried no config", field="config",
                              reason="CONFIG_REQUIRED")
    return config, AudioInput(buffer.take(), buffer.format)


# -- conversions -------------------------------------------------------------------

def _voiceprint(view: VoiceprintView) -> voiceprint_pb2.Voiceprint:
    return voiceprint_pb2.Voiceprint(
        name=f"customers/{view.customer_id}/voiceprint", customer_id=view.customer_id,
        model_id=view.model_id, model_version=view.model_version,
        utterance_count=view.utterance_count, net_speech_seconds=view.net_speech_seconds,
        create_time=timestamp(view.created_at), update_time=timestamp(view.updated_at))


def _verify_response(result: VerifyResult) -> voiceprint_pb2.VerifyResponse:
    return voiceprint_pb2.VerifyResponse(
        customer_id=result.customer_id, decision=_DECISIONS[result.decision],
        raw_score=result.raw_score, llr=result.llr, probability=result.probability,
        threshold=result.threshold, operating_point=result.operating_point,
        step_up_recommended=result.step_up_recommended,
        net_speech_seconds=result.net_speech_seconds, model_id=result.model_id,
        watchlist_hit=result.watchlist_hit, replay_detected=result.replay_detected,
        watchlist_matches=[voiceprint_pb2.WatchlistMatch(name=f"{WATCHLIST_PREFIX}{m.entry_id}",
                                                         score=m.score)
                           for m in result.watchlist_matches])


def _watchlist_entry(view: WatchlistEntryView) -> voiceprint_pb2.WatchlistEntry:
    return voiceprint_pb2.WatchlistEntry(name=f"{WATCHLIST_PREFIX}{view.entry_id}",
                                         label=view.label, model_id=view.model_id,
                                         create_time=timestamp(view.created_at))
