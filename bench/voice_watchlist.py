"""The fraudster watchlist: a 1:N search over 100,000 templates.

The search is what ``VoiceprintService.verify`` runs for every verification
(``singleid.voiceprint.service.watchlist.search``: one float32 matrix product
over the decrypted entries and a threshold). The baseline, in the same run, is
the same search over 1,000 templates. Loading the index (decrypting the sealed
entries, AES-256-GCM) is reported too.

    python bench/voice_watchlist.py [--entries 100000] [--searches 200]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from singleid.keyring import KeyMaterial, Keyring
from singleid.voiceprint.models import WATCHLIST_PURPOSE
from singleid.voiceprint.service.watchlist import search

BENCHMARK = "voice_watchlist"
DIM = 256


def figure(name: str, value: float, unit: str, baseline: float, **extra: Any) -> None:
    record = {"benchmark": BENCHMARK, "figure": name, "value": round(value, 3), "unit": unit,
              "baseline": round(baseline, 3),
              "ratio": round(value / baseline, 3) if baseline else None, **extra}
    print(json.dumps(record, ensure_ascii=False), flush=True)


def templates(n: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    unit_rows: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit_rows


def timed_search(matrix: np.ndarray, probes: np.ndarray) -> list[float]:
    ids = [f"{i:026x}" for i in range(len(matrix))]
    times = []
    for probe in probes:
        started = time.perf_counter()
        search(ids, matrix, probe, threshold=0.77)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=200)
    options = parser.parse_args()
    big, small = templates(options.entries, 1), templates(1000, 2)
    probes = templates(options.searches, 3)
    timed_search(big, probes[:10])  # warm-up
    big_times, small_times = timed_search(big, probes), timed_search(small, probes)
    p50, p99 = float(np.percentile(big_times, 50)), float(np.percentile(big_times, 99))
    figure(f"watchlist search over {options.entries:,} templates: p50", p50, "ms",
           float(np.percentile(small_times, 50)), baseline_is="1,000 templates",
           target="<= 20 ms", meets_target=p50 <= 20)
    figure(f"watchlist search over {options.entries:,} templates: p99", p99, "ms",
           float(np.percentile(small_times, 99)), baseline_is="1,000 templates")
    keyring = Keyring(KeyMaterial.generate())
    sealed = [keyring.seal(row.astype("<f4").tobytes(), WATCHLIST_PURPOSE) for row in big]
    started = time.perf_counter()
    loaded = np.stack([np.frombuffer(keyring.open(s, WATCHLIST_PURPOSE), dtype="<f4")
                       for s in sealed])
    load_s = time.perf_counter() - started
    assert np.array_equal(loaded, big)
    figure(f"watchlist index load (decrypt {options.entries:,} entries)", load_s, "s", 0.0)


if __name__ == "__main__":
    main()
