"""The ``singleid.authenticators`` entry point: who calls the gRPC API, and what each method needs.

Tokens are checked in memory against a snapshot of keys, clients and revoked
token IDs that a background task reloads every ``SINGLEID_AUTH_REFRESH_SECONDS``;
a token naming a key or client the snapshot lacks triggers one early reload
(coalesced), so a client created a moment ago is not refused. The scope each
method needs is its ``(singleid.v1.scope)`` option, read from the descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import time
from pathlib import Path

from google.protobuf import descriptor_pool

from singleid.caller import Caller
from singleid.errors import Unauthenticated
from singleid.idp.oidc.service import access
from singleid.idp.oidc.service.clients import API_SCOPES, ClientService
from singleid.idp.oidc.service.keys import SigningKeys
from singleid.keyring import write_secret_file
from singleid.server.context import AppContext
from singleid.settings import WORKER_ENV
from singleid.v1 import auth_pb2

log = logging.getLogger(__name__)

DEV_CLIENT_ID = "singleid-dev"
DEV_CLIENT_FILE = "dev-client.json"
_EARLY_REFRESH_SECONDS = 0.05  # the most often unknown keys or clients reload the snapshot
_IAT_GRANULARITY_SECONDS = 1.0


def authenticator(context: AppContext) -> TokenAuthenticator:
    return TokenAuthenticator(context)


@functools.cache
def required_scope(method: str) -> str | None:
    """The ``(singleid.v1.scope)`` of ``/package.Service/Method``; None if none is declared."""
    service, _, name = method.lstrip("/").partition("/")
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        return None
    scope: str = descriptor.GetOptions().Extensions[auth_pb2.scope]
    return scope or None


class TokenAuthenticator:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._keys = SigningKeys(context.db, context.keyring)
        self._verifier = access.AccessTokenVerifier(context.settings.effective_issuer)
        self._snapshot: access.Snapshot | None = None
        self._reload_lock = asyncio.Lock()

    async def start(self) -> None:
        settings = self._context.settings
        if settings.bootstrap_client:
            client_id, _, secret = settings.bootstrap_client.partition(":")
            await self._context.run_blocking(access.provision_admin, self._context.db,
                                             client_id, secret)
        elif not settings.database_url:
            await self._context.run_blocking(self._development_client)
        await self._reload()

    async def run(self, stop: asyncio.Event) -> None:
        interval = self._context.settings.auth_refresh_seconds
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            try:
                await self._reload()
            except Exception:  # the last snapshot stays; the next round tries again
                log.exception("could not reload the access-token snapshot")

    async def authenticate(self, token: str, peer: str, peer_client: str | None) -> Caller:
        snapshot = self._snapshot
        assert snapshot is not None, "start() loads the first snapshot"
        try:
            caller = self._verifier.check(snapshot, token, peer, final=False)
        except access.NeedsRefresh as missing:
            # Only a snapshot older than the token may lack what it names.
            not_before = min(missing.issued_at + _IAT_GRANULARITY_SECONDS, time.time())
            snapshot = await self._reload(not_before=not_before)
            caller = self._verifier.check(snapshot, token, peer, final=True)
        if peer_client is not None and peer_client != caller.client_id:
            raise Unauthenticated(
                f"the token's client {caller.client_id!r} is not the certificate's",
                reason="CERTIFICATE_CLIENT_MISMATCH", field="authorization")
        return caller

    def required_scope(self, method: str) -> str | None:
        return required_scope(method)

    def mutates(self, method: str) -> bool:
        """Reads need a ``*.read`` scope; every other method changes something (a voice
        verification counts an attempt, and reads biometric data)."""
        scope = self.required_scope(method)
        return scope is not None and not scope.endswith(".read")

    async def _reload(self, not_before: float | None = None) -> access.Snapshot:
        """Load a new snapshot; with ``not_before``, only if the current one is older, and at
        most every few milliseconds (so forged tokens cannot hammer the database)."""
        async with self._reload_lock:
            current = self._snapshot
            if current is not None and not_before is not None:
                if current.loaded_at >= not_before:
                    return current
                await asyncio.sleep(_EARLY_REFRESH_SECONDS - (time.time() - current.loaded_at))
            self._snapshot = await self._context.run_blocking(
                access.load_snapshot, self._context.db, self._keys)
            return self._snapshot

    def _development_client(self) -> None:
        """On the embedded default: an all-scopes client, and how to use it, printed."""
        settings = self._context.settings
        path = settings.data_dir / DEV_CLIENT_FILE
        clients = ClientService(self._context.db)
        saved = json.loads(path.read_text()) if path.exists() else None
        if saved is None or clients.find(DEV_CLIENT_ID, cached=False) is None:
            saved = {"client_id": DEV_CLIENT_ID, "client_secret": secrets.token_urlsafe(32)}
            write_secret_file(path, json.dumps(saved))
        access.provision_admin(self._context.db, DEV_CLIENT_ID, saved["client_secret"])
        if os.environ.get(WORKER_ENV, "0") == "0":
            print(_dev_help(settings.effective_issuer, settings.grpc_addr, path), flush=True)


_PRINT_TOKEN = "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"  # noqa: S105


def _dev_help(issuer: str, grpc_addr: str, path: Path) -> str:
    """How to get a token; the secret stays in its file, out of the console and its logs."""
    read_secret = f"'import json; print(json.load(open(\"{path}\"))[\"client_secret\"])'"
    return (
        f"development client {DEV_CLIENT_ID!r} (every scope: {' '.join(API_SCOPES)}); "
        f"its secret is in {path}. Get a token and call:\n"
        f"  SECRET=$(python3 -c {read_secret})\n"
        f"  TOKEN=$(curl -s -u \"{DEV_CLIENT_ID}:$SECRET\" -d grant_type=client_credentials "
        f"{issuer}/token | python3 -c {_PRINT_TOKEN})\n"
        f"  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {grpc_addr} "
        "singleid.v1.AdminService/ListProducts")
