"""The loyalty cabinet: a sample relying party that signs customers in with singleid.

A small Starlette app: "Sign in with singleid" (authorization code with PKCE,
through Authlib's Starlette client and singleid's discovery document), then the
signed-in customer's name and profile, from the userinfo endpoint and, when a
gRPC address is given, from ``ProfileService``. It reaches singleid only over
the wire, as any product would. Run it with ``python -m singleid.clients.cabinet``.
"""

from singleid.clients.cabinet.app import CabinetConfig, create_app

__all__ = ["CabinetConfig", "create_app"]
