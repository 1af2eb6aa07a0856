"""gRPC ``OidcAdminService``: proto in, the OIDC services, proto out."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

from singleid.db import utcnow
from singleid.errors import InvalidArgument
from singleid.idp.oidc.service.clients import ClientService, OidcClient
from singleid.idp.oidc.service.keys import KeyView, SigningKeys
from singleid.server.context import AppContext
from singleid.v1 import oidc_pb2, oidc_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def register(context: AppContext, server: grpc.aio.Server) -> list[str]:
    """The ``singleid.services`` entry point."""
    oidc_pb2_grpc.add_OidcAdminServiceServicer_to_server(
        OidcAdminServicer(context, ClientService(context.db),
                          SigningKeys(context.db, context.keyring)), server)
    return [oidc_pb2.DESCRIPTOR.services_by_name["OidcAdminService"].full_name]


class OidcAdminServicer(oidc_pb2_grpc.OidcAdminServiceServicer):
    def __init__(self, context: AppContext, clients: ClientService, keys: SigningKeys) -> None:
        self._run = context.run_blocking
        self._clients = clients
        self._keys = keys

    async def CreateOidcClient(self, request: oidc_pb2.CreateOidcClientRequest,
                               context: Context) -> oidc_pb2.CreateOidcClientResponse:
        try:
            jwks = json.loads(request.jwks_json) if request.jwks_json else None
        except ValueError:
            raise InvalidArgument("not JSON", field="jwks_json") from None
        created = await self._run(
            self._clients.add, request.client_id, list(request.redirect_uris),
            public=request.public, grant_types=list(request.grant_types),
            scopes=list(request.scopes), backchannel_logout_uri=request.backchannel_logout_uri,
            post_logout_redirect_uris=list(request.post_logout_redirect_uris),
            token_endpoint_auth_method=request.token_endpoint_auth_method, jwks=jwks,
            product=request.product, source=request.source,
            sensitivity=request.sensitivity or "ordinary",
            verified_call_only=request.verified_call_only)
        client = await self._run(self._clients.get, created.client_id)
        return oidc_pb2.CreateOidcClientResponse(client=_client(client),
                                                 client_secret=created.client_secret or "")

    async def GetOidcClient(self, request: oidc_pb2.GetOidcClientRequest,
                            context: Context) -> oidc_pb2.OidcClient:
        return _client(await self._run(self._clients.get, request.client_id))

    async def UpdateOidcClient(self, request: oidc_pb2.UpdateOidcClientRequest,
                               context: Context) -> oidc_pb2.OidcClient:
        updated = await self._run(
            self._clients.update, request.client_id,
            scopes=list(request.scopes) if request.scopes else None,
            product=request.product if request.HasField("product") else None,
            source=request.source if request.HasField("source") else None,
            sensitivity=request.sensitivity if request.HasField("sensitivity") else None,
            verified_call_only=request.verified_call_only
            if request.HasField("verified_call_only") else None,
            disabled=request.disabled if request.HasField("disabled") else None)
        return _client(updated)

    async def DeleteOidcClient(self, request: oidc_pb2.DeleteOidcClientRequest,
                               context: Context) -> empty_pb2.Empty:
        await self._run(self._clients.delete, request.client_id)
        return empty_pb2.Empty()

    async def RotateSigningKeys(self, request: oidc_pb2.RotateSigningKeysRequest,
                                context: Context) -> oidc_pb2.RotateSigningKeysResponse:
        await self._run(self._keys.ensure)
        created = await self._run(self._keys.rotate)
        published = await self._run(self._keys.published)
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(utcnow())
        return oidc_pb2.RotateSigningKeysResponse(
            created=[_key(k) for k in created], published=[_key(k) for k in published],
            rotate_time=stamp)


def _key(view: KeyView) -> oidc_pb2.SigningKey:
    return oidc_pb2.SigningKey(kid=view.kid, alg=view.alg, generation=view.generation)


def _client(client: OidcClient) -> oidc_pb2.OidcClient:
    return oidc_pb2.OidcClient(
        name=f"oidcClients/{client.client_id}", client_id=client.client_id, public=client.public,
        redirect_uris=client.redirect_uris, grant_types=client.grant_types,
        scopes=client.scopes, token_endpoint_auth_method=client.token_endpoint_auth_method,
        backchannel_logout_uri=client.backchannel_logout_uri or "",
        post_logout_redirect_uris=client.post_logout_redirect_uris,
        product=client.product or "", source=client.source or "",
        sensitivity=client.sensitivity, verified_call_only=client.verified_call_only,
        disabled=client.disabled)
