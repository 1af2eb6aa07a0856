"""The idp domain's services: plain Python in, dataclasses out."""

from singleid.idp.service.customers import CustomerService
from singleid.idp.service.merges import MergeService
from singleid.idp.service.products import ProductService

__all__ = ["CustomerService", "MergeService", "ProductService"]
