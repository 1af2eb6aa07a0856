"""Batch and incremental matching, the review queue, explanations, un-merge.

Merges go through the idp's :class:`MergeService` (so every product account and
identifier resolves to the survivor, and the merge is undoable), each with its
evidence: every comparison's level and weight, the match weight and probability.
The survivor is the customer of the earliest-imported account, so the central
IDs that products already hold stay the ones that resolve.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from singleid import audit, events, paging
from singleid.audit import AuditEntry
from singleid.db import Database, utcnow
from singleid.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from singleid.idp.normalize import IdentifierKind, mask
from singleid.idp.service import CustomerService, MergeService
from singleid.idp.service.types import Lookup, MergeView, Page
from singleid.keyring import Keyring
from singleid.matching import models
from singleid.matching.batch import dedupe
from singleid.matching.model import (
    COMPARISONS,
    CONFLICT_RULES,
    NULL,
    Model,
    PairDecision,
    Scored,
    Thresholds,
    compare,
    decide,
    hard_rules,
)
from singleid.matching.record import Features, Person
from singleid.matching.service import store
from singleid.matching.service.types import (
    AccountRef,
    BatchSummary,
    CandidateView,
    Decision,
    Explanation,
    FieldEvidence,
    IncrementalResult,
    SideBySide,
)
from singleid.matching.settings import MatchSettings

log = logging.getLogger(__name__)
ACTOR = "singleid-matching"
EVENT_SOURCE = "/singleid/matching"
REMEMBERED = ("not_same", "unmerged")
TERMINAL = ("not_same", "unmerged", "merged", "auto_merged")
MAX_INCREMENTAL_CANDIDATES = 200
MAX_OPERATOR = 200


@dataclass(frozen=True)
class _Account:
    pk: int
    product: str
    account_id: str
    customer_id: str
    person: Person


class MatchingService:
    def __init__(self, db: Database, keyring: Keyring,
                 settings: MatchSettings | None = None, *, workers: int = 1) -> None:
        self._db = db
        self._workers = workers
        self._keyring = keyring
        self._customers = CustomerService(db, keyring)
        self._merges = MergeService(db)
        self._models = store.ModelCache(keyring)
        settings = settings or MatchSettings()
        self.thresholds = Thresholds(settings.auto_merge_probability,
                                     settings.review_probability)

    # -- batch ------------------------------------------------------------------------

    def run_batch(self, *, refit: bool = True, actor: str = ACTOR) -> BatchSummary:
        """Fit the model on every account, score the blocked pairs, cluster, merge, queue."""
        with self._db.read() as session:
            accounts = self._load(session)
            saved = store.load_model(session, self._keyring)
            remembered = store.pairs_with_status(session, REMEMBERED)
            decided = store.pairs_with_status(session, (*TERMINAL, "skipped"))
        features = [Features.of(a.person) for a in accounts]
        index_of = {a.pk: n for n, a in enumerate(accounts)}
        excluded = {(min(index_of[a], index_of[b]), max(index_of[a], index_of[b]))
                    for a, b in remembered if a in index_of and b in index_of}

        def conflict(x: int, y: int) -> bool:
            if (min(x, y), max(x, y)) in excluded:
                return True
            rules = hard_rules(features[x], features[y], compare(features[x], features[y]))
            return bool(CONFLICT_RULES.intersection(rules))

        result = dedupe(features, self.thresholds, workers=self._workers,
                        model=None if refit or saved is None else saved, excluded=excluded,
                        conflict=conflict)
        model = result.model
        if refit or saved is None:
            self._db.run_write(lambda s: store.save_model(s, self._keyring, model, utcnow()))
        summary = BatchSummary(accounts=len(accounts), candidate_pairs=result.candidate_pairs)
        decisions, clusters, demoted = result.decisions, result.clusters, result.demoted
        summary.clusters = len(clusters)
        summary.demoted_by_clustering = len(demoted)
        in_cluster = {i: n for n, members in enumerate(clusters) for i in members}
        queue = [d for d in decisions if d.action == "review"] + demoted
        queue = [d for d in queue if in_cluster.get(d.i, -1) != in_cluster.get(d.j, -2)]
        best: dict[tuple[int, int], PairDecision] = {}
        for d in decisions:
            best[(d.i, d.j)] = d
        self._db.run_write(lambda s: self._queue(s, accounts, queue, decided))
        summary.review = len({store.ordered_pair(accounts[d.i].pk, accounts[d.j].pk)
                              for d in queue} - decided)
        for members in clusters:
            merged = self._merge_cluster(accounts, members, best, actor)
            summary.auto_merges += len(merged)
            summary.merged_pairs.extend(merged)
        log.info("batch matching finished", extra={
            "accounts": summary.accounts, "candidate_pairs": summary.candidate_pairs,
            "auto_merges": summary.auto_merges, "review": summary.review,
            "clusters": summary.clusters})
        return summary

    def _load(self, session: Session) -> list[_Account]:
        rows = session.scalars(select(models.LegacyAccount).order_by(models.LegacyAccount.id))
        return [_Account(r.id, r.product_code, r.account_id, r.customer_id,
                         store.open_person(self._keyring, r)) for r in rows]

    def _queue(self, session: Session, accounts: Sequence[_Account],
               queue: Iterable[PairDecision], decided: set[tuple[int, int]]) -> None:
        now = utcnow()
        for d in queue:
            a, b = store.ordered_pair(accounts[d.i].pk, accounts[d.j].pk)
            if (a, b) in decided:
                continue
            self._upsert_pair(session, a, b, d.scored, "review", now)

    @staticmethod
    def _upsert_pair(session: Session, a: int, b: int, scored: Scored, status: str,
                     now: datetime | None = None, merge_id: str | None = None
                     ) -> models.MatchPair:
        now = now or utcnow()
        row = session.scalars(select(models.MatchPair).where(
            models.MatchPair.account_a == a, models.MatchPair.account_b == b)).one_or_none()
        if row is None:
            row = models.MatchPair(account_a=a, account_b=b, created_at=now, status=status,
                                   probability=0.0, match_weight=0.0, evidence={})
            session.add(row)
        row.probability, row.match_weight = scored.probability, scored.match_weight
        row.evidence, row.status = scored.evidence(), status
        if merge_id:
            row.merge_id, row.decided_at, row.operator = merge_id, now, ACTOR
        session.flush()
        return row

    def _survivor(self, customer_id: str) -> str:
        return self._customers.resolve(Lookup(customer_id=customer_id)).customer_id

    def _merge_cluster(self, accounts: Sequence[_Account], members: list[int],
                       best: dict[tuple[int, int], PairDecision], actor: str
                       ) -> list[tuple[int, int]]:
        """Merge a cluster's customers into the earliest account's customer."""
        survivor = self._survivor(accounts[members[0]].customer_id)
        done: list[tuple[int, int]] = []
        audited: list[tuple[int, int, Scored, str]] = []
        for index in members[1:]:
            current = self._survivor(accounts[index].customer_id)
            if current == survivor:
                continue
            links = [d for (i, j), d in best.items()
                     if index in (i, j) and (j if i == index else i) in members]
            link = max(links, key=lambda d: d.scored.match_weight)
            view = self._merges.merge(survivor, current, reason="matching: automatic merge",
                                      evidence=link.scored.evidence(), actor=actor)
            a, b = store.ordered_pair(accounts[link.i].pk, accounts[link.j].pk)
            audited.append((a, b, link.scored, view.merge_id))
            done.append((members[0], index))
        if audited:
            self._db.run_write(lambda session: [
                self._upsert_pair(session, a, b, scored, "auto_merged", merge_id=merge_id)
                for a, b, scored, merge_id in audited])
        return done

    # -- incremental -----------------------------------------------------------------------

    def add_account(self, product: str, account_id: str, customer_id: str, person: Person,
                    *, source: str = "registration") -> int:
        """Keep a (newly registered) account for matching; returns its key."""
        def work(session: Session) -> int:
            row = session.scalars(select(models.LegacyAccount).where(
                models.LegacyAccount.product_code == product,
                models.LegacyAccount.account_id == account_id)).one_or_none()
            now = utcnow()
            sealed = store.seal_person(self._keyring, person)
            if row is None:
                row = models.LegacyAccount(
                    product_code=product, account_id=account_id, customer_id=customer_id,
                    source=source, person_ciphertext=sealed.ciphertext,
                    person_key_id=sealed.key_id,
                    content_hash=store.content_hash(self._keyring, person, ""),
                    created_at=now, updated_at=now)
                session.add(row)
                session.flush()
            store.replace_block_keys(session, self._keyring, row.id, Features.of(person))
            return row.id

        return self._db.run_write(work)

    def match_account(self, product: str, account_id: str, *, actor: str = ACTOR
                      ) -> IncrementalResult:
        """Match one account against everyone it shares a blocking key with.

        Above the upper threshold (and no hard rule) it is merged into the best
        match's customer, which survives; between the thresholds the pair is
        queued for review; otherwise nothing happens.
        """
        with self._db.read() as session:
            me = self._account(session, AccountRef(product, account_id), "account")
            model = self._models.latest(session) or Model.default()
            mine = Features.of(me.person)
            keys = store.block_indexes(self._keyring, mine)
            others = list(session.scalars(
                select(models.LegacyAccount).where(models.LegacyAccount.id.in_(
                    select(models.BlockKey.account_pk).where(
                        models.BlockKey.block_key.in_(keys),
                        models.BlockKey.account_pk != me.pk).distinct()
                    .limit(MAX_INCREMENTAL_CANDIDATES)))))
            remembered = {(a, b) for a, b in session.execute(select(
                models.MatchPair.account_a, models.MatchPair.account_b).where(
                models.MatchPair.status.in_(REMEMBERED),
                or_(models.MatchPair.account_a == me.pk,
                    models.MatchPair.account_b == me.pk)))}
            candidates = [(row, store.open_person(self._keyring, row)) for row in others
                          if store.ordered_pair(row.id, me.pk) not in remembered]
        my_customer = self._survivor(me.customer_id)
        best: tuple[Scored, models.LegacyAccount] | None = None
        for row, person in candidates:
            scored = model.score(mine, Features.of(person))
            if best is None or scored.match_weight > best[0].match_weight:
                best = (scored, row)
        if best is None:
            return IncrementalResult(my_customer, "none", candidates_compared=0)
        scored, other = best
        action = decide(scored, self.thresholds)
        other_customer = self._survivor(other.customer_id)
        if other_customer == my_customer or action == "none":
            return IncrementalResult(my_customer, "none", other_customer, scored.probability,
                                     len(candidates))
        a, b = store.ordered_pair(me.pk, other.id)
        if action == "review":
            self._db.run_write(lambda s: self._upsert_pair(s, a, b, scored, "review", utcnow()))
            return IncrementalResult(my_customer, "review", other_customer, scored.probability,
                                     len(candidates))
        view = self._merges.merge(other_customer, my_customer,
                                  reason="matching: automatic merge at registration",
                                  evidence=scored.evidence(), actor=actor)
        self._db.run_write(lambda s: self._upsert_pair(s, a, b, scored, "auto_merged",
                                                       utcnow(), view.merge_id))
        return IncrementalResult(other_customer, "auto_merge", my_customer, scored.probability,
                                 len(candidates))

    # -- review ----------------------------------------------------------------------------

    def list_review(self, page_size: int = 0, page_token: str = "") -> Page[CandidateView]:
        """Waiting pairs, most valuable first: likeliest merges first, skipped ones last."""
        if page_size < 0:
            raise InvalidArgument("must not be negative", field="page_size")
        size = min(page_size or 50, 500)
        offset = paging.page_token(page_token)
        with self._db.read() as session:
            rows = list(session.scalars(
                select(models.MatchPair)
                .where(models.MatchPair.status.in_(("review", "skipped")))
                .order_by((models.MatchPair.status == "skipped").asc(),
                          models.MatchPair.probability.desc(), models.MatchPair.id)
                .offset(offset).limit(size + 1)))
        more = len(rows) > size
        return Page([_candidate(r) for r in rows[:size]],
                    paging.next_page_token(offset + size if more else None))

    def review_size(self) -> int:
        with self._db.read() as session:
            return int(session.scalar(select(func.count()).select_from(models.MatchPair).where(
                models.MatchPair.status.in_(("review", "skipped")))) or 0)

    def get_candidate(self, candidate_id: int) -> CandidateView:
        with self._db.read() as session:
            row = self._pair(session, candidate_id)
            left = self._load_one(session, row.account_a)
            right = self._load_one(session, row.account_b)
            model = self._models.latest(session) or Model.default()
        scored = model.score(Features.of(left.person), Features.of(right.person))
        base = _candidate(row)
        return CandidateView(
            candidate_id=base.candidate_id, status=base.status, probability=base.probability,
            match_weight=base.match_weight, hard_rules=base.hard_rules,
            left=self._side(left), right=self._side(right),
            fields=_fields(scored, left.person, right.person, masked=True),
            operator=base.operator, decided_at=base.decided_at, merge_id=base.merge_id)

    def decide(self, candidate_id: int, decision: Decision, operator: str,
               reason: str = "", *, audit_entry: AuditEntry | None = None) -> CandidateView:
        """An operator's decision; "not the same person" is remembered for good.

        ``audit_entry``, when given, is appended in the decision's own transaction,
        naming the pair's first customer.
        """
        violations = Violations()
        if not operator.strip():
            violations.add("operator", "must not be empty")
        elif len(operator) > MAX_OPERATOR:
            violations.add("operator", f"at most {MAX_OPERATOR} characters")
        violations.raise_if_any()
        with self._db.read() as session:
            row = self._pair(session, candidate_id)
            if row.status not in ("review", "skipped"):
                raise FailedPrecondition(f"candidate {candidate_id} was already decided: "
                                         f"{row.status}", reason="ALREADY_DECIDED",
                                         field="candidate_id")
            left = self._load_one(session, row.account_a)
            right = self._load_one(session, row.account_b)
            evidence = dict(row.evidence)
        merge_id = None
        status = {Decision.MERGE: "merged", Decision.NOT_SAME: "not_same",
                  Decision.SKIP: "skipped"}[decision]
        if decision is Decision.MERGE:
            survivor, merged = self._survivor(left.customer_id), self._survivor(
                right.customer_id)
            if survivor != merged:
                view = self._merges.merge(survivor, merged,
                                          reason=reason or "matching: merged on review",
                                          evidence={**evidence, "decided_by": "review"},
                                          actor=operator)
                merge_id = view.merge_id

        def apply(session: Session) -> None:
            pair = self._pair(session, candidate_id)
            pair.status, pair.operator, pair.decided_at = status, operator, utcnow()
            pair.merge_id = merge_id or pair.merge_id
            events.emit(session, type="matching.candidate_decided.v1", source=EVENT_SOURCE,
                        subject=f"candidates/{candidate_id}",
                        data={"candidate_id": candidate_id, "decision": status,
                              "merge_id": merge_id or ""})
            if audit_entry is not None:
                audit.append_in(session, replace(audit_entry, customer_id=left.customer_id))

        self._db.run_write(apply)
        log.info("review decision", extra={"candidate_id": candidate_id, "decision": status})
        return self.get_candidate(candidate_id)

    # -- explain and un-merge ----------------------------------------------------------------

    def explain(self, a: AccountRef, b: AccountRef) -> Explanation:
        with self._db.read() as session:
            left = self._account(session, a, "a")
            right = self._account(session, b, "b")
            model = self._models.latest(session) or Model.default()
        scored = model.score(Features.of(left.person), Features.of(right.person))
        return Explanation(prior_weight=scored.prior_weight, match_weight=scored.match_weight,
                           probability=scored.probability,
                           fields=_fields(scored, left.person, right.person, masked=True),
                           hard_rules=list(scored.hard_rules),
                           action=decide(scored, self.thresholds))

    def unmerge(self, merged_customer_id: str, operator: str, reason: str) -> MergeView:
        """Undo a merge; the pairs behind it are remembered as not to be merged again."""
        view = self._merges.unmerge(merged_customer_id, reason=reason, actor=operator)

        def apply(session: Session) -> None:
            session.execute(update(models.MatchPair).where(
                models.MatchPair.merge_id == view.merge_id).values(
                status="unmerged", operator=operator, decided_at=utcnow()))
            events.emit(session, type="matching.merge_undone.v1", source=EVENT_SOURCE,
                        subject=f"customers/{view.merged_customer_id}",
                        data={"merge_id": view.merge_id,
                              "survivor_customer_id": view.survivor_customer_id,
                              "merged_customer_id": view.merged_customer_id})

        self._db.run_write(apply)
        return view

    # -- helpers ---------------------------------------------------------------------------

    def _account(self, session: Session, ref: AccountRef, field: str) -> _Account:
        if not ref.product or not ref.account_id:
            raise InvalidArgument("give a product and an account ID", field=field)
        row = session.scalars(select(models.LegacyAccount).where(
            models.LegacyAccount.product_code == ref.product,
            models.LegacyAccount.account_id == ref.account_id)).one_or_none()
        if row is None:
            raise NotFound(f"no legacy account {ref.product}/{ref.account_id}",
                           reason="ACCOUNT_NOT_FOUND", field=field)
        return _Account(row.id, row.product_code, row.account_id, row.customer_id,
                        store.open_person(self._keyring, row))

    def _load_one(self, session: Session, pk: int) -> _Account:
        row = session.get(models.LegacyAccount, pk)
        assert row is not None
        return _Account(row.id, row.product_code, row.account_id, row.customer_id,
                        store.open_person(self._keyring, row))

    @staticmethod
    def _pair(session: Session, candidate_id: int) -> models.MatchPair:
        row = session.get(models.MatchPair, candidate_id)
        if row is None:
            raise NotFound(f"no candidate {candidate_id}", reason="CANDIDATE_NOT_FOUND",
                           field="candidate_id")
        return row

    def _side(self, account: _Account) -> SideBySide:
        return SideBySide(product=account.product, account_id=account.account_id,
                          customer_id=account.customer_id,
                          current_customer_id=self._survivor(account.customer_id),
                          values=_shown(account.person))


_MASKED = {"phone": IdentifierKind.PHONE, "email": IdentifierKind.EMAIL,
           "passport": IdentifierKind.PASSPORT}


def _shown(person: Person) -> dict[str, str]:
    """What an operator sees: names, dates and places; identifiers masked."""
    values = person.to_dict()
    return {k: mask(_MASKED[k], v) if k in _MASKED else v for k, v in values.items()}


def _fields(scored: Scored, left: Person, right: Person, *, masked: bool) -> list[FieldEvidence]:
    shown_left = _shown(left) if masked else left.to_dict()
    shown_right = _shown(right) if masked else right.to_dict()
    out = []
    for comparison, level, weight in zip(COMPARISONS, scored.levels, scored.weights,
                                         strict=True):
        out.append(FieldEvidence(
            comparison=comparison.name,
            level="null" if level == NULL else comparison.levels[level], weight=weight,
            left=shown_left.get(comparison.name, ""), right=shown_right.get(comparison.name, "")))
    return out


def _candidate(row: models.MatchPair) -> CandidateView:
    rules = row.evidence.get("hard_rules", "")
    return CandidateView(candidate_id=row.id, status=row.status, probability=row.probability,
                         match_weight=row.match_weight,
                         hard_rules=[r for r in rules.split(",") if r],
                         operator=row.operator or "", decided_at=row.decided_at,
                         merge_id=row.merge_id or "")
