"""The hub's gRPC application: database check, authentication, services, server."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from sigshare.hub.domain import Principal
from sigshare.hub.engine.membership import IndexCache
from sigshare.hub.rpc.auth import AuthInterceptor
from sigshare.hub.rpc.server import BoundServer, ListenAddress, TlsConfig, build_server
from sigshare.hub.rpc.servicers import register
from sigshare.hub.services.principals import authenticate
from sigshare.hub.storage.database import session_scope
from sigshare.hub.storage.migrate import require_current

DEFAULT_INDEX_CACHE_BYTES = 1 << 30


def build_hub(
    engine: Engine,
    address: ListenAddress,
    *,
    tls: TlsConfig | None,
    insecure: bool = False,
    max_workers: int = 16,
    index_cache_bytes: int = DEFAULT_INDEX_CACHE_BYTES,
) -> BoundServer:
    """A hub server on ``address`` over ``engine``; refuses an un-migrated database.

    ``index_cache_bytes``: memory for the membership indexes resolutions are answered from.
    """
    require_current(engine)

    def credential_owner(bearer: str) -> Principal | None:
        with session_scope(engine) as session:
            return authenticate(session, bearer, datetime.now(UTC))

    return build_server(
        address,
        lambda server: register(server, engine, IndexCache(index_cache_bytes)),
        tls=tls,
        insecure=insecure,
        interceptors=[AuthInterceptor(credential_owner)],
        max_workers=max_workers,
    )
