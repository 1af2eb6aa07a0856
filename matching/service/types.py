"""What matching's services take and return: plain dataclasses, no protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Decision(StrEnum):
    MERGE = "merge"
    NOT_SAME = "not_same"
    SKIP = "skip"


@dataclass(frozen=True)
class AccountRef:
    product: str
    account_id: str


@dataclass(frozen=True)
class FieldEvidence:
    comparison: str
    level: str
    weight: float
    left: str
    right: str


@dataclass(frozen=True)
class SideBySide:
    """One account as an operator sees it: names and dates in full, identifiers masked."""

    product: str
    account_id: str
    customer_id: str
    current_customer_id: str
    values: dict[str, str]


@dataclass(frozen=True)
class CandidateView:
    candidate_id: int
    status: str
    probability: float
    match_weight: float
    hard_rules: list[str]
    left: SideBySide | None = None
    right: SideBySide | None = None
    fields: list[FieldEvidence] = field(default_factory=list)
    operator: str = ""
    decided_at: datetime | None = None
    merge_id: str = ""


@dataclass(frozen=True)
class Explanation:
    prior_weight: float
    match_weight: float
    probability: float
    fields: list[FieldEvidence]
    hard_rules: list[str]
    action: str


@dataclass
class BatchSummary:
    accounts: int = 0
    candidate_pairs: int = 0
    auto_merges: int = 0
    review: int = 0
    demoted_by_clustering: int = 0
    clusters: int = 0
    merged_pairs: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class IncrementalResult:
    customer_id: str
    action: str  # "none", "review", "auto_merge"
    other_customer_id: str = ""
    probability: float = 0.0
    candidates_compared: int = 0
