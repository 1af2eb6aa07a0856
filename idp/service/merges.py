"""Merging two customers under one central ID, and undoing it.

A merge moves the merged-away customer's product accounts, identifiers and
aliases to the survivor, and keeps the merged-away ID as an alias, so every
old reference still resolves. It records exactly what it moved, which is what
makes the un-merge exact: the ID comes back with what it brought, and what was
added to the survivor since stays there.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from singleid import events, idempotency
from singleid.db import Database, utcnow
from singleid.errors import FailedPrecondition, InvalidArgument, Violations
from singleid.idp import ids, models
from singleid.idp.service import records, validation
from singleid.idp.service.customers import EVENT_SOURCE
from singleid.idp.service.types import CustomerState, MergeView
from singleid.plugins import load_plugins


@functools.cache
def _merge_hooks() -> tuple[Any, ...]:
    """Other domains' ``singleid.merge_hooks``: called in the merge's own transaction.

    Looked up once: reading the installed distributions' entry points costs
    about 7 ms, more than the rest of a merge.
    """
    return tuple(load_plugins("singleid.merge_hooks"))


class MergeService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def merge(self, survivor_id: str, merged_id: str, reason: str,
              evidence: dict[str, str] | None = None, actor: str = "",
              idempotency_key: str = "") -> MergeView:
        evidence = dict(evidence or {})
        violations = Violations()
        validation.customer_id(violations, "survivor_customer_id", survivor_id)
        validation.customer_id(violations, "merged_customer_id", merged_id)
        validation.text(violations, "reason", reason, limit=validation.MAX_REASON, required=True)
        validation.text(violations, "actor", actor, limit=validation.MAX_ACTOR, required=True)
        validation.evidence(violations, "evidence", evidence)
        violations.raise_if_any()
        if survivor_id == merged_id:
            raise InvalidArgument("a customer cannot be merged into itself",
                                  field="merged_customer_id", reason="SELF_MERGE")
        request = {"survivor": survivor_id, "merged": merged_id, "reason": reason,
                   "evidence": evidence, "actor": actor}
        return self._db.run_write(lambda s: idempotency.run_once(
            s, "MergeCustomers", idempotency_key, request,
            lambda: self._merge(s, survivor_id, merged_id, reason, evidence, actor), MergeView))

    def _merge(self, session: Session, survivor_id: str, merged_id: str, reason: str,
               evidence: dict[str, str], actor: str) -> MergeView:
        records.lock_customers(session, [survivor_id, merged_id])
        survivor = records.customer(session, survivor_id, "survivor_customer_id")
        merged = records.customer(session, merged_id, "merged_customer_id")
        for row, field in ((survivor, "survivor_customer_id"), (merged, "merged_customer_id")):
            if not records.is_active(row):
                raise FailedPrecondition(f"customer {row.id} is already merged into "
                                         f"{row.merged_into}", reason="ALREADY_MERGED",
                                         field=field, subject=f"customers/{row.id}")
        now = utcnow()
        moved = {
            "accounts": _move_accounts(session, merged.id, survivor.id),
            "identifiers": _move_identifiers(session, merged.id, survivor.id),
            "aliases": _move_aliases(session, merged.id, survivor.id),
        }
        merged.state, merged.merged_into, merged.updated_at = (
            CustomerState.MERGED.value, survivor.id, now)
        survivor.updated_at = now
        session.execute(update(models.MatchCandidate).where(
            models.MatchCandidate.status == "open",
            models.MatchCandidate.customer_id.in_([survivor.id, merged.id]),
            models.MatchCandidate.other_customer_id.in_([survivor.id, merged.id]),
        ).values(status="merged"))
        merge = models.Merge(id=ids.new_id(), survivor_id=survivor.id, merged_id=merged.id,
                             reason=reason, evidence=evidence, actor=actor, moved=moved,
                             merged_at=now)
        session.add(merge)
        events.emit(session, type="customer.merged.v1", source=EVENT_SOURCE, subject=survivor.id,
                    data={"merge_id": merge.id, "survivor_customer_id": survivor.id,
                          "merged_customer_id": merged.id})
        for hook in _merge_hooks():
            hook.merged(session, survivor.id, merged.id, merge.id)
        return _view(merge)

    def unmerge(self, merged_id: str, reason: str, actor: str = "",
                idempotency_key: str = "") -> MergeView:
        violations = Violations()
        validation.customer_id(violations, "merged_customer_id", merged_id)
        validation.text(violations, "reason", reason, limit=validation.MAX_REASON, required=True)
        validation.text(violations, "actor", actor, limit=validation.MAX_ACTOR, required=True)
        violations.raise_if_any()
        request = {"merged": merged_id, "reason": reason, "actor": actor}
        return self._db.run_write(lambda s: idempotency.run_once(
            s, "UnmergeCustomer", idempotency_key, request,
            lambda: self._unmerge(s, merged_id, reason, actor), MergeView))

    def _unmerge(self, session: Session, merged_id: str, reason: str, actor: str) -> MergeView:
        merged = records.customer(session, merged_id, "merged_customer_id")
        merge = _open_merge(session, merged.id)
        if merge is not None:
            # Lock both and read again: a concurrent merge or un-merge may have moved them.
            records.lock_customers(session, [merged.id, merge.survivor_id])
            merge = _open_merge(session, merged.id)
        if records.is_active(merged) or merge is None:
            raise FailedPrecondition(f"customer {merged.id} is not merged", reason="NOT_MERGED",
                                     field="merged_customer_id",
                                     subject=f"customers/{merged.id}")
        if merged.merged_into != merge.survivor_id:
            raise FailedPrecondition(
                f"the survivor {merge.survivor_id} was itself merged into {merged.merged_into} "
                "since; unmerge that first", reason="LATER_MERGE_FIRST",
                field="merged_customer_id", subject=f"customers/{merge.survivor_id}")
        now = utcnow()
        _move_back(session, merge.moved, merge.survivor_id, merged.id)
        merged.state, merged.merged_into, merged.updated_at = (
            CustomerState.ACTIVE.value, None, now)
        records.customer(session, merge.survivor_id).updated_at = now
        merge.unmerged_at, merge.unmerge_reason, merge.unmerge_actor = now, reason, actor
        events.emit(session, type="customer.unmerged.v1", source=EVENT_SOURCE,
                    subject=merged.id,
                    data={"merge_id": merge.id, "survivor_customer_id": merge.survivor_id,
                          "merged_customer_id": merged.id})
        for hook in _merge_hooks():
            hook.unmerged(session, merge.survivor_id, merged.id, merge.id)
        return _view(merge)


def _open_merge(session: Session, merged_id: str) -> models.Merge | None:
    """The merge, not undone yet, that made ``merged_id`` an alias; read afresh."""
    return session.scalars(select(models.Merge).where(
        models.Merge.merged_id == merged_id, models.Merge.unmerged_at.is_(None)
    ).order_by(models.Merge.merged_at.desc()).limit(1)
        .execution_options(populate_existing=True)).one_or_none()


def _move_accounts(session: Session, source: str, target: str) -> list[int]:
    ids_ = list(session.scalars(select(models.ProductAccount.id).where(
        models.ProductAccount.customer_id == source)))
    session.execute(update(models.ProductAccount).where(
        models.ProductAccount.id.in_(ids_)).values(customer_id=target))
    return ids_


def _move_identifiers(session: Session, source: str, target: str) -> list[int]:
    """Move identifiers the target lacks; duplicates stay with the alias, which still resolves."""
    held = {(row.kind, row.blind_index) for row in session.execute(select(
        models.CustomerIdentifier.kind, models.CustomerIdentifier.blind_index
    ).where(models.CustomerIdentifier.customer_id == target))}
    rows = session.scalars(select(models.CustomerIdentifier).where(
        models.CustomerIdentifier.customer_id == source))
    moving = [row for row in rows if (row.kind, row.blind_index) not in held]
    for row in moving:
        row.customer_id = target
    return [row.id for row in moving]


def _move_aliases(session: Session, source: str, target: str) -> list[str]:
    """Keep alias chains one hop long: what pointed at the merged-away ID points at the survivor."""
    ids_ = list(session.scalars(select(models.Customer.id).where(
        models.Customer.merged_into == source)))
    session.execute(update(models.Customer).where(models.Customer.id.in_(ids_))
                    .values(merged_into=target))
    return ids_


def _move_back(session: Session, moved: dict[str, Any], survivor: str, merged: str) -> None:
    """Return what the merge moved and the survivor still holds."""
    session.execute(update(models.ProductAccount).where(
        models.ProductAccount.id.in_(moved["accounts"]),
        models.ProductAccount.customer_id == survivor).values(customer_id=merged))
    session.execute(update(models.CustomerIdentifier).where(
        models.CustomerIdentifier.id.in_(moved["identifiers"]),
        models.CustomerIdentifier.customer_id == survivor).values(customer_id=merged))
    session.execute(update(models.Customer).where(
        models.Customer.id.in_(moved["aliases"]),
        models.Customer.merged_into == survivor).values(merged_into=merged))


def _view(row: models.Merge) -> MergeView:
    return MergeView(merge_id=row.id, survivor_customer_id=row.survivor_id,
                     merged_customer_id=row.merged_id, reason=row.reason,
                     evidence=dict(row.evidence), actor=row.actor, merged_at=row.merged_at,
                     unmerged_at=row.unmerged_at, unmerge_reason=row.unmerge_reason or "")
