"""Speaker-embedding backends, selected by ``SINGLEID_VOICE_BACKEND``.

- ``ge2e`` (default): the GE2E LSTM speaker encoder whose pretrained weights
  ship in the ``resemblyzer`` wheel (``pretrained.pt``). resemblyzer's own
  front end needs librosa and webrtcvad, so the network and its front end are
  re-implemented here on torchaudio (40 mel bands of a 25 ms/10 ms power
  spectrogram, not log; 1.6 s partials at 1.3 a second, averaged and
  L2-normalised), and only the weights are read from the wheel.
- ``ecapa``: speechbrain's ECAPA-TDNN, loaded from a local directory in
  speechbrain's layout (``hyperparams.yaml``, ``embedding_model.ckpt``, ...).
  :func:`write_random_ecapa` writes such a directory from a randomly
  initialised model, to test the loading path where no weights can be fetched.

A backend's ``model_id`` names the model; ``model_version`` is a digest of its
weights. A template records both, and scores between different models are
never compared.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from singleid.voiceprint.audio import MODEL_RATE, Samples

GE2E_ID = "ge2e-resemblyzer-0.1.4"
ECAPA_ID = "ecapa-tdnn-speechbrain"
EMBED_DIM_GE2E = 256


class BackendUnavailable(RuntimeError):
    """The voice stack cannot start: a missing package, weights or an import failure."""


class SpeakerEncoder(Protocol):
    model_id: str
    model_version: str
    dim: int

    def embed(self, samples: Samples) -> Samples:
        """A unit-norm embedding of 16 kHz speech."""
        ...


def check_torchaudio() -> None:
    """Fail with a clear message when torchaudio cannot be imported (see DESIGN.md)."""
    try:
        import torchaudio  # noqa: PLC0415
        import torchaudio.functional  # noqa: F401, PLC0415
    except Exception as exc:
        raise BackendUnavailable(
            f"torchaudio cannot be imported ({type(exc).__name__}: {str(exc)[:200]}). Its "
            "CUDA-linked extensions must be removed: run ./dev setup, or delete "
            "torchaudio/lib/*.so in the environment") from None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_backend(name: str, ecapa_dir: Path | None = None, threads: int = 1) -> SpeakerEncoder:
    check_torchaudio()
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    if name == "ge2e":
        return Ge2eEncoder()
    if name == "ecapa":
        if ecapa_dir is None:
            raise BackendUnavailable("the ecapa backend needs SINGLEID_VOICE_ECAPA_DIR")
        return EcapaEncoder(ecapa_dir)
    raise BackendUnavailable(f"unknown voice backend {name!r}: ge2e or ecapa")


# -- GE2E ---------------------------------------------------------------------

_PARTIAL_FRAMES = 160    # 1.6 s
_HOP = 160               # 10 ms at 16 kHz
_PARTIAL_RATE = 1.3      # partials a second
_MIN_COVERAGE = 0.75
_NORM_TARGET_DBFS = -30.0


def ge2e_weights() -> Path:
    spec = importlib.util.find_spec("resemblyzer")  # found, not imported (needs librosa)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("the ge2e backend needs the resemblyzer wheel's weights: "
                                 "run ./dev setup (pip install --no-deps resemblyzer==0.1.4)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.exists():
        raise BackendUnavailable(f"GE2E weights missing at {path}")
    return path


def partial_slices(n_samples: int) -> list[slice]:
    """Mel-frame ranges of the 1.6 s partials (resemblyzer's ``compute_partial_slices``)."""
    n_frames = int(np.ceil((n_samples + 1) / _HOP))
    frame_step = round((MODEL_RATE / _PARTIAL_RATE) / _HOP)
    steps = max(1, n_frames - _PARTIAL_FRAMES + frame_step + 1)
    slices = [slice(i, i + _PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    last = slices[-1]
    coverage = (n_samples - last.start * _HOP) / ((last.stop - last.start) * _HOP)
    if coverage < _MIN_COVERAGE and len(slices) > 1:
        slices.pop()
    return slices


class Ge2eEncoder:
    dim = EMBED_DIM_GE2E

    def __init__(self, weights: Path | None = None) -> None:
        import torch  # noqa: PLC0415
        import torchaudio  # noqa: PLC0415

        path = weights or ge2e_weights()
        self.model_id = GE2E_ID
        self.model_version = _digest(path)
        self._lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        self._linear = torch.nn.Linear(256, 256)
        state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        self._lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self._linear.load_state_dict({k[7:]: v for k, v in state.items()
                                      if k.startswith("linear.")})
        self._lstm.eval()
        self._linear.eval()
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=MODEL_RATE, n_fft=400, hop_length=_HOP, n_mels=40, power=2.0,
            norm="slaney", mel_scale="slaney", center=True, pad_mode="constant")

    def embed(self, samples: Samples) -> Samples:
        import torch  # noqa: PLC0415

        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0
        if rms > 0:
            gain = 10 ** ((_NORM_TARGET_DBFS - 20 * np.log10(rms)) / 20)
            if gain > 1:  # increase only, as resemblyzer does
                samples = (samples * gain).astype(np.float32)
        slices = partial_slices(len(samples))
        needed = slices[-1].stop * _HOP
        if needed >= len(samples):
            samples = np.pad(samples, (0, needed - len(samples) + 1))
        with torch.inference_mode():
            mel = self._mel(torch.from_numpy(np.ascontiguousarray(samples))).T  # frames x 40
            batch = torch.stack([mel[s] for s in slices])
            _, (hidden, _) = self._lstm(batch)
            partial = torch.relu(self._linear(hidden[-1]))
            partial = partial / partial.norm(dim=1, keepdim=True).clamp_min(1e-9)
            mean = partial.mean(dim=0)
            embedding = (mean / mean.norm().clamp_min(1e-9)).numpy()
        return np.asarray(embedding, dtype=np.float32)


# -- ECAPA (speechbrain) --------------------------------------------------------

class EcapaEncoder:
    def __init__(self, source: Path) -> None:
        hparams = source / "hyperparams.yaml"
        checkpoint = source / "embedding_model.ckpt"
        if not hparams.exists() or not checkpoint.exists():
            raise BackendUnavailable(
                f"{source} is not a speechbrain model directory (needs hyperparams.yaml and "
                "embedding_model.ckpt)")
        from speechbrain.inference.speaker import EncoderClassifier  # noqa: PLC0415
        from speechbrain.utils.fetching import LocalStrategy  # noqa: PLC0415

        self._classifier: Any = EncoderClassifier.from_hparams(
            source=str(source), savedir=str(source), local_strategy=LocalStrategy.NO_LINK,
            run_opts={"device": "cpu"})
        self._classifier.eval()
        self._lock = threading.Lock()
        self.model_id = ECAPA_ID
        self.model_version = _digest(checkpoint)
        probe = self.embed(np.zeros(MODEL_RATE, dtype=np.float32) + 1e-3)
        self.dim = int(probe.shape[0])

    def embed(self, samples: Samples) -> Samples:
        import torch  # noqa: PLC0415

        with torch.inference_mode():
            wav = torch.from_numpy(np.ascontiguousarray(samples)).unsqueeze(0)
            out = self._classifier.encode_batch(wav).reshape(-1).numpy()
        norm = float(np.linalg.norm(out)) or 1.0
        return np.asarray(out / norm, dtype=np.float32)


ECAPA_HPARAMS = """\
# ECAPA-TDNN speaker embeddings, in the layout of speechbrain/spkrec-ecapa-voxceleb.
pretrained_path: {path}
n_mels: 80
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: {channels}
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: {attention}
    lin_neurons: {lin_neurons}
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


def write_random_ecapa(path: Path, *, channels: tuple[int, ...] = (1024, 1024, 1024, 1024, 3072),
                       lin_neurons: int = 192, seed: int = 0) -> Path:
    """Write a speechbrain model directory from a randomly initialised ECAPA-TDNN."""
    import torch  # noqa: PLC0415
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN  # noqa: PLC0415

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    attention = min(128, channels[0])
    model = ECAPA_TDNN(input_size=80, channels=list(channels), lin_neurons=lin_neurons,
                       attention_channels=attention)
    torch.save(model.state_dict(), path / "embedding_model.ckpt")
    (path / "hyperparams.yaml").write_text(ECAPA_HPARAMS.format(
        path=path.resolve(), channels=list(channels), attention=attention,
        lin_neurons=lin_neurons))
    return path
