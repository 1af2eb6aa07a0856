"""Voice accuracy: ``singleid voiceprint evaluate`` on the real recordings, as other tools run it.

Scores are AS-normalised against a cohort, so the evaluation keeps three
disjoint sets of speakers. VoxForge's 30 speakers (sorted by name) are dealt
round-robin into three folds A, B, C; each of three rounds takes one fold as
the cohort, the next as the calibration set and the third as the test set:

    singleid voiceprint calibrate CALIB --cohort COHORT [--resample 8000]
    SINGLEID_VOICE_CALIBRATION=<its table> singleid voiceprint evaluate TEST [--resample 8000]

``evaluate`` runs through the public gRPC API against a server it starts on a
temporary database. The trials of the three rounds (every speaker tested once,
against a cohort and a calibration it was not part of) are pooled into one EER
on the AS-norm scores; the EER of the pooled calibrated LLRs and the FAR/FRR
the service's decisions reached are printed beside it.
Runs: VoxForge at 16 kHz (FLAC as is); VoxForge sent as 8 kHz telephone audio;
FSDD (8 kHz, each speaker's ten digits of one repetition index joined into one
recording of about 6 s) scored with round 1's 8 kHz table.

Figures, one JSON object a line: EER, FRR at FAR 1% and 0.1%; the baseline is
the issue's target (EER <= 2% at 16 kHz, <= 5% at 8 kHz), so ratio <= 1 meets it.
A "DET curve" figure per run carries the curve's points (``det_far``, ``det_frr``)
for bench/run's plot.

    python bench/voice_accuracy.py [--data ../shared/data/voice] [--enroll 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from singleid.voiceprint.calibration import CalibrationTable, metrics, summary_line
from singleid.voiceprint.evaluation import det_points

BENCHMARK = "voice_accuracy"
ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"EER ([\d.]+)% \| FRR@FAR1% ([\d.]+)% \| FRR@FAR0\.1% ([\d.]+)% \| "
                     r"(\d+) target / (\d+) non-target trials")


def figure(name: str, value: float, unit: str, baseline: float, **extra: Any) -> None:
    record = {"benchmark": BENCHMARK, "figure": name, "value": round(value, 3), "unit": unit,
              "baseline": round(baseline, 3),
              "ratio": round(value / baseline, 3) if baseline else None, **extra}
    print(json.dumps(record, ensure_ascii=False), flush=True)


def run(command: list[str], env: dict[str, str] | None = None) -> str:
    print("$ singleid " + " ".join(command[3:]), file=sys.stderr, flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600,
                            env={**os.environ, **(env or {})})
    sys.stderr.write(result.stderr[-1500:])
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode != 0 or SUMMARY.search(last) is None:
        raise SystemExit(f"{command[3:5]} failed ({result.returncode}): {last}")
    print(last, file=sys.stderr, flush=True)
    return last


def calibrate(calib: Path, cohort: Path, out: Path, enroll: int, resample: int | None) -> Path:
    command = [sys.executable, "-m", "singleid", "voiceprint", "calibrate", str(calib),
               "--cohort", str(cohort), "--enroll", str(enroll), "--out", str(out)]
    run(command + (["--resample", str(resample)] if resample else []))
    return next(out.glob("calibration-*.json"))


def evaluate(directory: Path, out: Path, enroll: int, resample: int | None,
             table: Path) -> dict[str, Any]:
    """One evaluation with the given table; its report (scores are the returned LLRs)."""
    command = [sys.executable, "-m", "singleid", "voiceprint", "evaluate", str(directory),
               "--enroll", str(enroll), "--out", str(out)]
    run(command + (["--resample", str(resample)] if resample else []),
        env={"SINGLEID_VOICE_CALIBRATION": str(table)})
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def subset(root: Path, speakers: list[str], target: Path) -> Path:
    """A directory of the given speakers' folders (symbolic links)."""
    target.mkdir(parents=True)
    for speaker in speakers:
        (target / speaker).symlink_to(root / speaker, target_is_directory=True)
    return target


def rounds(voxforge: Path, out: Path, enroll: int, resample: int | None,
           label: str) -> tuple[list[float], Path, dict[str, float], dict[str, list[float]]]:
    """Three rounds of cohort / calibration / test folds; pooled figures, round 1's table.

    The EER pools the rounds' AS-norm scores (each round's threshold is set on
    its own calibration fold); ``eer_of_pooled_llrs`` pools the calibrated LLRs
    instead, which also charges the rounds' calibrations for disagreeing; the
    decisions give the FAR and FRR actually reached at the far_1pct point.
    """
    speakers = sorted(p.name for p in voxforge.iterdir() if p.is_dir())
    folds = [speakers[i::3] for i in range(3)]
    normalised: tuple[list[float], list[float]] = ([], [])
    llrs: tuple[list[float], list[float]] = ([], [])
    decisions: dict[str, int] = {}
    tables = []
    for r in range(3):
        cohort, calib, test = folds[r], folds[(r + 1) % 3], folds[(r + 2) % 3]
        print(f"{label} round {r + 1}: cohort {cohort}; calibration {calib}; test {test}",
              file=sys.stderr, flush=True)
        base = out / f"round{r + 1}"
        table = calibrate(subset(voxforge, calib, base / "calib"),
                          subset(voxforge, cohort, base / "cohort"), base / "table", enroll,
                          resample)
        report = evaluate(subset(voxforge, test, base / "test"), base / "eval", enroll,
                          resample, table)
        fit = CalibrationTable.load(table)
        for kind, key in enumerate(("target_scores", "non_target_scores")):
            llrs[kind].extend(report[key])
            # The decision score itself (AS-norm), from the table's monotone LLR map.
            normalised[kind].extend((llr - fit.b) / fit.a for llr in report[key])
        for name, count in report["decisions"].items():
            decisions[name] = decisions.get(name, 0) + count
        tables.append(table)
    m = metrics(np.array(normalised[0]), np.array(normalised[1]))
    pooled_llr = metrics(np.array(llrs[0]), np.array(llrs[1]))
    print(summary_line(m, len(normalised[0]), len(normalised[1])), file=sys.stderr, flush=True)
    far = decisions.get("non_target_accept", 0) / max(len(normalised[1]), 1)
    frr = decisions.get("target_reject", 0) / max(len(normalised[0]), 1)
    extra = {"eer_of_pooled_llrs": round(pooled_llr.eer * 100, 3),
             "far_at_the_far_1pct_decision": round(far * 100, 3),
             "frr_at_the_far_1pct_decision": round(frr * 100, 3)}
    return [m.eer * 100, m.frr_at_far["far_1pct"].frr * 100,
            m.frr_at_far["far_0_1pct"].frr * 100, len(normalised[0]),
            len(normalised[1])], tables[0], extra, det_points(m)


def fsdd_recordings(fsdd: Path, target: Path, per_speaker: int) -> Path:
    gap = np.zeros(int(0.15 * 8000), dtype=np.float32)
    for speaker in sorted(p for p in fsdd.iterdir() if p.is_dir()):
        (target / speaker.name).mkdir(parents=True)
        for index in range(per_speaker):
            parts = []
            for digit in range(10):
                clip, _ = soundfile.read(str(speaker / f"{digit}_{speaker.name}_{index}.wav"),
                                         dtype="float32")
                parts += [clip, gap]
            soundfile.write(str(target / speaker.name / f"{index:03d}.wav"),
                            np.concatenate(parts), 8000, subtype="PCM_16")
    return target


def report(label: str, values: list[float], det: dict[str, list[float]], eer_target: float,
           extra: dict[str, float] | None = None) -> None:
    eer, frr1, frr01, targets, non_targets = values
    trials = {"target_trials": int(targets), "non_target_trials": int(non_targets),
              **(extra or {})}
    figure(f"{label}: EER", eer, "%", eer_target, target=f"<= {eer_target:g}%",
           meets_target=eer <= eer_target, **trials)
    figure(f"{label}: FRR at FAR 1%", frr1, "%", 0.0, **trials)
    figure(f"{label}: FRR at FAR 0.1%", frr01, "%", 0.0, **trials)
    # The curve itself, for bench/run's DET plot; the baseline is the EER target.
    figure(f"{label}: DET curve (EER)", eer, "%", eer_target, det_far=det["far"],
           det_frr=det["frr"], **trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/voice")
    parser.add_argument("--enroll", type=int, default=2)
    parser.add_argument("--fsdd-recordings", type=int, default=20)
    parser.add_argument("--only", choices=["voxforge16k", "voxforge8k"], default=None,
                        help="One VoxForge run (8k also runs FSDD with its table).")
    options = parser.parse_args()
    voxforge = options.data / "voxforge"
    with tempfile.TemporaryDirectory(prefix="singleid-voice-bench-") as tmp:
        out = Path(tmp)
        if options.only in (None, "voxforge16k"):
            values, _, extra, det = rounds(voxforge, out / "vf16", options.enroll, None,
                                           "16 kHz")
            report("VoxForge 16 kHz", values, det, 2.0, extra)
        if options.only in (None, "voxforge8k"):
            values, table, extra, det = rounds(voxforge, out / "vf8", options.enroll, 8000,
                                               "8 kHz")
            report("VoxForge as 8 kHz telephone audio", values, det, 5.0, extra)
            fsdd = fsdd_recordings(options.data / "fsdd", out / "fsdd-concat",
                                   options.fsdd_recordings)
            run([sys.executable, "-m", "singleid", "voiceprint", "evaluate", str(fsdd),
                 "--enroll", str(options.enroll), "--out", str(out / "fsdd")],
                env={"SINGLEID_VOICE_CALIBRATION": str(table)})
            doc = json.loads((out / "fsdd" / "report.json").read_text())
            m = metrics(np.array(doc["target_scores"]), np.array(doc["non_target_scores"]))
            report("FSDD 8 kHz digit concatenations",
                   [m.eer * 100, m.frr_at_far["far_1pct"].frr * 100,
                    m.frr_at_far["far_0_1pct"].frr * 100, len(doc["target_scores"]),
                    len(doc["non_target_scores"])], det_points(m), 5.0)


if __name__ == "__main__":
    main()
