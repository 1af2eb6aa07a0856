"""The evaluation protocol, shared by ``singleid voiceprint calibrate`` and ``evaluate``.

- Each sub-folder of DIR is a speaker; each wav or flac file in it (searched
  recursively, sorted by path) is a recording.
- A speaker with at least N+1 recordings is enrolled with its first N.
- Every remaining recording of every speaker (including speakers too small to
  enroll) is verified against every enrolled voiceprint: the same speaker makes
  a target trial, another speaker a non-target trial.

``evaluate`` runs it through the public gRPC API (``VoiceprintClient``) and
scores each trial by the LLR the service returns (its decision score, mapped);
``calibrate`` runs it in-process on the same engine, embedding each recording
once.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from singleid.errors import SingleIdError
from singleid.voiceprint import audio
from singleid.voiceprint.calibration import Metrics, metrics, plot_det, summary_line

AUDIO_SUFFIXES = {".wav", ".flac"}
DET_POINTS = 200  # enough for a smooth curve in a report


@dataclass(frozen=True)
class Recording:
    speaker: str
    path: Path


@dataclass
class Dataset:
    speakers: dict[str, list[Recording]]
    enroll_count: int

    @property
    def enrolled(self) -> dict[str, list[Recording]]:
        return {s: r[:self.enroll_count] for s, r in self.speakers.items()
                if len(r) >= self.enroll_count + 1}

    @property
    def tests(self) -> list[Recording]:
        enrolled = self.enrolled
        return [rec for s, recs in self.speakers.items()
                for rec in (recs[self.enroll_count:] if s in enrolled else recs)]


def load_dataset(root: Path, enroll_count: int) -> Dataset:
    speakers: dict[str, list[Recording]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if files:
            speakers[folder.name] = [Recording(folder.name, f) for f in files]
    if not speakers:
        raise ValueError(f"{root} has no speaker folders with wav or flac files")
    return Dataset(speakers, enroll_count)


def telephone(path: Path, rate: int) -> tuple[bytes, audio.Encoding, int]:
    """A recording as raw PCM16LE at ``rate`` (8 kHz: telephone audio)."""
    samples, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32)
    return audio.encode_pcm16(audio.resample(mono, int(source_rate), rate)), \
        audio.Encoding.PCM16LE, rate


def as_sent(path: Path, resample: int | None) -> tuple[bytes, audio.Encoding, int]:
    """What the evaluation sends for a recording: the file as is, or resampled raw PCM."""
    if resample:
        return telephone(path, resample)
    encoding = audio.Encoding.FLAC if path.suffix.lower() == ".flac" else audio.Encoding.WAV
    return path.read_bytes(), encoding, 0


@dataclass
class Trials:
    targets: list[float] = field(default_factory=list)
    non_targets: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    enroll_errors: dict[str, str] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


@dataclass(frozen=True)
class Outcome:
    metrics: Metrics
    trials: Trials
    summary: str


def finish(trials: Trials, out_dir: Path, title: str, extra: dict[str, Any]) -> Outcome:
    if not trials.targets or not trials.non_targets:
        raise ValueError("the run produced no target or no non-target trials "
                         f"(errors: {trials.errors}, enrollment errors: {trials.enroll_errors})")
    m = metrics(np.array(trials.targets), np.array(trials.non_targets))
    summary = summary_line(m, len(trials.targets), len(trials.non_targets))
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_det(m, out_dir / "det.png", title)
    report = {
        **extra, "eer": m.eer, "eer_threshold": m.eer_threshold,
        "operating_points": {k: vars(v) for k, v in m.frr_at_far.items()},
        "target_trials": len(trials.targets), "non_target_trials": len(trials.non_targets),
        "det": det_points(m),
        "errors": trials.errors, "enroll_errors": trials.enroll_errors,
        "decisions": trials.decisions, "summary": summary,
        "target_scores": trials.targets, "non_target_scores": trials.non_targets,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return Outcome(m, trials, summary)


def det_points(m: Metrics, most: int = DET_POINTS) -> dict[str, list[float]]:
    """The DET curve, thinned to at most ``most`` points, for reports drawn elsewhere."""
    keep = np.unique(np.linspace(0, len(m.det_far) - 1, min(most, len(m.det_far))).astype(int))
    far, frr = m.det_far[keep], m.det_frr[keep]
    return {"far": [round(float(v), 6) for v in far], "frr": [round(float(v), 6) for v in frr]}


def run_over_grpc(dataset: Dataset, target: str, *, resample: int | None, concurrency: int,
                  progress: Callable[[str], None]) -> Trials:
    """The protocol through the public API of a running server."""
    from singleid.clients.customers import CustomersClient  # noqa: PLC0415
    from singleid.clients.profile import ProfileClient  # noqa: PLC0415
    from singleid.clients.voiceprint import VoiceprintClient  # noqa: PLC0415
    from singleid.errors import AlreadyExists  # noqa: PLC0415

    trials = Trials()
    product = "voice-eval"
    run_id = f"{time.time_ns():x}"
    with closing(CustomersClient(target)) as customers, VoiceprintClient(target) as voice, \
            ProfileClient(target) as profile:
        with contextlib.suppress(AlreadyExists):
            customers.create_product(product, "Voice evaluation")
        ids = {s: customers.register_customer(product, f"{s}").customer_id
               for s in dataset.speakers}
        enrolled: dict[str, str] = {}
        for speaker, recordings in dataset.enrolled.items():
            sent = [as_sent(r.path, resample) for r in recordings]
            profile.set_consent(ids[speaker], "biometrics", True, text_version="voice-eval",
                                channel="eval")
            try:
                voice.enroll_audio(ids[speaker], f"eval-{run_id}-enroll-{speaker}",
                                   [s[0] for s in sent], _code(sent[0][1]), sent[0][2])
                enrolled[speaker] = ids[speaker]
            except SingleIdError as exc:
                trials.enroll_errors[speaker] = exc.reason
        progress(f"enrolled {len(enrolled)} of {len(dataset.speakers)} speakers")

        def verify_all(index_and_rec: tuple[int, Recording]) -> list[tuple[str, Any]]:
            index, rec = index_and_rec
            content, encoding, rate = as_sent(rec.path, resample)
            results: list[tuple[str, Any]] = []
            for speaker, customer_id in enrolled.items():
                kind = "target" if speaker == rec.speaker else "non_target"
                try:
                    response = voice.verify_audio(customer_id, f"eval-{run_id}-{index}-{speaker}",
                                                  content, _code(encoding), rate)
                    results.append((kind, response))
                except SingleIdError as exc:
                    results.append(("error", exc.reason))
            return results

        tests = dataset.tests
        done = 0
        with ThreadPoolExecutor(concurrency) as pool:
            for results in pool.map(verify_all, enumerate(tests)):
                for kind, value in results:
                    if kind == "error":
                        trials.error(str(value))
                        continue
                    # The LLR is the service's decision score (AS-normalised when the
                    # calibration has a cohort) mapped monotonically: its EER is the service's.
                    (trials.targets if kind == "target" else trials.non_targets).append(
                        float(value.llr))
                    name = "accept" if value.decision == 1 else "reject"
                    key = f"{kind}_{name}"
                    trials.decisions[key] = trials.decisions.get(key, 0) + 1
                done += 1
                if done % 20 == 0:
                    progress(f"verified {done} of {len(tests)} recordings")
    return trials


def _code(encoding: audio.Encoding) -> Any:
    from singleid.v1 import voiceprint_pb2  # noqa: PLC0415

    return {audio.Encoding.PCM16LE: voiceprint_pb2.AUDIO_ENCODING_PCM16LE,
            audio.Encoding.MULAW: voiceprint_pb2.AUDIO_ENCODING_MULAW,
            audio.Encoding.ALAW: voiceprint_pb2.AUDIO_ENCODING_ALAW,
            audio.Encoding.WAV: voiceprint_pb2.AUDIO_ENCODING_WAV,
            audio.Encoding.FLAC: voiceprint_pb2.AUDIO_ENCODING_FLAC}[encoding]
