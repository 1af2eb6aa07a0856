#!/usr/bin/env python3
"""Matching speed: batch dedupe of N accounts, and incremental match of one new account.

Batch: a generated CSV of N legacy accounts is read, normalised, blocked,
fitted (u from random pairs, m by EM), scored and clustered by
`singleid.matching.batch.dedupe` on 2 worker processes, in a child process whose
wall time and peak memory (ru_maxrss of the child and its workers) are
reported. The baseline is reading and parsing the same CSV with the csv module
alone, in the same run.

Incremental: the blocking index over the N accounts (dict of blocking key ->
accounts, as the service keeps it in matching_block_keys) answers one new
account's candidates, which are scored with the fitted model; p50/p99 over a
sample of new accounts. The baseline is one dict lookup per blocking key.

    .venv/bin/python bench/matching_speed.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from singleid.matching.record import Features

from singleid.matching.synthetic import COLUMNS, Generator


def emit(**figure: object) -> None:
    print(json.dumps({"benchmark": "matching_speed", **figure}), flush=True)


def generate(path: Path, rows: int, seed: int) -> None:
    gen = Generator(seed)
    written = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, COLUMNS)
        writer.writeheader()
        while written < rows:
            for row in gen.rows(1000):
                writer.writerow(row)
                written += 1
                if written == rows:
                    break


def child(path: Path, workers: int, incremental: int) -> None:
    """Runs in its own process so that ru_maxrss is this run's peak."""
    import numpy as np  # noqa: PLC0415

    from singleid.matching import model as fs  # noqa: PLC0415
    from singleid.matching.batch import dedupe  # noqa: PLC0415

    started = time.perf_counter()
    features: list[Features] = []
    with path.open(encoding="utf-8", newline="") as stream, \
            multiprocessing.get_context("fork").Pool(workers) as pool:
        chunks = _chunks(csv.DictReader(stream), 5000)
        for part in pool.imap(_normalise, chunks):
            features.extend(part)
    read = time.perf_counter()
    result = dedupe(features, fs.Thresholds(), workers=workers)
    done = time.perf_counter()
    out = {"accounts": len(features), "candidate_pairs": result.candidate_pairs,
           "auto_merge_pairs": sum(d.action == "auto_merge" for d in result.decisions),
           "clusters": len(result.clusters), "normalise_seconds": read - started,
           "dedupe_seconds": done - read, "wall_seconds": done - started}
    if incremental:
        index: dict[str, list[int]] = {}
        for n, f in enumerate(features):
            for key in fs.blocking_keys(f):
                index.setdefault(key, []).append(n)
        probes = features[:: max(1, len(features) // incremental)][:incremental]
        latencies, lookups = [], []
        for probe in probes:
            t0 = time.perf_counter()
            candidates: set[int] = set()
            for key in fs.blocking_keys(probe):
                candidates.update(index.get(key, ())[:200])
            best = max((result.model.score(probe, features[c]).match_weight
                        for c in candidates), default=0.0)
            latencies.append(time.perf_counter() - t0)
            assert best is not None
            t1 = time.perf_counter()
            for key in fs.blocking_keys(probe):
                index.get(key)
            lookups.append(time.perf_counter() - t1)
        out["incremental_p50_ms"] = float(np.percentile(latencies, 50) * 1000)
        out["incremental_p99_ms"] = float(np.percentile(latencies, 99) * 1000)
        out["lookup_p50_ms"] = float(np.percentile(lookups, 50) * 1000)
        out["lookup_p99_ms"] = float(np.percentile(lookups, 99) * 1000)
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out["peak_rss_mib"] = max(self_peak, children_peak) / 1024
    print(json.dumps(out), flush=True)


def _chunks(records: Iterator[dict[str, str]], size: int) -> Iterator[list[dict[str, str]]]:
    chunk: list[dict[str, str]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _normalise(records: list[dict[str, str]]) -> list[Features]:
    from singleid.matching.record import Features, LegacyRow, person_from_row  # noqa: PLC0415

    out: list[Features] = []
    for record in records:
        try:
            out.append(Features.of(person_from_row(LegacyRow.from_mapping(record))))
        except ValueError:
            continue
    return out


def baseline(path: Path) -> float:
    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as stream:
        for _ in csv.DictReader(stream):
            pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--incremental", type=int, default=2000,
                        help="new accounts to time against the largest size (0: skip)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workers, args.incremental)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"accounts-{size}.csv"
            generate(path, size, seed=size)
            parse_seconds = baseline(path)
            run = subprocess.run(
                [sys.executable, __file__, "--child", str(path), "--workers", str(args.workers),
                 "--incremental", str(args.incremental if size == max(args.sizes) else 0)],
                capture_output=True, text=True, check=True)
            result = json.loads(run.stdout.strip().splitlines()[-1])
            emit(figure="batch_dedupe_wall", accounts=result["accounts"],
                 value=round(result["wall_seconds"], 1), unit="s", workers=args.workers,
                 baseline="csv.DictReader over the same file",
                 baseline_value=round(parse_seconds, 2),
                 ratio=round(result["wall_seconds"] / parse_seconds, 1),
                 normalise_seconds=round(result["normalise_seconds"], 1),
                 dedupe_seconds=round(result["dedupe_seconds"], 1),
                 candidate_pairs=result["candidate_pairs"],
                 auto_merge_pairs=result["auto_merge_pairs"], target_seconds=600
                 if size >= 1_000_000 else None)
            emit(figure="batch_dedupe_peak_memory", accounts=result["accounts"],
                 value=round(result["peak_rss_mib"]), unit="MiB")
            if "incremental_p99_ms" in result:
                emit(figure="incremental_match_p50", accounts=result["accounts"],
                     value=round(result["incremental_p50_ms"], 3), unit="ms",
                     baseline="dict lookups of the blocking keys",
                     baseline_value=round(result["lookup_p50_ms"], 4),
                     ratio=round(result["incremental_p50_ms"] / result["lookup_p50_ms"], 1))
                emit(figure="incremental_match_p99", accounts=result["accounts"],
                     value=round(result["incremental_p99_ms"], 3), unit="ms", target=50,
                     baseline_value=round(result["lookup_p99_ms"], 4),
                     ratio=round(result["incremental_p99_ms"] / result["lookup_p99_ms"], 1))


if __name__ == "__main__":
    main()
