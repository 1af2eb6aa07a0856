"""``singleid legacy evaluate``: import a labelled file into a fresh store, match, score.

Every row becomes its own legacy account (a ``product`` column, if present,
names its product), batch matching runs with the configured thresholds, and
the merges are compared with the truth column: pairwise and cluster precision,
recall and F1, the review queue's size, and how many automatic merges joined
rows of different persons (and, with a hard-negative column, how many of those
joined look-alikes of one hard-negative group).
"""

from __future__ import annotations

import csv
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from singleid.db import Database
from singleid.errors import InvalidArgument
from singleid.idp.service import CustomerService
from singleid.idp.service.types import Lookup
from singleid.keyring import KeyMaterial, Keyring
from singleid.matching.record import LegacyRow
from singleid.matching.service.importer import ImportService, Parsed, Reject, ensure_product
from singleid.matching.service.matcher import MatchingService
from singleid.matching.settings import MatchSettings
from singleid.plugins import load_models

DEFAULT_PRODUCT = "legacy"


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class EvaluationReport:
    rows: int
    rejected: int
    persons: int
    pairwise: Scores
    cluster: Scores
    review: int
    auto_merges: int
    wrong_auto_merges: int
    hard_negative_auto_merges: int | None

    def lines(self) -> list[str]:
        out = [
            f"rows {self.rows} | rejected {self.rejected} | persons {self.persons}",
            f"pairwise precision {self.pairwise.precision:.4f} | recall "
            f"{self.pairwise.recall:.4f} | F1 {self.pairwise.f1:.4f}",
            f"cluster precision {self.cluster.precision:.4f} | recall "
            f"{self.cluster.recall:.4f} | F1 {self.cluster.f1:.4f}",
            f"auto-merges {self.auto_merges} | of them joining different persons "
            f"{self.wrong_auto_merges}",
        ]
        if self.hard_negative_auto_merges is not None:
            out.append(f"auto-merges of hard negatives {self.hard_negative_auto_merges}")
        out.append(f"pairwise F1 {self.pairwise.f1:.4f} | cluster F1 {self.cluster.f1:.4f} | "
                   f"wrong auto-merges {self.wrong_auto_merges} | review {self.review}")
        return out


def _scores(tp: int, predicted: int, actual: int) -> Scores:
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1)


def _pairs(groups: dict[str, list[int]]) -> set[tuple[int, int]]:
    return {(a, b) for members in groups.values() for a, b in combinations(sorted(members), 2)}


def evaluate(  # noqa: PLR0915 - one linear procedure
        path: Path, *, truth_column: str, hard_negative_column: str = "",
             encoding: str = "utf-8", settings: MatchSettings | None = None,
             progress: Callable[[str], None] = lambda _m: None) -> EvaluationReport:
    with path.open(newline="", encoding=encoding) as stream:
        header = next(csv.reader(stream), [])
    for column, field in ((truth_column, "truth_column"),
                          (hard_negative_column, "hard_negative_column")):
        if column and column not in header:
            raise InvalidArgument(f"the file has no column {column!r}", field=field)
    truth: dict[tuple[str, str], str] = {}
    hard: dict[tuple[str, str], str] = {}
    # The store is thrown away: on tmpfs, its commits cost no disk flushes.
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108
    with tempfile.TemporaryDirectory(prefix="singleid-evaluate-", dir=scratch) as tmp:
        load_models()
        db = Database(f"sqlite:///{Path(tmp) / 'evaluate.db'}")
        try:
            db.migrate()
            keyring = Keyring(KeyMaterial.generate())
            importer = ImportService(db, keyring)
            rejected = 0
            by_product: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
            with path.open(newline="", encoding=encoding) as stream:
                for line, record in enumerate(csv.DictReader(stream), start=2):
                    product = (record.get("product") or DEFAULT_PRODUCT).strip()
                    record["account_id"] = (record.get("account_id") or f"row-{line}").strip()
                    by_product[product].append((line, record))
                    key = (product, record["account_id"])
                    truth[key] = record.get(truth_column) or f"row-{line}"
                    if hard_negative_column:
                        hard[key] = record.get(hard_negative_column) or ""
            for product, records in by_product.items():
                ensure_product(db, product)
                progress(f"importing {len(records)} rows into {product}")

                def parsed(records: list[tuple[int, dict[str, str]]] = records
                           ) -> Iterator[Parsed]:
                    for line, record in records:
                        yield line, LegacyRow.from_mapping(record)

                summary = importer.import_rows(product, parsed())
                rejected += summary.rejected
            progress("matching")
            matcher = MatchingService(db, keyring, settings)
            batch = matcher.run_batch()
            customers = CustomerService(db, keyring)
            accounts = importer.accounts()
            predicted: dict[str, list[int]] = defaultdict(list)
            actual: dict[str, list[int]] = defaultdict(list)
            for index, (product, account_id, customer_id) in enumerate(accounts):
                survivor = customers.resolve(Lookup(customer_id=customer_id)).customer_id
                predicted[survivor].append(index)
                actual[truth[(product, account_id)]].append(index)
            labels = [truth[(p, a)] for p, a, _ in accounts]
            groups = [hard.get((p, a), "") for p, a, _ in accounts]
            predicted_pairs, actual_pairs = _pairs(predicted), _pairs(actual)
            pairwise = _scores(len(predicted_pairs & actual_pairs), len(predicted_pairs),
                               len(actual_pairs))
            predicted_sets = {frozenset(m) for m in predicted.values()}
            actual_sets = {frozenset(m) for m in actual.values()}
            exact = len(predicted_sets & actual_sets)
            cluster = _scores(exact, len(predicted_sets), len(actual_sets))
            wrong = hard_wrong = 0
            for survivor_index, merged_index in batch.merged_pairs:
                if labels[survivor_index] != labels[merged_index]:
                    wrong += 1
                    if groups[survivor_index] and groups[survivor_index] == groups[merged_index]:
                        hard_wrong += 1
            return EvaluationReport(
                rows=len(truth), rejected=rejected, persons=len(actual), pairwise=pairwise,
                cluster=cluster, review=matcher.review_size(), auto_merges=batch.auto_merges,
                wrong_auto_merges=wrong,
                hard_negative_auto_merges=hard_wrong if hard_negative_column else None)
        finally:
            db.dispose()


__all__ = ["EvaluationReport", "Reject", "evaluate"]
