"""Typed gRPC clients for singleid's services."""

from singleid.clients.customers import CustomersClient

__all__ = ["CustomersClient"]
