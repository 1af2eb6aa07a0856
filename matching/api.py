"""gRPC servicer for MatchingService: proto in, service call, proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from singleid import caller as callers
from singleid.errors import InvalidArgument
from singleid.matching.record import LegacyRow
from singleid.matching.service import ImportService, MatchingService
from singleid.matching.service.importer import BATCH_SIZE, Parsed
from singleid.matching.service.types import (
    AccountRef,
    CandidateView,
    Decision,
    FieldEvidence,
    SideBySide,
)
from singleid.prototime import timestamp
from singleid.server.context import AppContext
from singleid.v1 import matching_pb2, matching_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
_STATES = {
    "review": matching_pb2.Candidate.STATE_REVIEW,
    "skipped": matching_pb2.Candidate.STATE_SKIPPED,
    "merged": matching_pb2.Candidate.STATE_MERGED,
    "auto_merged": matching_pb2.Candidate.STATE_AUTO_MERGED,
    "not_same": matching_pb2.Candidate.STATE_NOT_SAME,
    "unmerged": matching_pb2.Candidate.STATE_UNMERGED,
}
_DECISIONS = {
    matching_pb2.DecideCandidateRequest.DECISION_MERGE: Decision.MERGE,
    matching_pb2.DecideCandidateRequest.DECISION_NOT_SAME: Decision.NOT_SAME,
    matching_pb2.DecideCandidateRequest.DECISION_SKIP: Decision.SKIP,
}
_ACTIONS = {
    "none": matching_pb2.MatchAccountResponse.ACTION_NONE,
    "review": matching_pb2.MatchAccountResponse.ACTION_REVIEW,
    "auto_merge": matching_pb2.MatchAccountResponse.ACTION_AUTO_MERGE,
}


def register(context: AppContext, server: grpc.aio.Server) -> list[str]:
    """The ``singleid.services`` entry point."""
    matching_pb2_grpc.add_MatchingServiceServicer_to_server(
        MatchingServicer(context, ImportService(context.db, context.keyring),
                         MatchingService(context.db, context.keyring)), server)
    return [matching_pb2.DESCRIPTOR.services_by_name["MatchingService"].full_name]


class MatchingServicer(matching_pb2_grpc.MatchingServiceServicer):
    def __init__(self, context: AppContext, importer: ImportService,
                 matcher: MatchingService) -> None:
        self._run = context.run_blocking
        self._importer = importer
        self._matcher = matcher

    async def ImportLegacyAccounts(
            self, request_iterator: AsyncIterator[matching_pb2.ImportLegacyAccountsRequest],
            context: Context) -> matching_pb2.ImportLegacyAccountsResponse:
        run = None
        line = 0
        chunk: list[Parsed] = []
        async for request in request_iterator:
            if run is None:
                if not request.product:
                    raise InvalidArgument("the first message must name the product",
                                          field="product", reason="PRODUCT_REQUIRED")
                run = await self._run(self._importer.start,
                                      callers.own_product(request.product))
            elif request.product and request.product != run.product:
                raise InvalidArgument("one stream imports into one product", field="product",
                                      reason="PRODUCT_CHANGED")
            for account in request.accounts:
                line += 1
                chunk.append((line, _row(account)))
            if len(chunk) >= BATCH_SIZE:
                await self._run(run.add_many, chunk)
                chunk = []
        if run is None:
            raise InvalidArgument("the stream was empty", field="product",
                                  reason="PRODUCT_REQUIRED")
        await self._run(run.add_many, chunk)
        summary = await self._run(run.finish)
        return matching_pb2.ImportLegacyAccountsResponse(
            read=summary.read, imported=summary.imported, updated=summary.updated,
            unchanged=summary.unchanged, rejected=summary.rejected,
            rejects=[matching_pb2.RejectedRow(line=r.line, field=r.field, reason=r.reason,
                                              description=r.description)
                     for r in summary.rejects])

    async def RunBatchMatching(self, request: matching_pb2.RunBatchMatchingRequest,
                               context: Context) -> matching_pb2.RunBatchMatchingResponse:
        summary = await self._run(self._matcher.run_batch, refit=not request.reuse_model)
        return matching_pb2.RunBatchMatchingResponse(
            accounts=summary.accounts, candidate_pairs=summary.candidate_pairs,
            auto_merges=summary.auto_merges, review=summary.review, clusters=summary.clusters)

    async def MatchAccount(self, request: matching_pb2.MatchAccountRequest,
                           context: Context) -> matching_pb2.MatchAccountResponse:
        result = await self._run(self._matcher.match_account, request.account.product,
                                 request.account.account_id)
        return matching_pb2.MatchAccountResponse(
            customer_id=result.customer_id, action=_ACTIONS[result.action],
            other_customer_id=result.other_customer_id, probability=result.probability)

    async def ListReviewCandidates(
            self, request: matching_pb2.ListReviewCandidatesRequest,
            context: Context) -> matching_pb2.ListReviewCandidatesResponse:
        page = await self._run(self._matcher.list_review, request.page_size, request.page_token)
        return matching_pb2.ListReviewCandidatesResponse(
            candidates=[_candidate(c) for c in page.items], next_page_token=page.next_page_token)

    async def GetCandidate(self, request: matching_pb2.GetCandidateRequest,
                           context: Context) -> matching_pb2.Candidate:
        view = await self._run(self._matcher.get_candidate, _candidate_id(request.name))
        return _candidate(view)

    async def DecideCandidate(self, request: matching_pb2.DecideCandidateRequest,
                              context: Context) -> matching_pb2.Candidate:
        decision = _DECISIONS.get(request.decision)
        if decision is None:
            raise InvalidArgument("must be MERGE, NOT_SAME or SKIP", field="decision",
                                  reason="DECISION_REQUIRED")
        view = await self._run(self._matcher.decide, _candidate_id(request.name), decision,
                               request.operator, request.reason)
        return _candidate(view)

    async def ExplainMatch(self, request: matching_pb2.ExplainMatchRequest,
                           context: Context) -> matching_pb2.MatchExplanation:
        result = await self._run(
            self._matcher.explain, AccountRef(request.a.product, request.a.account_id),
            AccountRef(request.b.product, request.b.account_id))
        return matching_pb2.MatchExplanation(
            prior_weight=result.prior_weight, match_weight=result.match_weight,
            probability=result.probability, fields=[_field(f) for f in result.fields],
            hard_rules=result.hard_rules, action=result.action)

    async def UndoMerge(self, request: matching_pb2.UndoMergeRequest,
                        context: Context) -> matching_pb2.UndoMergeResponse:
        if not request.operator.strip():
            raise InvalidArgument("must not be empty", field="operator")
        view = await self._run(self._matcher.unmerge, request.merged_customer_id,
                               request.operator, request.reason or "matching: undone")
        return matching_pb2.UndoMergeResponse(merge_id=view.merge_id,
                                              survivor_customer_id=view.survivor_customer_id,
                                              merged_customer_id=view.merged_customer_id)


def _row(message: matching_pb2.LegacyAccount) -> LegacyRow:
    return LegacyRow(
        account_id=message.account_id, last_name=message.last_name,
        first_name=message.first_name, middle_name=message.middle_name,
        birth_date=message.birth_date, phone=message.phone, email=message.email,
        passport=message.passport, address=message.address, city=message.city,
        created_at=message.created_at, password_hash=message.password_hash)


def _candidate_id(name: str) -> int:
    prefix, _, value = name.partition("/")
    if prefix != "candidates" or not value.isdigit():
        raise InvalidArgument("expected candidates/{candidate_id}", field="name",
                              reason="BAD_RESOURCE_NAME")
    return int(value)


def _field(view: FieldEvidence) -> matching_pb2.FieldEvidence:
    return matching_pb2.FieldEvidence(comparison=view.comparison, level=view.level,
                                      weight=view.weight, left_value=view.left,
                                      right_value=view.right)


def _side(view: SideBySide | None) -> matching_pb2.CandidateAccount | None:
    if view is None:
        return None
    return matching_pb2.CandidateAccount(product=view.product, account_id=view.account_id,
                                         customer_id=view.customer_id,
                                         current_customer_id=view.current_customer_id)


def _candidate(view: CandidateView) -> matching_pb2.Candidate:
    return matching_pb2.Candidate(
        name=f"candidates/{view.candidate_id}", candidate_id=view.candidate_id,
        state=_STATES.get(view.status, matching_pb2.Candidate.STATE_UNSPECIFIED),
        probability=view.probability, match_weight=view.match_weight,
        hard_rules=view.hard_rules, left=_side(view.left), right=_side(view.right),
        fields=[_field(f) for f in view.fields], operator=view.operator,
        decide_time=timestamp(view.decided_at), merge_id=view.merge_id)
