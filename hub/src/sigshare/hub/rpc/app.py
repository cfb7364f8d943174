"""The hub's gRPC application: database check, authentication, services, server."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine

from sigshare.hub.domain import Principal
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.matching.membership import IndexCache
from sigshare.hub.rpc.auth import AuthInterceptor
from sigshare.hub.rpc.client_identity import ClientIdentityPolicy
from sigshare.hub.rpc.server import BoundServer, ListenAddress, TlsConfig, build_server
from sigshare.hub.rpc.servicers import register
from sigshare.hub.services.principals import authenticate, record_certificate_mismatch
from sigshare.hub.services.refusals import (
    RefusalLimiter,
    RefusalPolicy,
    RefusalSummary,
    audit_refusal,
)
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
    client_identities: ClientIdentityPolicy | None = None,
    refusal_policy: RefusalPolicy | None = None,
    refusal_clock: Callable[[], float] = time.monotonic,
) -> BoundServer:
    """A hub server on ``address`` over ``engine``; refuses an un-migrated database.

    ``index_cache_bytes``: memory for the membership indexes resolutions are answered from.
    ``client_identities`` (needs mTLS): bind client certificates to principals; a valid
    credential over a certificate the policy does not allow it on is refused and audited.
    ``refusal_policy``: the per-source limit on refused credentials (default
    ``RefusalPolicy()``); ``refusal_clock`` (monotonic seconds) is for tests.
    """
    require_current(engine)
    if client_identities is not None and (tls is None or tls.client_ca is None):
        raise InvalidArgumentError("binding client certificates to principals needs mTLS")

    def credential_owner(bearer: str) -> Principal | None:
        with session_scope(engine) as session:
            return authenticate(session, bearer, datetime.now(UTC))

    def certificate_refused(principal: Principal, identities: tuple[str, ...]) -> None:
        with session_scope(engine) as session:
            record_certificate_mismatch(session, principal, identities, datetime.now(UTC))

    def refusals_audited(summary: RefusalSummary) -> None:
        with session_scope(engine) as session:
            audit_refusal(session, summary, datetime.now(UTC))

    refusals = RefusalLimiter("rpc", refusals_audited, refusal_policy, clock=refusal_clock)
    return build_server(
        address,
        lambda server: register(server, engine, IndexCache(index_cache_bytes)),
        tls=tls,
        insecure=insecure,
        interceptors=[
            AuthInterceptor(
                credential_owner,
                client_identities=client_identities,
                on_mismatch=certificate_refused,
                refusals=refusals,
            )
        ],
        max_workers=max_workers,
    )
