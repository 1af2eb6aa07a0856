"""Typed gRPC clients for singleid's services."""

from singleid.clients.customers import CustomersClient
from singleid.clients.profile import ProfileClient

__all__ = ["CustomersClient", "ProfileClient"]
