"""A typed client for ``singleid.v1.CustomerService`` and the product calls of ``AdminService``.

Mutations carry an idempotency key (a fresh one unless you give yours), so they
are retried on UNAVAILABLE as safely as reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from singleid.clients.auth import TokenSource
from singleid.clients.base import (
    DEFAULT_ATTEMPTS,
    DEFAULT_TIMEOUT_SECONDS,
    BaseClient,
    new_idempotency_key,
)
from singleid.v1 import admin_pb2, admin_pb2_grpc, customers_pb2, customers_pb2_grpc

Kind: TypeAlias = customers_pb2.IdentifierKind.ValueType


def identifier(kind: Kind, value: str, *, verified: bool = False
               ) -> customers_pb2.IdentifierInput:
    return customers_pb2.IdentifierInput(kind=kind, value=value, verified=verified)


class CustomersClient(BaseClient):
    def __init__(self, target: str = "127.0.0.1:50051", *, channel: grpc.Channel | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 attempts: int = DEFAULT_ATTEMPTS, auth: TokenSource | str | None = None,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        super().__init__(target, channel=channel, timeout=timeout, attempts=attempts, auth=auth,
                         credentials=credentials)
        self.stub = customers_pb2_grpc.CustomerServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)

    # -- central IDs --------------------------------------------------------

    def register_customer(self, product: str, account_id: str, *,
                          identifiers: Iterable[customers_pb2.IdentifierInput] = (),
                          display_name: str = "", idempotency_key: str = ""
                          ) -> customers_pb2.RegisterCustomerResponse:
        # Idempotent on (product, account_id) by contract, so always safe to retry.
        request = customers_pb2.RegisterCustomerRequest(
            product=product, account_id=account_id, identifiers=list(identifiers),
            display_name=display_name, idempotency_key=idempotency_key)
        return self._call(self.stub.RegisterCustomer, request, idempotent=True)

    def resolve_by_id(self, customer_id: str) -> customers_pb2.ResolveCustomerResponse:
        return self._resolve(customers_pb2.ResolveCustomerRequest(customer_id=customer_id))

    def resolve_by_account(self, product: str, account_id: str
                           ) -> customers_pb2.ResolveCustomerResponse:
        return self._resolve(customers_pb2.ResolveCustomerRequest(
            product_account=customers_pb2.ProductAccountRef(product=product,
                                                            account_id=account_id)))

    def resolve_by_identifier(self, kind: Kind, value: str
                              ) -> customers_pb2.ResolveCustomerResponse:
        return self._resolve(customers_pb2.ResolveCustomerRequest(
            identifier=customers_pb2.IdentifierValue(kind=kind, value=value)))

    def _resolve(self, request: customers_pb2.ResolveCustomerRequest
                 ) -> customers_pb2.ResolveCustomerResponse:
        return self._call(self.stub.ResolveCustomer, request, idempotent=True)

    def get_customer(self, customer_id: str, read_mask: Iterable[str] = ()
                     ) -> customers_pb2.Customer:
        request = customers_pb2.GetCustomerRequest(customer_id=customer_id)
        if paths := list(read_mask):
            request.read_mask.CopyFrom(FieldMask(paths=paths))
        return self._call(self.stub.GetCustomer, request, idempotent=True)

    # -- accounts and identifiers --------------------------------------------

    def link_product_account(self, customer_id: str, product: str, account_id: str, *,
                             idempotency_key: str = "") -> customers_pb2.ProductAccount:
        request = customers_pb2.LinkProductAccountRequest(
            customer_id=customer_id, product=product, account_id=account_id,
            idempotency_key=idempotency_key or new_idempotency_key())
        return self._call(self.stub.LinkProductAccount, request, idempotent=True)

    def unlink_product_account(self, product: str, account_id: str, *,
                               idempotency_key: str = "") -> None:
        request = customers_pb2.UnlinkProductAccountRequest(
            product=product, account_id=account_id,
            idempotency_key=idempotency_key or new_idempotency_key())
        self._call(self.stub.UnlinkProductAccount, request, idempotent=True)

    def list_product_accounts(self, customer_id: str, page_size: int = 0
                              ) -> Iterator[customers_pb2.ProductAccount]:
        """Every account of the customer, page by page."""
        token = ""
        while True:
            page = self._call(self.stub.ListProductAccounts,
                              customers_pb2.ListProductAccountsRequest(
                                  customer_id=customer_id, page_size=page_size,
                                  page_token=token), idempotent=True)
            yield from page.product_accounts
            token = page.next_page_token
            if not token:
                return

    def add_identifier(self, customer_id: str, value: customers_pb2.IdentifierInput, *,
                       idempotency_key: str = "") -> customers_pb2.Identifier:
        request = customers_pb2.AddIdentifierRequest(
            customer_id=customer_id, identifier=value,
            idempotency_key=idempotency_key or new_idempotency_key())
        return self._call(self.stub.AddIdentifier, request, idempotent=True)

    def remove_identifier(self, customer_id: str, kind: Kind, value: str, *,
                          idempotency_key: str = "") -> None:
        request = customers_pb2.RemoveIdentifierRequest(
            customer_id=customer_id, identifier=customers_pb2.IdentifierValue(kind=kind,
                                                                              value=value),
            idempotency_key=idempotency_key or new_idempotency_key())
        self._call(self.stub.RemoveIdentifier, request, idempotent=True)

    # -- merges ---------------------------------------------------------------

    def merge_customers(self, survivor_customer_id: str, merged_customer_id: str, *,
                        reason: str, actor: str, evidence: Mapping[str, str] | None = None,
                        idempotency_key: str = "") -> customers_pb2.Merge:
        request = customers_pb2.MergeCustomersRequest(
            survivor_customer_id=survivor_customer_id, merged_customer_id=merged_customer_id,
            reason=reason, actor=actor, evidence=dict(evidence or {}),
            idempotency_key=idempotency_key or new_idempotency_key())
        return self._call(self.stub.MergeCustomers, request, idempotent=True)

    def unmerge_customer(self, merged_customer_id: str, *, reason: str, actor: str,
                         idempotency_key: str = "") -> customers_pb2.Merge:
        request = customers_pb2.UnmergeCustomerRequest(
            merged_customer_id=merged_customer_id, reason=reason, actor=actor,
            idempotency_key=idempotency_key or new_idempotency_key())
        return self._call(self.stub.UnmergeCustomer, request, idempotent=True)

    # -- products ---------------------------------------------------------------

    def create_product(self, code: str, display_name: str = "", *,
                       idempotency_key: str = "") -> admin_pb2.Product:
        request = admin_pb2.CreateProductRequest(
            code=code, display_name=display_name,
            idempotency_key=idempotency_key or new_idempotency_key())
        return self._call(self.admin.CreateProduct, request, idempotent=True)
