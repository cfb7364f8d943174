"""The member-side SDK of the hub's MemberService: one channel, deadlines, retries, typed errors.

Every call carries the member's bearer credential and a deadline, and is retried with exponential
backoff and full jitter on transient status codes (and on a response stream a proxy cut short).
Retrying is safe for every method here: the hub makes a submission idempotent per (member, kind,
content digest), confirmations are idempotent, and the rest are reads. gRPC failures become
:mod:`sigshare.client.errors` classes through one table, so callers never see ``grpc.RpcError``;
a connection refused over a certificate (:func:`tls_refusal`) is a :class:`HubTlsError` at once,
since no retry changes a certificate.
Protobuf stays behind :mod:`sigshare.client.wire`; this module handles transport only. The
machinery is :class:`HubServiceClient`'s, which the coordinators' review client shares.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import grpc

from sigshare.client import wire
from sigshare.client.errors import (
    HubAuthError,
    HubClientError,
    HubConfigError,
    HubProtocolError,
    HubRejectedError,
    HubTlsError,
    HubUnavailableError,
)
from sigshare.client.hub_types import (
    ConfirmedToken,
    ConfirmResult,
    CustodianInfo,
    HubParameters,
    KeyStatus,
    Matches,
    RecipientList,
    RegisterKeysResult,
    ResolveResult,
    SealedEnvelope,
    SubmissionInfoView,
    SubmitResult,
    UploadEnvelopesResult,
)
from sigshare.client.tls_files import read_tls_material
from sigshare.sketch.codec import SketchFormat
from sigshare.sketch.prf import TOKEN_BYTES

_log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

MAX_MESSAGE_BYTES = 8 << 20
DEFAULT_CHUNK_BYTES = 1 << 20
"""Submission chunk size until the hub's published ``chunk_bytes`` is known."""
CONFIRM_BATCH_TOKENS = 50_000
CONFIRM_BATCH_BYTES = 3 << 20
"""Serialized tokens per Confirm request: below the hub's 4 MiB message limit with headroom."""

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Detect a dead connection during long streams; no more often than gRPC servers accept by
    # default (5 min), or the hub would answer with GOAWAY "too_many_pings".
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
)

TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
"""Status codes worth another attempt: the same request may succeed a moment later."""

CUT_STREAM_DETAILS = "Stream removed"
"""What gRPC reports (as ``UNKNOWN``) for a response stream that ended without its trailers: a
proxy in front of the hub (HAProxy) ends the stream that way when the replica serving it dies
mid-answer. The request itself is as safe to repeat as after ``UNAVAILABLE``."""


def is_transient(code: grpc.StatusCode, details: str) -> bool:
    """Whether a call that failed with ``code`` and ``details`` is worth another attempt."""
    return code in TRANSIENT or (
        code is grpc.StatusCode.UNKNOWN and details.startswith(CUT_STREAM_DETAILS)
    )


_CONNECT_FAILED = "failed to connect to all addresses"
"""How gRPC begins the details of a call that found no connection to make: what follows the
last ``: `` is the reason, from the TCP connect, the TLS handshake or the HTTP/2 start."""
_SOCKET_CLOSED = re.compile(r": Socket closed$")
"""The server accepted the connection and closed it without a word of HTTP/2. Over TLS that
happens after a completed handshake, and a gRPC server with ``require_client_auth`` does exactly
that to a client that presented no certificate or one its CA did not sign (it sends no TLS alert
gRPC would report); a server or proxy that goes away *during* the handshake reads ``Handshake
read failed (…)`` instead. (A proxy that terminates TLS in TCP mode and then finds no hub behind
it looks the same; one that speaks HTTP/2 answers ``UNAVAILABLE`` with a reason.) Over plaintext
it is what a TLS server does with a plaintext client."""
_UNTRUSTED = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")


def tls_refusal(connection: HubConnection, details: str) -> HubTlsError | None:
    """The explanation of a failed connection that another attempt cannot change: the hub
    requires a client certificate signed by its CA, the hub's certificate is not trusted or does
    not name the target, or no TLS answers. ``None`` for anything else (retried, or translated
    by :data:`STATUS_ERRORS`). Plaintext connections are never classified here: a loopback hub
    restarting closes them just as a TLS hub refusing plaintext does."""
    if connection.insecure or not details.startswith(_CONNECT_FAILED):
        return None
    if _SOCKET_CLOSED.search(details):
        return _client_certificate_refused(connection)
    return _server_certificate_refused(connection, details)


def _client_certificate_refused(connection: HubConnection) -> HubTlsError:
    status = grpc.StatusCode.UNAVAILABLE.name
    if connection.client_cert is None:
        return HubTlsError(
            f"the hub at {connection.target} closed the connection after the TLS handshake: "
            "the hub requires a client certificate signed by its CA (mTLS), and none was "
            "presented",
            fix="set client_cert and client_key (--client-cert, --client-key) to the client "
            "certificate the forum issued you and its key",
            status=status,
        )
    return HubTlsError(
        f"the hub at {connection.target} refused the client certificate "
        f"{connection.client_cert}: the hub requires a client certificate signed by its CA",
        fix="use the client certificate the forum's CA issued you (this one is from another "
        "CA, or no longer accepted)",
        status=status,
    )


def _server_certificate_refused(connection: HubConnection, details: str) -> HubTlsError | None:
    target = connection.target
    status = grpc.StatusCode.UNAVAILABLE.name
    untrusted = _UNTRUSTED.search(details)
    if untrusted is not None:
        reason = untrusted.group(1).strip()
        roots = (
            f"the CA certificate {connection.ca_cert}"
            if connection.ca_cert
            else "gRPC's bundled public roots"
        )
        dated = "expired" in reason or "not yet valid" in reason
        return HubTlsError(
            f"the hub's certificate at {target} is not trusted ({reason}), checked against {roots}",
            fix="ask the hub's operator to renew its certificate"
            if dated
            else "set ca_cert (--ca-cert) to the forum CA's certificate",
            status=status,
        )
    if "Hostname Verification Check failed" in details:
        host = target_host(target)
        return HubTlsError(
            f"the hub's certificate does not name {host}",
            fix="connect by a name the certificate holds (hub = NAME:PORT), or ask the hub's "
            f"operator to add {host} to it",
            status=status,
        )
    if "WRONG_VERSION_NUMBER" in details:
        return HubTlsError(
            f"no TLS answers at {target}: a plaintext hub, or another service on that port",
            fix="check the port; a plaintext hub is reached with insecure = true (--insecure), "
            "on loopback only",
            status=status,
        )
    return None


STATUS_ERRORS: dict[grpc.StatusCode, type[HubClientError]] = {
    grpc.StatusCode.UNAUTHENTICATED: HubAuthError,
    grpc.StatusCode.PERMISSION_DENIED: HubAuthError,
    grpc.StatusCode.UNAVAILABLE: HubUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: HubUnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HubUnavailableError,
    grpc.StatusCode.ABORTED: HubUnavailableError,
    grpc.StatusCode.CANCELLED: HubUnavailableError,
    grpc.StatusCode.INVALID_ARGUMENT: HubRejectedError,
    grpc.StatusCode.FAILED_PRECONDITION: HubRejectedError,
    grpc.StatusCode.ALREADY_EXISTS: HubRejectedError,
    grpc.StatusCode.OUT_OF_RANGE: HubRejectedError,
    grpc.StatusCode.NOT_FOUND: HubRejectedError,
    grpc.StatusCode.UNIMPLEMENTED: HubProtocolError,
}
"""The one translation of gRPC status codes; codes not listed are plain :class:`HubClientError`."""


@dataclass(frozen=True, slots=True)
class HubConnection:
    """Where the hub is and how to prove who we are. The credential never appears in a repr."""

    target: str
    """``host:port`` or ``[v6]:port``."""
    credential: str = field(repr=False)
    ca_cert: Path | None = None
    """PEM roots to trust for the hub's certificate; ``None`` uses gRPC's bundled public roots."""
    client_cert: Path | None = None
    client_key: Path | None = None
    """Both or neither: a client certificate chain and its key, for mTLS."""
    insecure: bool = False
    """Plaintext; refused unless the target is a loopback address."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    """Total attempts, the first included."""
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must not be negative and the multiplier must be ≥ 1")

    def backoff(self, retry: int, uniform: Callable[[], float]) -> float:
        """Wait before retry number ``retry`` (0-based): uniform in [0, min(max, initial·mult^n)].

        Full jitter spreads the retries of many members hitting one recovering hub, instead of
        having them return in synchronised waves.
        """
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** min(retry, 64))
        return uniform() * ceiling


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-call deadlines, in seconds."""

    unary: float = 30.0
    stream_base: float = 60.0
    stream_bytes_per_second: float = 10e6
    """Slowest transfer rate a stream is allowed before its deadline expires."""

    def stream(self, nbytes: int) -> float:
        return self.stream_base + nbytes / self.stream_bytes_per_second


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def target_host(target: str) -> str:
    """The host part of ``host:port`` / ``[v6]:port``, refusing anything else."""
    host, separator, port = target.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # a bare IPv6 address: ambiguous without brackets
    if not separator or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise HubConfigError(f"hub address {target!r} is not HOST:PORT (IPv6 as [ADDR]:PORT)")
    return host


def open_channel(connection: HubConnection) -> grpc.Channel:
    """A channel honouring the transport policy: TLS (optionally mTLS), plaintext on loopback.

    The TLS files are read and checked first (:mod:`sigshare.client.tls_files`), so a bad one
    is a :class:`HubTlsError` naming it, before any connection is tried."""
    host = target_host(connection.target)
    tls_files = (connection.ca_cert, connection.client_cert, connection.client_key)
    if connection.insecure:
        if any(path is not None for path in tls_files):
            raise HubConfigError("TLS files were given for an insecure (plaintext) connection")
        if not is_loopback(host):
            raise HubConfigError(
                f"refusing plaintext to {host}: insecure connections are allowed only to "
                "loopback (127.0.0.0/8, ::1, localhost); use TLS"
            )
        return grpc.insecure_channel(connection.target, options=CHANNEL_OPTIONS)
    material = read_tls_material(connection.ca_cert, connection.client_cert, connection.client_key)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=material.ca.pem if material.ca else None,
        private_key=material.client.key_pem if material.client else None,
        certificate_chain=material.client.chain_pem if material.client else None,
    )
    return grpc.secure_channel(connection.target, credentials, options=CHANNEL_OPTIONS)


def _bearer_metadata(credential: str) -> tuple[tuple[str, str], ...]:
    # Metadata values must be visible ASCII; checking here gives a config error, not a gRPC one.
    if not credential or not all("!" <= char <= "~" for char in credential):
        raise HubConfigError("the hub credential is empty or has characters a credential cannot")
    return (("authorization", f"Bearer {credential}"),)


def _status_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    # Errors raised by gRPC calls are also grpc.Call objects; a bare RpcError has no status.
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else None
    return code, details or code.name.lower().replace("_", " ")


class HubServiceClient:
    """One authenticated channel to the hub, and what every client of a hub service does with
    it: the bearer credential and a deadline on every call, retries with backoff on transient
    failures, certificate refusals explained (:func:`tls_refusal`) and gRPC failures translated
    through :data:`STATUS_ERRORS`. Thread-safe as gRPC channels are; close when done.

    :class:`HubClient` is the members' client; the hub's coordinators review through their own
    (``sigshare.hub.rpc.review_client``)."""

    def __init__(
        self,
        connection: HubConnection,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        sleep: Callable[[float], None] = time.sleep,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        self._target = connection.target
        self._connection = connection
        self._metadata = _bearer_metadata(connection.credential)
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts or Timeouts()
        self._sleep = sleep
        self._uniform = uniform
        self._channel = open_channel(connection)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self._target!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- machinery ----------------------------------------------------------------------------

    def _unary(
        self,
        method: str,
        callable_: grpc.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        *,
        retry: bool = True,
    ) -> _Response:
        return self._retrying(
            method,
            lambda: callable_(request, timeout=self._timeouts.unary, metadata=self._metadata),
            retry=retry,
        )

    def _retrying(self, method: str, attempt: Callable[[], _T], *, retry: bool = True) -> _T:
        """``attempt()``, retried on transient failures by the retry policy; ``retry=False``
        tries once (a call the hub may have carried out before the failure reached us, and
        that is not safe to repeat)."""
        policy = self._retry if retry else RetryPolicy(attempts=1)
        for number in range(1, policy.attempts + 1):
            try:
                return attempt()
            except grpc.RpcError as error:
                code, details = _status_of(error)
                if code is grpc.StatusCode.UNAVAILABLE:
                    refusal = tls_refusal(self._connection, details)
                    if refusal is not None:
                        raise refusal from error
                if not is_transient(code, details) or number == policy.attempts:
                    raise self._translate(method, code, details, number) from error
                wait = policy.backoff(number - 1, self._uniform)
                _log.warning(
                    "hub %s failed (%s), retrying in %.1f s (attempt %d of %d)",
                    method,
                    code.name,
                    wait,
                    number + 1,
                    policy.attempts,
                )
                self._sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _translate(
        self, method: str, code: grpc.StatusCode, details: str, attempts: int
    ) -> HubClientError:
        error_class = STATUS_ERRORS.get(code, HubClientError)
        if error_class is HubRejectedError:
            message = details  # written by the hub for users
        elif error_class is HubAuthError:
            message = f"not authorised by the hub: {details}"
        elif error_class is HubUnavailableError:
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            message = f"hub at {self._target} unavailable for {method}{tries}: {details}"
            if self._connection.insecure and _SOCKET_CLOSED.search(details):
                message += (
                    " (a hub serving TLS closes plaintext connections this way: drop insecure "
                    "and set ca_cert if it does)"
                )
        else:
            message = f"hub call {method} failed ({code.name}): {details}"
        return error_class(message, status=code.name)


class HubClient(HubServiceClient):
    """A member's connection to the hub's MemberService, and to the KeyService and
    CustodianService that distribute the forum secret sealed to each member (the hub answers
    each by the caller's role: members and custodians use KeyService, custodians alone
    CustodianService)."""

    def __init__(
        self,
        connection: HubConnection,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        confirm_batch_tokens: int = CONFIRM_BATCH_TOKENS,
        sleep: Callable[[float], None] = time.sleep,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        if confirm_batch_tokens < 1:
            raise ValueError("confirm_batch_tokens must be positive")
        super().__init__(connection, retry=retry, timeouts=timeouts, sleep=sleep, uniform=uniform)
        self._confirm_batch_tokens = confirm_batch_tokens
        self._stub = wire.member_stub(self._channel)
        self._key_stub = wire.key_stub(self._channel)
        self._custodian_stub = wire.custodian_stub(self._channel)
        self._parameters: HubParameters | None = None

    # -- calls --------------------------------------------------------------------------------

    def get_parameters(self) -> HubParameters:
        """The forum's published parameters; also remembered for chunk sizes and deadlines."""
        response = self._unary("GetParameters", self._stub.GetParameters, wire.parameters_request())
        self._parameters = wire.parameters_from_proto(response)
        return self._parameters

    def submit(
        self,
        *,
        sketch_format: SketchFormat,
        kind: str,
        key_id: str,
        params_digest: bytes,
        declared_count: int,
        payload: bytes,
        chunk_bytes: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> SubmitResult:
        """Upload one sketch: an encoded Bloom filter (``SketchFormat.BLOOM_V1``) or a cluster
        set (``SketchFormat.CLUSTERS_V1``, made by ``sigshare.sketch.wire.encode_cluster_set``).

        ``on_progress`` receives the size of each chunk as gRPC takes it for sending, on gRPC's
        sending thread; a retried attempt sends, and reports, the payload again.
        """
        published = self._parameters
        if published is not None and 0 < published.max_upload_bytes < len(payload):
            raise HubRejectedError(
                f"the sketch is {len(payload)} bytes, the hub accepts at most "
                f"{published.max_upload_bytes}"
            )
        size = self._chunk_size(chunk_bytes)
        header = wire.submit_header(
            sketch_format=sketch_format,
            kind=kind,
            key_id=key_id,
            params_digest=params_digest,
            declared_count=declared_count,
            payload=payload,
        )
        timeout = self._timeouts.stream(len(payload))
        response = self._retrying(
            "Submit",
            lambda: self._stub.Submit(
                wire.submit_chunks(header, payload, size, on_progress),
                timeout=timeout,
                metadata=self._metadata,
            ),
        )
        return wire.submit_result_from_proto(response)

    def resolve(
        self,
        kind: str,
        key_id: str,
        tokens: bytes,
        on_progress: Callable[[int], None] | None = None,
    ) -> ResolveResult:
        """Ask the hub which of this member's own values of ``kind`` other members hold.

        ``tokens`` are the values' 16-byte tokens, concatenated (this member's own: the hub
        answers only tokens its active filter holds, within the query budgets). Retrying is
        safe: a repeated token costs no budget. ``on_progress`` receives the number of tokens
        sent in each chunk; a retry reports again.
        """
        if len(tokens) % TOKEN_BYTES:
            raise ValueError(f"tokens are {TOKEN_BYTES} bytes each; got {len(tokens)} bytes")
        count = len(tokens) // TOKEN_BYTES
        timeout = self._timeouts.stream(3 * len(tokens))
        chunk = self._chunk_size(None)

        def attempt() -> ResolveResult:
            call = self._stub.Resolve(
                wire.resolve_requests(kind, key_id, tokens, chunk, on_progress),
                timeout=timeout,
                metadata=self._metadata,
            )
            try:
                return wire.resolve_from_stream(call, kind=kind, key_id=key_id, count=count)
            finally:
                call.cancel()  # frees the stream when verification stopped reading early

        return self._retrying("Resolve", attempt)

    def confirm(self, kind: str, key_id: str, tokens: Iterable[ConfirmedToken]) -> ConfirmResult:
        """Offer resolved tokens in batches that fit the hub's message limit; sums the answers.

        Confirming is idempotent, so after a failure part-way the whole call can be repeated.
        """
        accepted = shared = not_resolved = over_budget = 0
        for request in wire.confirm_requests(
            kind,
            key_id,
            tokens,
            max_tokens=self._confirm_batch_tokens,
            max_bytes=CONFIRM_BATCH_BYTES,
        ):
            result = wire.confirm_result_from_proto(
                self._unary("Confirm", self._stub.Confirm, request)
            )
            accepted += result.accepted
            shared += result.shared
            not_resolved += result.not_resolved
            over_budget += result.over_budget
        return ConfirmResult(
            accepted=accepted, shared=shared, not_resolved=not_resolved, over_budget=over_budget
        )

    def list_matches(self, kind: str = "") -> Matches:
        """Shared indicators and campaign matches of this member (``""``: every kind)."""
        response = self._unary(
            "ListMatches", self._stub.ListMatches, wire.list_matches_request(kind)
        )
        return wire.matches_from_proto(response)

    def status(self) -> tuple[str, list[SubmissionInfoView]]:
        """This member's name as the hub knows it, and its submissions."""
        response = self._unary("GetStatus", self._stub.GetStatus, wire.status_request())
        return wire.status_from_proto(response)

    # -- sealed forum secrets -----------------------------------------------------------------

    def register_keys(
        self, sealing_public: bytes, signing_public: bytes, proof: bytes
    ) -> RegisterKeysResult:
        """Register the caller's public keys, with ``proof`` that it holds the signing key.

        Retrying is safe: registering the same keys again changes nothing (``unchanged``)."""
        response = self._unary(
            "RegisterKeys",
            self._key_stub.RegisterKeys,
            wire.register_keys_request(sealing_public, signing_public, proof),
        )
        return wire.register_keys_result_from_proto(response)

    def key_status(self) -> KeyStatus:
        """The caller's name and key registrations (approved, pending) as the hub sees them."""
        response = self._unary(
            "GetKeyStatus", self._key_stub.GetKeyStatus, wire.key_status_request()
        )
        return wire.key_status_from_proto(response)

    def fetch_envelopes(self) -> list[SealedEnvelope]:
        """Every envelope addressed to the caller, oldest first (the hub records the pickup)."""
        response = self._unary(
            "FetchEnvelopes", self._key_stub.FetchEnvelopes, wire.fetch_envelopes_request()
        )
        return wire.envelopes_from_proto(response)

    def list_custodians(self) -> list[CustodianInfo]:
        """The forum's active custodians with approved keys."""
        response = self._unary(
            "ListCustodians", self._key_stub.ListCustodians, wire.list_custodians_request()
        )
        return wire.custodians_from_proto(response)

    def list_recipients(self) -> RecipientList:
        """Custodians only: whom a rotation must cover, who gets nothing, and why one is due."""
        response = self._unary(
            "ListRecipients",
            self._custodian_stub.ListRecipients,
            wire.list_recipients_request(),
        )
        return wire.recipients_from_proto(response)

    def upload_envelopes(
        self, key_id: str, activate_at: datetime | None, envelopes: Sequence[SealedEnvelope]
    ) -> UploadEnvelopesResult:
        """Custodians only: one rotation's envelopes, one per recipient, all or nothing.

        Tried once: a key id can be rotated to only once, so repeating an upload the hub
        carried out before its answer was lost would be refused, and would hide that success.
        """
        response = self._unary(
            "UploadEnvelopes",
            self._custodian_stub.UploadEnvelopes,
            wire.upload_envelopes_request(key_id, activate_at, envelopes),
            retry=False,
        )
        return wire.upload_result_from_proto(response)

    # -- machinery ----------------------------------------------------------------------------

    def _chunk_size(self, requested: int | None) -> int:
        """The caller's size, capped at the hub's published one; that, or 1 MiB, by default."""
        published = self._parameters.chunk_bytes if self._parameters else 0
        if requested is None:
            return published or DEFAULT_CHUNK_BYTES
        if requested < 1:
            raise ValueError("chunk_bytes must be positive")
        return min(requested, published) if published else requested
