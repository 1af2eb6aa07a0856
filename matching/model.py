"""The match model: blocking, comparison levels, Fellegi-Sunter weights, hard rules, clusters.

Pure Python over :class:`~singleid.matching.record.Features`; no database. The
service persists a fitted :class:`Model` and runs it in batch and incrementally.

- **Comparisons** give each pair one *level* per field (exact, transliteration,
  Jaro-Winkler bands, phonetic, date distance, ...), or *null* when a side lacks
  the field (null adds no evidence).
- **Fellegi-Sunter**: each level has m = P(level | same person) and u =
  P(level | different persons); the match weight is log2(λ/(1-λ)) plus the sum
  of log2(m/u), and the probability is 2^w / (1 + 2^w). u comes from random
  pairs (almost all non-matches), m and λ from EM over the blocked pairs.
- **Term frequency**: an exact agreement on a common value (Иванов, a family's
  phone, Москва) is weaker evidence than on a rare one: its u is the value's
  frequency instead of the level's average.
- **Hard rules** cap a pair at review, whatever its weight (see :func:`hard_rules`).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein
from rapidfuzz.fuzz import token_set_ratio

from singleid.matching.names import Gender
from singleid.matching.normalize import date_candidates
from singleid.matching.record import Features

NULL = -1
MAX_BIRTH_DAYS_APART = 365
MAX_BLOCK_SIZE = 60
U_SAMPLE_PAIRS = 200_000
EM_ITERATIONS = 25


@dataclass(frozen=True)
class Comparison:
    name: str
    levels: tuple[str, ...]            # best first; the last is "disagree"
    compare: Callable[[Features, Features], int]
    tf_value: Callable[[Features], str] | None = None   # term-frequency adjusted exact level
    default_m: tuple[float, ...] = ()


def _jw(a: str, b: str) -> float:
    return float(JaroWinkler.normalized_similarity(a, b))


def _first_name(a: Features, b: Features) -> int:
    if not a.first or not b.first:
        return NULL
    if a.first == b.first:
        return 0
    if (a.first_full == b.first_full or a.first_skel == b.first_skel
            or a.first_forms & b.first_forms or _swapped(a, b)):
        return 1  # Саша ~ Александр, Yuliya ~ Юлия; or first and last name swapped
    if _jw(a.first_skel, b.first_skel) >= 0.88 or _jw(a.first_full, b.first_full) >= 0.88:
        return 2
    # Иогрь ~ Игорь, Зиа ~ Зина (Зинаида): a typo, often in a short form. Two known
    # names stay different however close (Валя and Галя are two women).
    if not (a.first_known and b.first_known) and (
            _one_edit_apart(a.first_cyr, b.first_spellings)
            or _one_edit_apart(b.first_cyr, a.first_spellings)):
        return 3
    return 4


def _swapped(a: Features, b: Features) -> bool:
    """Иванов Иван against Иван Иванов: each side's first name is the other's last."""
    return (bool(a.first_skel and a.last_skel and b.first_skel and b.last_skel)
            and a.first_skel != a.last_skel
            and _jw(a.first_skel, b.last_skel) >= 0.88 and _jw(a.last_skel, b.first_skel) >= 0.88)


def _one_edit_apart(name: str, spellings: frozenset[str]) -> bool:
    """One insertion, deletion, substitution or swap of neighbours from any spelling."""
    return len(name) >= 3 and any(OSA.distance(name, s, score_cutoff=1) <= 1
                                  for s in spellings)


def _last_name(a: Features, b: Features) -> int:
    if not a.last or not b.last:
        return NULL
    if a.last == b.last:
        return 0
    if a.last_skel == b.last_skel or _swapped(a, b):
        return 1  # Щербаков ~ Shcherbakov ~ Scherbakov; or the names swapped
    # Иванов ~ Иванова: the same family name in the other gender's form.
    if a.last_phon == b.last_phon or _jw(a.last_skel, b.last_skel) >= 0.92:
        return 2
    if _jw(a.last_skel, b.last_skel) >= 0.8:
        return 3
    return 4


def _middle_name(a: Features, b: Features) -> int:
    if not a.middle_skel or not b.middle_skel:
        return NULL
    if a.middle_skel == b.middle_skel:
        return 0
    if _jw(a.middle_skel, b.middle_skel) >= 0.88:
        return 1
    return 2


def _birth_date(a: Features, b: Features) -> int:
    if a.birth is None or b.birth is None:
        return NULL
    if a.birth == b.birth:
        return 0
    if b.birth in date_candidates(a.birth):
        return 1  # day and month swapped
    if Levenshtein.distance(a.birth.isoformat(), b.birth.isoformat()) == 1:
        return 2  # one mistyped digit
    if abs((a.birth - b.birth).days) <= MAX_BIRTH_DAYS_APART:
        return 3
    return 4


def _exact(attr: str) -> Callable[[Features, Features], int]:
    def compare(a: Features, b: Features) -> int:
        x, y = getattr(a.person, attr), getattr(b.person, attr)
        if not x or not y:
            return NULL
        return 0 if x == y else 1
    return compare


def _city(a: Features, b: Features) -> int:
    """The cities, or one side's city against the other's address (г москва ул ...)."""
    x, y = a.person.city, b.person.city
    if x and y:
        return 0 if x == y else 1
    if (x and _address_in(x, b.person.address)) or (y and _address_in(y, a.person.address)):
        return 0
    return NULL


def _address_in(city: str, address: str) -> bool:
    return address.removeprefix("г ").startswith(city + " ")


def _email(a: Features, b: Features) -> int:
    x, y = a.person.email, b.person.email
    if not x or not y:
        return NULL
    if x == y:
        return 0
    if _jw(x.partition("@")[0], y.partition("@")[0]) >= 0.92:
        return 1
    return 2


def _passport(a: Features, b: Features) -> int:
    x, y = a.person.passport, b.person.passport
    if not x or not y:
        return NULL
    if x == y:
        return 0
    if OSA.distance(x, y) == 1:
        return 1  # one digit mistyped, or two neighbours swapped
    return 2


# Optional words of an address ("г", "ул", "д", "кв"): one system writes them, another not.
_DESIGNATORS = re.compile(r"\b(?:г|ул|д|кв|к|пр|пер)\b ?")


def _address(a: Features, b: Features) -> int:
    x, y = a.person.address, b.person.address
    if not x or not y:
        return NULL
    score = token_set_ratio(_DESIGNATORS.sub("", x), _DESIGNATORS.sub("", y))
    if score >= 95:
        return 0
    if score >= 75:
        return 1
    return 2


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("first_name", ("exact", "diminutive_or_translit", "jaro_winkler_0.88",
                              "one_edit_from_a_spelling", "else"),
               _first_name, tf_value=lambda f: f.first_full,
               default_m=(0.75, 0.17, 0.04, 0.02, 0.02)),
    Comparison("last_name", ("exact", "translit", "phonetic_or_jw_0.92", "jaro_winkler_0.8",
                             "else"), _last_name, tf_value=lambda f: f.last_skel,
               default_m=(0.7, 0.1, 0.1, 0.03, 0.07)),
    Comparison("middle_name", ("exact_or_translit", "jaro_winkler_0.88", "else"), _middle_name,
               default_m=(0.9, 0.07, 0.03)),
    Comparison("birth_date", ("exact", "day_month_swapped", "one_digit_typo", "within_1_year",
                              "else"), _birth_date, default_m=(0.9, 0.03, 0.04, 0.01, 0.02)),
    Comparison("phone", ("exact", "else"), _exact("phone"), tf_value=lambda f: f.person.phone,
               default_m=(0.7, 0.3)),
    Comparison("email", ("exact", "jaro_winkler_0.92", "else"), _email,
               tf_value=lambda f: f.person.email, default_m=(0.7, 0.05, 0.25)),
    Comparison("passport", ("exact", "one_digit_typo", "else"), _passport,
               default_m=(0.93, 0.05, 0.02)),
    Comparison("city", ("exact", "else"), _city, tf_value=lambda f: f.person.city,
               default_m=(0.8, 0.2)),
    Comparison("address", ("same", "similar", "else"), _address, default_m=(0.6, 0.2, 0.2)),
)
BY_NAME = {c.name: c for c in COMPARISONS}
# Weak priors for estimation: what disagreement looks like among strangers, and how
# many pseudo-pairs the defaults count for (EM's m, and u from random pairs).
DEFAULT_U = {c.name: [0.002] * (len(c.levels) - 1) + [1 - 0.002 * (len(c.levels) - 1)]
             for c in COMPARISONS}
PRIOR_PAIRS_M = 20.0
PRIOR_PAIRS_U = 200.0


def compare(a: Features, b: Features) -> tuple[int, ...]:
    return tuple(c.compare(a, b) for c in COMPARISONS)


# -- blocking -----------------------------------------------------------------

def blocking_keys(f: Features) -> list[str]:
    """The blocking rules: a pair is compared when it shares at least one key.

    Exact identifiers; birth date (and its day/month swap) with the surname's
    sound or the first name's full form (married surnames, typos in the
    surname); names without the date (typos in the date), with and without the
    patronymic's initial. Blocks larger than ``MAX_BLOCK_SIZE`` are not compared
    in batch (a shared call-centre phone says nothing).
    """
    p = f.person
    keys: list[str] = []
    if p.phone:
        keys.append("ph:" + p.phone)
    if p.email:
        keys.append("em:" + p.email)
    if p.passport:
        keys.append("pp:" + p.passport)
    if f.birth is not None:
        for i, born in enumerate(date_candidates(f.birth)):
            if f.last_phon:
                keys.append(f"bl{i}:{born.isoformat()}:{f.last_phon}")
            if f.first_full:
                keys.append(f"bf:{born.isoformat()}:{f.first_full}")
            if i == 0 and f.first_skel and f.last_skel:  # first and last name swapped
                keys.append(f"bx:{born.isoformat()}:" + ":".join(sorted((f.first_skel,
                                                                        f.last_skel))))
    if f.last_skel and f.first_full:
        keys.append(f"nm:{f.last_phon}:{f.first_full}:{f.middle_skel[:1]}")
        if f.middle_skel:  # a side without a patronymic meets one with it
            keys.append(f"nm:{f.last_phon}:{f.first_full}:")
    return keys


def candidate_pairs(features: Sequence[Features]) -> set[tuple[int, int]]:
    blocks: dict[str, list[int]] = {}
    for i, f in enumerate(features):
        for key in blocking_keys(f):
            blocks.setdefault(key, []).append(i)
    pairs: set[tuple[int, int]] = set()
    for members in blocks.values():
        if 1 < len(members) <= MAX_BLOCK_SIZE:
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    pairs.add((members[x], members[y]))
    return pairs


# -- the fitted model -----------------------------------------------------------

@dataclass
class Model:
    """m and u for every level of every comparison, the prior λ, and term frequencies."""

    m: dict[str, list[float]]
    u: dict[str, list[float]]
    prior: float
    tf: dict[str, dict[str, float]] = field(default_factory=dict)
    records: int = 0

    @classmethod
    def default(cls) -> Model:
        return cls(m={c.name: list(c.default_m) for c in COMPARISONS},
                   u={name: list(u) for name, u in DEFAULT_U.items()}, prior=1e-4)

    def to_dict(self) -> dict[str, Any]:
        return {"m": self.m, "u": self.u, "prior": self.prior, "tf": self.tf,
                "records": self.records}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Model:
        return cls(m=doc["m"], u=doc["u"], prior=doc["prior"], tf=doc.get("tf", {}),
                   records=doc.get("records", 0))

    def fits_comparisons(self) -> bool:
        """Whether it was fitted for today's comparisons (a saved model may predate a level)."""
        return all(len(self.m.get(c.name, ())) == len(self.u.get(c.name, ())) == len(c.levels)
                   for c in COMPARISONS)

    def level_weight(self, comparison: Comparison, level: int, a: Features) -> float:
        """log2(m/u) of one comparison at one level, term-frequency adjusted."""
        if level == NULL:
            return 0.0
        m = self.m[comparison.name][level]
        u = self.u[comparison.name][level]
        if level == 0 and comparison.tf_value is not None:
            table = self.tf.get(comparison.name, {})
            value = comparison.tf_value(a)
            if value in table:
                u = tf_u(table[value], u)
        return math.log2(max(m, 1e-6) / max(u, 1e-9))

    def score(self, a: Features, b: Features) -> Scored:
        levels = compare(a, b)
        weights = tuple(self.level_weight(c, lv, a) for c, lv in zip(COMPARISONS, levels,
                                                                      strict=True))
        prior_weight = math.log2(self.prior / (1 - self.prior))
        total = prior_weight + sum(weights)
        return Scored(levels, weights, prior_weight, total, _probability(total),
                      tuple(hard_rules(a, b, levels)))


@dataclass(frozen=True)
class Scored:
    levels: tuple[int, ...]
    weights: tuple[float, ...]
    prior_weight: float
    match_weight: float
    probability: float
    hard_rules: tuple[str, ...]

    def evidence(self) -> dict[str, str]:
        """Comparison levels and weights, no personal values: for the merge's audit."""
        out = {"model": "fellegi-sunter", "match_weight": f"{self.match_weight:.2f}",
               "probability": f"{self.probability:.6f}",
               "prior_weight": f"{self.prior_weight:.2f}"}
        for comparison, level, weight in zip(COMPARISONS, self.levels, self.weights,
                                             strict=True):
            label = "null" if level == NULL else comparison.levels[level]
            out[comparison.name] = f"{label} {weight:+.2f}"
        if self.hard_rules:
            out["hard_rules"] = ",".join(self.hard_rules)
        return out


TF_MIN_RECORDS = 1000


def tf_u(share: float, level_u: float) -> float:
    """u of an exact agreement on a value with this share, kept within 1/20 to 20x the level's."""
    return min(max(share, level_u * 0.05), level_u * 20)


def _probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds: float = 2.0 ** weight
    return odds / (1 + odds)


STRONG_IDENTIFIERS = ("phone", "email", "passport")
# Fields whose "else" level says "someone else" when no identifier agrees.
CONTRADICTING = ("phone", "email", "passport", "address", "city")
# Rules that contradict identity; they also keep clusters from chaining (see cluster).
CONFLICT_RULES = frozenset({"PASSPORTS_DIFFER", "BIRTH_DATES_FAR", "FIRST_NAMES_DIFFER",
                            "PATRONYMICS_DIFFER", "GENDERS_DIFFER", "IDENTIFIERS_DIFFER"})


def hard_rules(a: Features, b: Features, levels: tuple[int, ...]) -> list[str]:
    """Why a pair must never merge automatically, however high its weight.

    - PASSPORTS_DIFFER: both have a passport and they differ (beyond one typo);
    - BIRTH_DATES_FAR: birth dates more than a year apart (and not a swap or
      typo), unless the passports, first names and patronymics agree;
    - FIRST_NAMES_DIFFER: first names that are not one name in any spelling or
      diminutive, nor one typo from one (twins and family members share
      everything else), unless the passports and birth dates agree;
    - PATRONYMICS_DIFFER: likewise for patronymics (a mother and a daughter of
      one name, at one phone);
    - GENDERS_DIFFER: the patronymics (or surname forms) say different genders;
    - IDENTIFIERS_DIFFER: no phone, email, passport or address agrees, and one
      of them (or the city) differs: namesakes share names and a birth date,
      so those merge alone only when nothing on record says "someone else";
    - NO_SHARED_IDENTIFIER: no identifier agrees and neither do the birth
      dates: names alone.
    """
    by = dict(zip((c.name for c in COMPARISONS), levels, strict=True))
    rules = []
    if by["passport"] == 2:
        rules.append("PASSPORTS_DIFFER")
    # One passport is one person: with it, a wrong first name or birth date is a
    # typing error, not a twin (twins have passports of their own). A child's
    # account opened on a parent's passport still differs in name or patronymic.
    same_passport = by["passport"] == 0
    if by["birth_date"] == 4 and not (same_passport and by["first_name"] <= 2
                                      and by["middle_name"] != 2):
        rules.append("BIRTH_DATES_FAR")
    if by["first_name"] == 4 and not (same_passport and by["birth_date"] in (0, 1, 2)):
        rules.append("FIRST_NAMES_DIFFER")
    if by["middle_name"] == 2 and not (same_passport and by["birth_date"] in (0, 1, 2)):
        rules.append("PATRONYMICS_DIFFER")
    if Gender.UNKNOWN not in (a.gender, b.gender) and a.gender != b.gender:
        rules.append("GENDERS_DIFFER")
    shared = any(by[name] == 0 for name in (*STRONG_IDENTIFIERS, "address"))
    if not shared and by["passport"] != 1:  # a passport one typo off still names one person
        if any(by[name] == len(BY_NAME[name].levels) - 1 for name in CONTRADICTING):
            rules.append("IDENTIFIERS_DIFFER")
        if by["birth_date"] not in (0, 1, 2) or not (by["city"] == 0 or by["address"] == 1):
            rules.append("NO_SHARED_IDENTIFIER")
    return rules


# -- estimation -------------------------------------------------------------------

def term_frequencies(features: Sequence[Features]) -> dict[str, dict[str, float]]:
    """For each term-frequency comparison: value -> its share of the records.

    Empty below ``TF_MIN_RECORDS`` records, where a share says nothing (two
    records sharing a surname would make it "everyone's").
    """
    out: dict[str, dict[str, float]] = {}
    if len(features) < TF_MIN_RECORDS:
        return out
    n = len(features)
    for comparison in COMPARISONS:
        if comparison.tf_value is None:
            continue
        counts = Counter(v for f in features if (v := comparison.tf_value(f)))
        out[comparison.name] = {v: c / n for v, c in counts.items() if c > 1}
    return out


def _level_matrix(features: Sequence[Features], pairs: Iterable[tuple[int, int]]
                  ) -> np.ndarray[Any, np.dtype[np.int8]]:
    rows = [compare(features[i], features[j]) for i, j in pairs]
    if not rows:
        return np.zeros((0, len(COMPARISONS)), dtype=np.int8)
    return np.asarray(rows, dtype=np.int8)


def estimate_u(features: Sequence[Features], *, sample: int = U_SAMPLE_PAIRS,
               seed: int = 7) -> dict[str, list[float]]:
    """u from random pairs: among random pairs almost none is a match."""
    n = len(features)
    rng = random.Random(seed)  # noqa: S311 - sampling pairs, not secrets
    count = min(sample, n * (n - 1) // 2)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < count:
        i, j = rng.randrange(n), rng.randrange(n)
        if i != j:
            pairs.add((min(i, j), max(i, j)))
    matrix = _level_matrix(features, sorted(pairs))
    return {c.name: _frequencies(matrix[:, k], len(c.levels), prior=DEFAULT_U[c.name],
                                 strength=PRIOR_PAIRS_U)
            for k, c in enumerate(COMPARISONS)}


def _frequencies(column: np.ndarray[Any, np.dtype[np.int8]], levels: int,
                 weights: np.ndarray[Any, np.dtype[np.float64]] | None = None,
                 prior: Sequence[float] = (), strength: float = 0.0) -> list[float]:
    """Level shares, with ``strength`` pseudo-observations spread as ``prior`` says.

    The pseudo-observations keep a small data set (a handful of accounts) from
    estimating nonsense; on real volumes they vanish in the counts.
    """
    mask = column != NULL
    w = np.ones(len(column)) if weights is None else weights
    totals = np.array([w[mask & (column == lv)].sum() for lv in range(levels)]) + 0.5
    if prior:
        totals = totals + strength * np.asarray(prior, dtype=float)
    return [float(x) for x in totals / totals.sum()]


def estimate_m(features: Sequence[Features], pairs: Sequence[tuple[int, int]],
               u: dict[str, list[float]], *, iterations: int = EM_ITERATIONS
               ) -> tuple[dict[str, list[float]], float]:
    """m and the prior among blocked pairs by EM, with u held fixed."""
    return estimate_m_levels(_level_matrix(features, pairs), u, iterations=iterations)


def estimate_m_levels(matrix: np.ndarray[Any, np.dtype[np.int8]], u: dict[str, list[float]],
                      *, iterations: int = EM_ITERATIONS
                      ) -> tuple[dict[str, list[float]], float]:
    """EM over a ready level matrix (one row per blocked pair)."""
    if len(matrix) == 0:
        default = Model.default()
        return default.m, default.prior
    patterns, counts = np.unique(matrix, axis=0, return_counts=True)
    m = {c.name: list(c.default_m) for c in COMPARISONS}
    share = 0.1
    for _ in range(iterations):
        log_m = np.zeros(len(patterns))
        log_u = np.zeros(len(patterns))
        for k, c in enumerate(COMPARISONS):
            col = patterns[:, k]
            known = col != NULL
            log_m[known] += np.log(np.asarray(m[c.name])[col[known]])
            log_u[known] += np.log(np.asarray(u[c.name])[col[known]])
        odds = np.exp(np.clip(log_m - log_u, -700, 700)) * share / (1 - share)
        posterior = odds / (1 + odds)
        weighted = posterior * counts
        share = float(np.clip(weighted.sum() / counts.sum(), 1e-6, 1 - 1e-6))
        for k, c in enumerate(COMPARISONS):
            m[c.name] = _frequencies(patterns[:, k], len(c.levels), weighted,
                                     prior=c.default_m, strength=PRIOR_PAIRS_M)
    return m, share


def fit(features: Sequence[Features], pairs: Sequence[tuple[int, int]] | None = None, *,
        seed: int = 7) -> Model:
    """Estimate a model from unlabelled records: u from random pairs, m by EM, λ."""
    if pairs is None:
        pairs = sorted(candidate_pairs(features))
    u = estimate_u(features, seed=seed,
                   sample=min(U_SAMPLE_PAIRS, max(20_000, 30 * len(features))))
    m, share = estimate_m(features, pairs, u)
    n = max(len(features), 2)
    # λ over all pairs: the blocked pairs' match share, scaled to every possible pair.
    prior = min(max(share * len(pairs) / (n * (n - 1) / 2), 1e-9), 0.5)
    return Model(m=m, u=u, prior=prior, tf=term_frequencies(features), records=len(features))


def fit_levels(features: Sequence[Features], levels: np.ndarray[Any, np.dtype[np.int8]], *,
               seed: int = 7) -> Model:
    """:func:`fit` over the blocked pairs' level matrix, computed once elsewhere."""
    u = estimate_u(features, seed=seed,
                   sample=min(U_SAMPLE_PAIRS, max(20_000, 30 * len(features))))
    m, share = estimate_m_levels(levels, u)
    n = max(len(features), 2)
    prior = min(max(share * len(levels) / (n * (n - 1) / 2), 1e-9), 0.5)
    return Model(m=m, u=u, prior=prior, tf=term_frequencies(features), records=len(features))


def fit_labelled(features: Sequence[Features], pairs: Sequence[tuple[int, int]],
                 labels: Sequence[bool], u: dict[str, list[float]] | None = None) -> Model:
    """Estimate m (and, without ``u``, u too) from pairs labelled match or not."""
    matrix = _level_matrix(features, pairs)
    truth = np.asarray(labels, dtype=bool)
    m = {c.name: _frequencies(matrix[truth, k], len(c.levels))
         for k, c in enumerate(COMPARISONS)}
    if u is None:
        u = {c.name: _frequencies(matrix[~truth, k], len(c.levels))
             for k, c in enumerate(COMPARISONS)}
    n = max(len(features), 2)
    prior = min(max(float(truth.sum()) / (n * (n - 1) / 2), 1e-9), 0.5)
    return Model(m=m, u=u, prior=prior, tf=term_frequencies(features), records=len(features))


# -- decisions and clusters -----------------------------------------------------------

@dataclass(frozen=True)
class Thresholds:
    auto_merge: float = 0.999
    review: float = 0.5


@dataclass(frozen=True)
class PairDecision:
    i: int
    j: int
    scored: Scored
    action: str  # "auto_merge", "review"


def decide(scored: Scored, thresholds: Thresholds) -> str:
    if scored.probability >= thresholds.auto_merge and not scored.hard_rules:
        return "auto_merge"
    if scored.probability >= thresholds.review:
        return "review"
    return "none"


class _Clusters:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.members: dict[int, list[int]] = {}

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def of(self, root: int) -> list[int]:
        return self.members.get(root, [root])

    def union(self, a: int, b: int) -> None:
        self.members[a] = self.of(a) + self.of(b)
        self.members.pop(b, None)
        self.parent[b] = a


MAX_CLUSTER_SIZE = 25
AMBIGUITY_MARGIN = 5.0


def _ambiguous(merges: Sequence[PairDecision], conflict: Callable[[int, int], bool]
               ) -> set[int]:
    """Records about as confidently like two records that conflict with each other.

    A sparse account (names and a birth date) of one of two namesakes matches
    both equally; whichever edge came first would decide who it belongs to. It
    joins neither automatically: its pairs go to review. When one partner is
    far likelier (``AMBIGUITY_MARGIN`` bits) the strongest-first clustering
    decides instead.
    """
    near: dict[int, list[tuple[float, int]]] = {}
    for d in merges:
        near.setdefault(d.i, []).append((d.scored.match_weight, d.j))
        near.setdefault(d.j, []).append((d.scored.match_weight, d.i))
    out = set()
    for record, edges in near.items():
        if len(edges) < 2:
            continue
        best = max(w for w, _ in edges)
        close = [x for w, x in edges if w >= best - AMBIGUITY_MARGIN][:MAX_CLUSTER_SIZE]
        if any(conflict(x, y) for k, x in enumerate(close) for y in close[k + 1:]):
            out.add(record)
    return out


def cluster(n: int, decisions: Sequence[PairDecision],
            conflict: Callable[[int, int], bool]) -> tuple[list[list[int]], list[PairDecision]]:
    """Group records by auto-merge edges, strongest first, without transitive chaining.

    The rule: two clusters join only when no record of one conflicts with any
    record of the other (``conflict``: a hard rule, or a "not the same person"
    decision). So A~B and B~C cannot glue A to C when A and C are twins or have
    different passports. A record whose auto-merge partners conflict with each
    other is ambiguous and joins no one (:func:`_ambiguous`). A refused edge goes
    to review instead. Clusters stop at ``MAX_CLUSTER_SIZE`` records.
    Returns the clusters (more than one record) and the decisions demoted to review.
    """
    clusters = _Clusters(n)
    merges = [d for d in decisions if d.action == "auto_merge"]
    ambiguous = _ambiguous(merges, conflict)
    demoted = [PairDecision(d.i, d.j, d.scored, "review") for d in merges
               if d.i in ambiguous or d.j in ambiguous]
    for d in sorted((d for d in merges if d.i not in ambiguous and d.j not in ambiguous),
                    key=lambda d: -d.scored.match_weight):
        ra, rb = clusters.find(d.i), clusters.find(d.j)
        if ra == rb:
            continue
        left, right = clusters.of(ra), clusters.of(rb)
        if (len(left) + len(right) > MAX_CLUSTER_SIZE
                or any(conflict(x, y) for x in left for y in right)):
            demoted.append(PairDecision(d.i, d.j, d.scored, "review"))
            continue
        clusters.union(ra, rb)
    return [sorted(m) for m in clusters.members.values() if len(m) > 1], demoted
