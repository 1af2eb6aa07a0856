"""``singleid voiceprint …`` (calibrate, evaluate) and ``singleid ivr …`` (simulator)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import click
import numpy as np
import soundfile

from singleid.errors import SingleIdError
from singleid.keyring import KeyMaterial
from singleid.settings import get_settings
from singleid.voiceprint import audio, evaluation
from singleid.voiceprint.backends import BackendUnavailable, SpeakerEncoder, load_backend
from singleid.voiceprint.calibration import build_table
from singleid.voiceprint.config import VoiceSettings
from singleid.voiceprint.norm import DEFAULT_TOP_K, Cohort
from singleid.voiceprint.service import process, template_of
from singleid.voiceprint.service.types import AudioInput


def commands() -> list[click.Command]:
    """The ``singleid.commands`` entry point."""
    return [voiceprint, ivr]


def _echo(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def voiceprint() -> None:
    """Voiceprints: calibration and evaluation of the speaker model."""


@voiceprint.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--enroll", "enroll_count", default=2, show_default=True,
              type=click.IntRange(1, 10), help="Recordings per enrolled speaker.")
@click.option("--resample", type=click.IntRange(8000, 48000), default=None,
              help="Send the audio resampled to this rate (8000: telephone audio).")
@click.option("--cohort", "cohort_dir", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Impostor cohort for AS-norm: one sub-folder per speaker, none of them in "
                   "DIR nor among the speakers evaluated later.")
@click.option("--top-k", default=DEFAULT_TOP_K, show_default=True, type=click.IntRange(1),
              help="Closest cohort scores kept by AS-norm.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("voice-calibration"), show_default=True,
              help="Where the table (calibration-<model>.json), the DET plot and report go.")
def calibrate(directory: Path, enroll_count: int, resample: int | None,
              cohort_dir: Path | None, top_k: int, out_dir: Path) -> None:
    """Compute EER, FRR at FAR 1%/0.1%, a DET plot and the threshold table the service loads.

    DIR holds one sub-folder per speaker (see `evaluate`). With --cohort, scores are
    AS-normalised against that cohort, which the table carries. Set
    SINGLEID_VOICE_CALIBRATION to the table it writes.
    """
    settings = VoiceSettings()
    try:
        encoder = load_backend(settings.backend, settings.ecapa_dir, settings.torch_threads)
    except BackendUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    dataset = evaluation.load_dataset(directory, enroll_count)
    trials = evaluation.Trials()
    cohort = None
    if cohort_dir is not None:
        cohort = _cohort(encoder, settings, cohort_dir, dataset, resample, top_k)
    embeddings = _embed_all(encoder, settings, dataset, resample, trials)
    templates = {}
    for speaker, recs in dataset.enrolled.items():
        usable = [embeddings[r.path] for r in recs if r.path in embeddings]
        if len(usable) == len(recs):
            templates[speaker] = template_of(usable)
        else:
            trials.enroll_errors[speaker] = "RECORDING_FAILED_CHECKS"
    raw = evaluation.Trials()
    for rec in dataset.tests:
        if rec.path not in embeddings:
            continue
        for speaker, template in templates.items():
            score = float(np.dot(template, embeddings[rec.path]))
            normalised = cohort.normalise(score, template, embeddings[rec.path]) if cohort \
                else score
            same = speaker == rec.speaker
            (trials.targets if same else trials.non_targets).append(normalised)
            (raw.targets if same else raw.non_targets).append(score)
    table, _ = build_table(np.array(trials.targets), np.array(trials.non_targets),
                           model_id=encoder.model_id, model_version=encoder.model_version,
                           source=f"{directory.name} enroll={enroll_count} "
                                  f"resample={resample or 'none'} "
                                  f"cohort={cohort_dir.name if cohort_dir else 'none'}",
                           cohort=cohort,
                           raw=(np.array(raw.targets), np.array(raw.non_targets)))
    outcome = evaluation.finish(trials, out_dir, f"{encoder.model_id} on {directory.name}",
                                {"model_id": encoder.model_id, "directory": str(directory),
                                 "enroll": enroll_count, "resample": resample,
                                 "cohort": str(cohort_dir) if cohort_dir else None})
    table_path = out_dir / f"calibration-{encoder.model_id}.json"
    table_path.write_text(table.to_json() + "\n")
    _echo(f"threshold table: {table_path}  DET plot: {out_dir / 'det.png'}")
    for name, point in sorted(table.operating_points.items()):
        _echo(f"  {name:>10}: threshold {point.threshold:.4f}  FAR {point.far:.4%}  "
              f"FRR {point.frr:.4%}")
    click.echo(outcome.summary)


def _embed_all(encoder: SpeakerEncoder, settings: VoiceSettings, dataset: evaluation.Dataset,
               resample: int | None, trials: evaluation.Trials) -> dict[Path, Any]:
    """Each recording's embedding (a recording failing the speech checks is counted, left out)."""
    embeddings: dict[Path, Any] = {}
    recordings = [r for recs in dataset.speakers.values() for r in recs]
    for i, rec in enumerate(recordings):
        content, encoding, rate = evaluation.as_sent(rec.path, resample)
        try:
            embeddings[rec.path] = process(
                encoder, AudioInput(content, audio.AudioFormat(encoding, rate)), field="audio",
                min_speech=settings.min_verify_speech_seconds).embedding
        except SingleIdError as exc:
            trials.error(exc.reason)
        if (i + 1) % 50 == 0:
            _echo(f"embedded {i + 1} of {len(recordings)} recordings")
    return embeddings


def _cohort(encoder: SpeakerEncoder, settings: VoiceSettings, cohort_dir: Path,
            dataset: evaluation.Dataset, resample: int | None, top_k: int) -> Cohort:
    """Embed every recording of the cohort, whose speakers must not be in the calibration set."""
    members = evaluation.load_dataset(cohort_dir, 0)
    shared = sorted(set(members.speakers) & set(dataset.speakers))
    if shared:
        raise click.BadParameter(f"speakers in both the cohort and DIR: {', '.join(shared)}",
                                 param_hint="--cohort")
    embeddings = _embed_all(encoder, settings, members, resample, evaluation.Trials())
    if top_k > len(embeddings):
        raise click.BadParameter(f"{top_k} is more than the cohort's {len(embeddings)} usable "
                                 "recordings", param_hint="--top-k")
    _echo(f"cohort: {len(embeddings)} recordings of {len(members.speakers)} speakers")
    return Cohort(np.stack(list(embeddings.values())), top_k=top_k,
                  speakers=len(members.speakers))


@voiceprint.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--enroll", "enroll_count", default=2, show_default=True,
              type=click.IntRange(1, 10), help="Recordings per enrolled speaker.")
@click.option("--resample", type=click.IntRange(8000, 48000), default=None,
              help="Send the audio as raw PCM at this rate (8000: telephone audio).")
@click.option("--target", default=None,
              help="A running server's gRPC address; without it, one is started on a "
                   "temporary database.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("voice-evaluation"), show_default=True,
              help="Where report.json and det.png go.")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64))
def evaluate(directory: Path, enroll_count: int, resample: int | None, target: str | None,
             out_dir: Path, concurrency: int) -> None:
    """Run the evaluation protocol through the public gRPC API; the last line is the summary.

    Each sub-folder of DIR is a speaker; each wav or flac file in it (recursively, sorted by
    path) is a recording. Speakers with at least N+1 recordings are enrolled with their first
    N; every other recording is verified against every enrolled voiceprint.
    """
    dataset = evaluation.load_dataset(directory, enroll_count)
    server = None
    tmp = None
    try:
        if target is None:
            from singleid.testing import ServerProcess  # noqa: PLC0415

            tmp = tempfile.TemporaryDirectory(prefix="singleid-voice-eval-")
            _echo("starting singleid serve on a temporary database")
            # The protocol verifies each customer hundreds of times: lift the rate limits.
            server = ServerProcess(data_dir=Path(tmp.name), env={
                "SINGLEID_KEYRING": "env:SINGLEID_EVAL_KEYRING",
                "SINGLEID_EVAL_KEYRING": KeyMaterial.generate().to_json(),
                "SINGLEID_LOG_LEVEL": "WARNING",
                "SINGLEID_VOICE_MAX_ATTEMPTS_PER_CUSTOMER": "1000000000",
                "SINGLEID_VOICE_MAX_ATTEMPTS_PER_CALL": "1000000000"}).start()
            target = server.grpc_addr
        trials = evaluation.run_over_grpc(dataset, target, resample=resample,
                                          concurrency=concurrency, progress=_echo)
    except SingleIdError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from None
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()
    try:
        outcome = evaluation.finish(trials, out_dir, f"{directory.name}"
                                    f"{f' at {resample} Hz' if resample else ''}",
                                    {"directory": str(directory), "enroll": enroll_count,
                                     "resample": resample, "target": target})
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if trials.errors or trials.enroll_errors:
        _echo(f"errors: {trials.errors}  enrollment errors: {trials.enroll_errors}")
    _echo(f"report: {out_dir / 'report.json'}  DET plot: {out_dir / 'det.png'}")
    click.echo(outcome.summary)


# -- the IVR simulator ---------------------------------------------------------------

@click.group()
def ivr() -> None:
    """An IVR simulator: stream WAV files to VoiceprintService in 20 ms chunks."""


def _pcm(path: Path) -> tuple[bytes, int]:
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise click.ClickException(f"{path}: not a readable audio file ({exc})") from None
    mono = np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32)
    if int(rate) not in audio.RAW_RATES:
        mono, rate = audio.resample(mono, int(rate), 16_000), 16_000
    return audio.encode_pcm16(mono), int(rate)


def _stream_options(fn: Any) -> Any:
    fn = click.option("--customer", "customer_id", required=True, help="Central customer ID.")(fn)
    fn = click.option("--call-id", default=None, help="The call's ID (default: a new one).")(fn)
    fn = click.option("--target", default=None,
                      help="gRPC address (default: SINGLEID_GRPC_ADDR).")(fn)
    return click.option("--realtime/--fast", default=False, show_default=True,
                        help="Pace the chunks at real time, as a live call does.")(fn)


@ivr.command("enroll")
@_stream_options
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
def ivr_enroll(customer_id: str, call_id: str | None, target: str | None, realtime: bool,
               files: tuple[Path, ...]) -> None:
    """Enroll a customer from one or more WAV files (each an utterance)."""
    import uuid  # noqa: PLC0415

    from singleid.clients.voiceprint import VoiceprintClient  # noqa: PLC0415
    from singleid.v1 import voiceprint_pb2  # noqa: PLC0415

    pcm = [_pcm(f) for f in files]
    rates = {rate for _, rate in pcm}
    if len(rates) > 1:
        raise click.ClickException("the files have different sample rates")
    with VoiceprintClient(target or get_settings().grpc_addr) as client:
        try:
            result = client.enroll_stream(customer_id, call_id or f"ivr-{uuid.uuid4().hex}",
                                          [p for p, _ in pcm],
                                          voiceprint_pb2.AUDIO_ENCODING_PCM16LE, rates.pop(),
                                          realtime=realtime)
        except SingleIdError as exc:
            _fail(exc)
    click.echo(json.dumps({"customer_id": result.customer_id, "model_id": result.model_id,
                           "utterance_count": result.utterance_count,
                           "net_speech_seconds": round(result.net_speech_seconds, 2)}))


@ivr.command("verify")
@_stream_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def ivr_verify(customer_id: str, call_id: str | None, target: str | None, realtime: bool,
               file: Path) -> None:
    """Verify a caller's WAV file against the customer's voiceprint."""
    import uuid  # noqa: PLC0415

    from singleid.clients.voiceprint import VoiceprintClient  # noqa: PLC0415
    from singleid.v1 import voiceprint_pb2  # noqa: PLC0415

    content, rate = _pcm(file)
    with VoiceprintClient(target or get_settings().grpc_addr) as client:
        try:
            result = client.verify_stream(customer_id, call_id or f"ivr-{uuid.uuid4().hex}",
                                          content, voiceprint_pb2.AUDIO_ENCODING_PCM16LE, rate,
                                          realtime=realtime)
        except SingleIdError as exc:
            _fail(exc)
    decision = voiceprint_pb2.VerifyResponse.Decision.Name(result.decision)
    click.echo(json.dumps({
        "decision": decision.removeprefix("DECISION_"), "raw_score": round(result.raw_score, 4),
        "llr": round(result.llr, 3), "probability": round(result.probability, 4),
        "threshold": round(result.threshold, 4), "operating_point": result.operating_point,
        "step_up_recommended": result.step_up_recommended,
        "net_speech_seconds": round(result.net_speech_seconds, 2), "model_id": result.model_id,
        "replay_detected": result.replay_detected, "watchlist_hit": result.watchlist_hit}))


def _fail(exc: SingleIdError) -> NoReturn:
    details = " ".join(f"{k}={v}" for k, v in sorted(exc.metadata.items()))
    click.echo(f"error: {exc.reason}: {exc.message} {details}".rstrip(), err=True)
    sys.exit(1)
