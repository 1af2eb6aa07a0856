"""Calibration: EER, FRR at fixed FAR, the DET curve, and the threshold table.

Scores are cosine similarities between an utterance's embedding and a
voiceprint. From target (same speaker) and non-target trials:

- the operating points: for each false-accept target (10%, 1%, 0.1%), the
  lowest raw-score threshold whose FAR on the non-target trials is at most the
  target, with the FRR measured there; and the EER point;
- an affine map from raw score to a natural-log likelihood ratio,
  ``llr = a * score + b``, fitted by logistic regression with the two classes
  weighted equally (a prior of 0.5), so ``probability = sigmoid(llr)``.

With a cohort (``singleid voiceprint calibrate --cohort DIR``) the scores are
AS-normalised first (:mod:`singleid.voiceprint.norm`); the table then carries
the cohort, and its operating points and LLR map apply to normalised scores.
``raw_operating_points`` stay on cosine scores for the 1:N watchlist search,
which has no per-entry cohort statistics.

The table is JSON, tied to one model (ID and version); the service refuses a
table made for another model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from singleid.voiceprint.norm import Cohort

Scores = npt.NDArray[np.float64]
Samples32 = npt.NDArray[np.float32]
FAR_TARGETS = {"far_10pct": 0.10, "far_1pct": 0.01, "far_0_1pct": 0.001}


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    far: float
    frr: float


@dataclass(frozen=True)
class CalibrationTable:
    model_id: str
    model_version: str
    a: float
    b: float
    eer: float
    operating_points: dict[str, OperatingPoint]
    target_trials: int = 0
    non_target_trials: int = 0
    source: str = ""
    notes: dict[str, str] = field(default_factory=dict)
    cohort: Cohort | None = None
    raw_operating_points: dict[str, OperatingPoint] = field(default_factory=dict)

    def normalise(self, score: float, template: Samples32, embedding: Samples32) -> float:
        """The score the decision is made on: AS-norm with a cohort, else the cosine."""
        if self.cohort is None:
            return score
        return self.cohort.normalise(score, template, embedding)

    def raw_point(self, name: str) -> OperatingPoint | None:
        """An operating point on cosine scores (the watchlist's)."""
        if self.cohort is None:
            return self.operating_points.get(name)
        return self.raw_operating_points.get(name)

    def llr(self, score: float) -> float:
        return self.a * score + self.b

    def probability(self, score: float) -> float:
        value = self.llr(score)
        return 1.0 / (1.0 + math.exp(-value)) if value > -700 else 0.0

    def to_json(self) -> str:
        doc = {k: v for k, v in asdict(self).items() if k != "cohort"}
        if self.cohort is not None:
            doc["cohort"] = self.cohort.to_doc()
        return json.dumps(doc, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CalibrationTable:
        doc = json.loads(text)

        def points(key: str) -> dict[str, OperatingPoint]:
            return {name: OperatingPoint(**value) for name, value in doc.get(key, {}).items()}

        cohort = Cohort.from_doc(doc["cohort"]) if doc.get("cohort") else None
        return cls(model_id=doc["model_id"], model_version=doc["model_version"],
                   a=float(doc["a"]), b=float(doc["b"]), eer=float(doc["eer"]),
                   operating_points=points("operating_points"),
                   target_trials=int(doc.get("target_trials", 0)),
                   non_target_trials=int(doc.get("non_target_trials", 0)),
                   source=doc.get("source", ""), notes=dict(doc.get("notes", {})),
                   cohort=cohort, raw_operating_points=points("raw_operating_points"))

    @classmethod
    def load(cls, path: Path) -> CalibrationTable:
        return cls.from_json(path.read_text())


def bundled_table(model_id: str) -> CalibrationTable | None:
    """The table shipped with the package for a model, if there is one."""
    name = f"calibration-{model_id}.json"
    resource = resources.files("singleid.voiceprint").joinpath(name)
    if not resource.is_file():
        return None
    return CalibrationTable.from_json(resource.read_text())


@dataclass(frozen=True)
class Metrics:
    eer: float
    eer_threshold: float
    frr_at_far: dict[str, OperatingPoint]
    det_far: Scores
    det_frr: Scores


def _rates(targets: Scores, non_targets: Scores) -> tuple[Scores, Scores, Scores]:
    """FAR and FRR at every distinct score used as a threshold (accept when score >= t)."""
    thresholds = np.unique(np.concatenate([targets, non_targets]))
    t_sorted = np.sort(targets)
    n_sorted = np.sort(non_targets)
    frr = np.searchsorted(t_sorted, thresholds, side="left") / max(len(targets), 1)
    far = 1.0 - np.searchsorted(n_sorted, thresholds, side="left") / max(len(non_targets), 1)
    return thresholds, far.astype(np.float64), frr.astype(np.float64)


def metrics(targets: Scores, non_targets: Scores) -> Metrics:
    if len(targets) == 0 or len(non_targets) == 0:
        raise ValueError("need both target and non-target trials")
    thresholds, far, frr = _rates(targets, non_targets)
    gap = np.abs(far - frr)
    i = int(np.argmin(gap))
    eer = float((far[i] + frr[i]) / 2)
    points: dict[str, OperatingPoint] = {}
    for name, target in FAR_TARGETS.items():
        ok = np.nonzero(far <= target)[0]
        j = int(ok[0]) if len(ok) else len(thresholds) - 1
        threshold = float(thresholds[j]) if len(ok) else float(thresholds[-1]) + 1e-6
        points[name] = OperatingPoint(threshold=threshold,
                                      far=float(far[j]) if len(ok) else 0.0,
                                      frr=float(frr[j]) if len(ok) else 1.0)
    points["eer"] = OperatingPoint(threshold=float(thresholds[i]), far=float(far[i]),
                                   frr=float(frr[i]))
    return Metrics(eer=eer, eer_threshold=float(thresholds[i]), frr_at_far=points,
                   det_far=far, det_frr=frr)


def fit_llr(targets: Scores, non_targets: Scores, iterations: int = 50) -> tuple[float, float]:
    """Prior-weighted logistic regression of the label on the score (Newton's method)."""
    x = np.concatenate([targets, non_targets])
    y = np.concatenate([np.ones(len(targets)), np.zeros(len(non_targets))])
    w = np.concatenate([np.full(len(targets), 0.5 / len(targets)),
                        np.full(len(non_targets), 0.5 / len(non_targets))])
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        g = np.array([np.sum(w * (p - y) * x), np.sum(w * (p - y))])
        s = w * p * (1 - p)
        h = np.array([[np.sum(s * x * x), np.sum(s * x)], [np.sum(s * x), np.sum(s)]])
        h += np.eye(2) * 1e-9
        step = np.linalg.solve(h, g)
        a, b = a - float(step[0]), b - float(step[1])
        if float(np.max(np.abs(step))) < 1e-9:
            break
    return a, b


def build_table(targets: Scores, non_targets: Scores, *, model_id: str, model_version: str,
                source: str = "", cohort: Cohort | None = None,
                raw: tuple[Scores, Scores] | None = None) -> tuple[CalibrationTable, Metrics]:
    """The table from decision scores (normalised when ``cohort``; ``raw``: their cosines)."""
    m = metrics(targets, non_targets)
    a, b = fit_llr(targets, non_targets)
    raw_points = metrics(*raw).frr_at_far if raw is not None else {}
    table = CalibrationTable(model_id=model_id, model_version=model_version, a=a, b=b, eer=m.eer,
                             operating_points=m.frr_at_far, target_trials=len(targets),
                             non_target_trials=len(non_targets), source=source, cohort=cohort,
                             raw_operating_points=raw_points)
    return table, m


def summary_line(m: Metrics, n_targets: int, n_non_targets: int) -> str:
    """The evaluation's last line (the format other tools parse)."""
    return (f"EER {m.eer * 100:.2f}% | FRR@FAR1% {m.frr_at_far['far_1pct'].frr * 100:.2f}% | "
            f"FRR@FAR0.1% {m.frr_at_far['far_0_1pct'].frr * 100:.2f}% | "
            f"{n_targets} target / {n_non_targets} non-target trials")


def plot_det(m: Metrics, path: Path, title: str) -> None:
    """A DET curve (FRR against FAR on normal-deviate axes) as a PNG."""
    import matplotlib as mpl  # noqa: PLC0415 - heavy; only for the plot

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    inv_cdf = NormalDist().inv_cdf

    def nd(values: Scores) -> Scores:
        clipped = np.clip(values, 1e-4, 1 - 1e-4)
        return np.array([inv_cdf(float(v)) for v in clipped], dtype=np.float64)

    ticks = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
    labels = [f"{t * 100:g}" for t in ticks]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot(nd(m.det_far), nd(m.det_frr), label=f"EER {m.eer * 100:.2f}%")
    ax.plot(nd(np.array([m.eer])), nd(np.array([m.eer])), "o")
    ax.set_xticks(nd(np.array(ticks)), labels)
    ax.set_yticks(nd(np.array(ticks)), labels)
    low, high = (float(v) for v in nd(np.array([0.0005, 0.5])))
    ax.set_xlim((low, high))
    ax.set_ylim((low, high))
    ax.set_xlabel("false accept rate (%)")
    ax.set_ylabel("false reject rate (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.4)
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
