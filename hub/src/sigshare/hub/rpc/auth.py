"""Authentication and role checks for every RPC, as one server interceptor.

Every call to a sigshare service must carry ``authorization: Bearer <credential>``. The
interceptor resolves the principal (through the service layer, on every call, so a revocation
takes effect at once), checks the role the service requires, and hands the principal to the
servicer through a context variable. The standard health service is the one exception: load
balancers and orchestrators probe it without credentials, and it reveals only SERVING or not.

Refused credentials are rate-limited per source address (``services.refusals``): a source that
has run out of refusals is answered RESOURCE_EXHAUSTED before its credential is looked at.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import grpc

from sigshare.hub.domain import Principal, Role
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.rpc.client_identity import CertificateIdentity, ClientIdentityPolicy
from sigshare.hub.services.refusals import RefusalLimiter, source_key

log = logging.getLogger("sigshare.hub.access")

# Principal of each call in flight, keyed by its servicer context (removed when the call ends).
_PRINCIPALS: dict[int, Principal] = {}
_LOCK = threading.Lock()

SERVICE_ROLES: dict[str, frozenset[Role]] = {
    "sigshare.v1.MemberService": frozenset({Role.MEMBER}),
    "sigshare.v1.ReviewService": frozenset({Role.COORDINATOR, Role.ADMIN}),
    "sigshare.v1.AdminService": frozenset({Role.ADMIN}),
    "sigshare.v1.KeyService": frozenset({Role.MEMBER, Role.CUSTODIAN}),
    "sigshare.v1.CustodianService": frozenset({Role.CUSTODIAN}),
    # Reflection describes the public API only, but still needs a valid credential.
    "grpc.reflection.v1alpha.ServerReflection": frozenset(Role),
    "grpc.reflection.v1.ServerReflection": frozenset(Role),
}
METHOD_ROLES: dict[str, frozenset[Role]] = {
    # A custodian reads the published parameters (their key ids) to pick a new epoch's, and
    # its `sigshare init`/`doctor` check the hub with this call.
    "/sigshare.v1.MemberService/GetParameters": frozenset({Role.MEMBER, Role.CUSTODIAN}),
}
"""Methods open to other roles than their service's."""
UNAUTHENTICATED_SERVICES = frozenset({"grpc.health.v1.Health"})

Authenticator = Callable[[str], Principal | None]
"""Returns the active principal for a bearer credential, or ``None`` (unknown or revoked)."""
MismatchRecorder = Callable[[Principal, tuple[str, ...]], None]
"""Audits a valid credential presented over a client certificate that is not its principal's."""


def principal_of(context: grpc.ServicerContext) -> Principal:
    """The authenticated caller of the RPC served with ``context`` (set by the interceptor)."""
    with _LOCK:
        principal = _PRINCIPALS.get(id(context))
    if principal is None:  # a servicer reached without the interceptor: a wiring bug
        raise RuntimeError("no authenticated principal for this call")
    return principal


def certificate_identity(context: grpc.ServicerContext) -> CertificateIdentity:
    """The client certificate's names as the TLS layer verified them (empty without mTLS)."""
    # Each property holds a list of byte strings (the type stubs say one byte string).
    properties = cast(Mapping[str, Sequence[bytes]], context.auth_context())

    def values(key: str) -> tuple[str, ...]:
        return tuple(v.decode("utf-8", errors="replace") for v in properties.get(key, ()))

    return CertificateIdentity(
        subject=values("x509_subject"),
        common_names=values("x509_common_name"),
        dns_names=values("peer_dns"),
        uris=values("peer_uri"),
    )


def peer_source(peer: str) -> str:
    """The rate-limiting source of a gRPC peer: ``ipv4:1.2.3.4:5678`` → ``1.2.3.4``,
    ``ipv6:[2001:db8::1]:5678`` → its /64, ``unix:/path`` → ``unix``."""
    scheme, _, rest = peer.partition(":")
    if scheme == "ipv4":
        return source_key(rest.rsplit(":", 1)[0])
    if scheme == "ipv6":
        return source_key(rest.rsplit(":", 1)[0] if rest.startswith("[") else rest)
    return source_key(scheme)


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, credential = value.partition(" ")
            if scheme.lower() == "bearer" and credential:
                return credential.strip()
    return None


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        authenticate: Authenticator,
        *,
        client_identities: ClientIdentityPolicy | None = None,
        on_mismatch: MismatchRecorder | None = None,
        refusals: RefusalLimiter | None = None,
    ) -> None:
        """``client_identities`` (mTLS): the policy binding client certificates to principals;
        calls whose certificate may not carry the credential's principal are refused and
        reported to ``on_mismatch``. ``refusals``: the per-source limit on refused
        credentials (none without it)."""
        self._authenticate = authenticate
        self._refusals = refusals
        self._client_identities = client_identities
        self._on_mismatch = on_mismatch

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service = handler_call_details.method.lstrip("/").split("/", 1)[0]
        if service in UNAUTHENTICATED_SERVICES:
            return handler
        allowed = METHOD_ROLES.get(handler_call_details.method, SERVICE_ROLES.get(service))
        credential = _bearer(handler_call_details.invocation_metadata)
        return _guarded(
            handler,
            lambda context: self._admit(context, credential, allowed, handler_call_details.method),
            handler_call_details.method,
        )

    def _admit(
        self,
        context: grpc.ServicerContext,
        credential: str | None,
        allowed: frozenset[Role] | None,
        method: str,
    ) -> Principal:
        if credential is None:
            log.warning("rpc refused method=%s reason=no-credential", method)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer credential")
        source = peer_source(context.peer())
        if self._refusals is not None and (wait := self._refusals.admit(source)) is not None:
            log.warning("rpc refused method=%s source=%s reason=rate-limited", method, source)
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many refused credentials from this address: retry in {math.ceil(wait)} s",
            )
        principal = self._authenticate(credential)
        if principal is None:
            log.warning("rpc refused method=%s source=%s reason=bad-credential", method, source)
            if self._refusals is not None:
                self._refusals.refused(source)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked credential")
        if self._client_identities is not None:
            certificate = certificate_identity(context)
            if not self._client_identities.allows(certificate, principal.name):
                log.warning(
                    "rpc refused method=%s principal=%s reason=certificate-mismatch",
                    method,
                    principal.name,
                )
                if self._on_mismatch is not None:
                    self._on_mismatch(principal, certificate.identities())
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "the client certificate does not belong to the credential's principal",
                )
        if allowed is None or principal.role not in allowed:
            log.warning("rpc refused method=%s principal=%s reason=role", method, principal.name)
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {principal.role.value!r} may not call this service",
            )
        return principal


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any],
    admit: Callable[[grpc.ServicerContext], Principal],
    method: str,
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, with admission, the caller's principal and an access-log line around
    its body (method, principal name, outcome, duration: never credentials or payloads)."""

    def enter(context: grpc.ServicerContext) -> tuple[Principal, float]:
        principal = admit(context)
        with _LOCK:
            _PRINCIPALS[id(context)] = principal
        return principal, time.perf_counter()

    def leave(
        context: grpc.ServicerContext, principal: Principal, started: float, ok: bool
    ) -> None:
        with _LOCK:
            _PRINCIPALS.pop(id(context), None)
        log.info(
            "rpc method=%s principal=%s outcome=%s seconds=%.3f",
            method,
            principal.name,
            "ok" if ok else "error",
            time.perf_counter() - started,
        )

    def unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            principal, started = enter(context)
            ok = False
            try:
                response = behaviour(request, context)
                ok = True
                return response
            finally:
                leave(context, principal, started, ok)

        return run

    def streaming(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            principal, started = enter(context)
            ok = False
            try:
                yield from behaviour(request, context)
                ok = True
            finally:
                leave(context, principal, started, ok)

        return run

    deserialize = _tolerant(handler.request_deserializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(_decoded_unary(handler.unary_unary)),
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            unary(_decoded_stream(handler.stream_unary)),
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            streaming(_decoded_unary(handler.unary_stream)),
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        streaming(_decoded_stream(handler.stream_stream)),
        request_deserializer=deserialize,
        response_serializer=handler.response_serializer,
    )


class _Undecodable:
    """Stands in for a request body that is not the message it should be.

    gRPC would answer such a body with INTERNAL before any check runs; decoding tolerantly
    lets the caller be authenticated first and then told INVALID_ARGUMENT.
    """


_UNDECODABLE = _Undecodable()
_UNDECODABLE_MESSAGE = "the request is not a valid protobuf encoding of its message type"


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def run(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError and friends: refused after authentication
            return _UNDECODABLE

    return run


def _decoded_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        if request is _UNDECODABLE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _UNDECODABLE_MESSAGE)
        return behaviour(request, context)

    return run


def _decoded_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def checked(requests: Iterator[Any]) -> Iterator[Any]:
        for request in requests:
            if request is _UNDECODABLE:
                # Raised inside the servicer's own iteration: its error table answers it.
                raise InvalidArgumentError(_UNDECODABLE_MESSAGE)
            yield request

    def run(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return behaviour(checked(requests), context)

    return run
