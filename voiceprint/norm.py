"""Adaptive score normalisation (AS-norm) against an impostor cohort.

A cosine score means different things for different voices: some voiceprints
sit close to many others. AS-norm measures each side of a trial against the
cohort (embeddings of speakers who are neither enrolled nor evaluated) and
keeps only the ``top_k`` closest cohort scores, so the statistics describe the
impostors that actually resemble the voice:

    s' = ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2

where mu/sigma are the mean and standard deviation of the top-k cohort scores
of the enrollment template (e) and of the test embedding (t). See decision 0501.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
_MIN_STD = 1e-6
DEFAULT_TOP_K = 40


@dataclass(frozen=True)
class Cohort:
    embeddings: Matrix  # one unit-norm row per cohort recording
    top_k: int
    speakers: int = 0

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or len(self.embeddings) == 0:
            raise ValueError("a cohort needs at least one embedding")
        if not 1 <= self.top_k <= len(self.embeddings):
            raise ValueError(f"top_k must be between 1 and {len(self.embeddings)}")

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def stats(self, vectors: Matrix) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Mean and standard deviation of each row's top-k cohort scores."""
        scores = np.atleast_2d(vectors).astype(np.float32) @ self.embeddings.T
        top = -np.partition(-scores, self.top_k - 1, axis=1)[:, :self.top_k]
        return (top.mean(axis=1, dtype=np.float64),
                np.maximum(top.std(axis=1, dtype=np.float64), _MIN_STD))

    def normalise(self, score: float, template: Matrix, embedding: Matrix) -> float:
        """The AS-norm of one trial's cosine ``score``."""
        mean, std = self.stats(np.stack([template, embedding]))
        return float(((score - mean[0]) / std[0] + (score - mean[1]) / std[1]) / 2)

    def normalise_many(self, scores: npt.NDArray[np.float64], templates: Matrix,
                       embeddings: Matrix) -> npt.NDArray[np.float64]:
        """AS-norm of a score matrix (templates x embeddings), for calibration."""
        t_mean, t_std = self.stats(templates)
        e_mean, e_std = self.stats(embeddings)
        return ((scores - t_mean[:, None]) / t_std[:, None]
                + (scores - e_mean[None, :]) / e_std[None, :]) / 2

    def to_doc(self) -> dict[str, object]:
        raw = self.embeddings.astype("<f4").tobytes()
        return {"top_k": self.top_k, "speakers": self.speakers, "dim": self.dim,
                "embeddings": base64.b64encode(raw).decode()}

    @classmethod
    def from_doc(cls, doc: dict[str, object]) -> Cohort:
        dim = int(str(doc["dim"]))
        flat = np.frombuffer(base64.b64decode(str(doc["embeddings"])), dtype="<f4")
        return cls(embeddings=flat.reshape(-1, dim).astype(np.float32),
                   top_k=int(str(doc["top_k"])), speakers=int(str(doc.get("speakers", 0))))
