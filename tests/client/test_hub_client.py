"""The hub SDK against a real in-process gRPC server playing a scripted MemberService.

The fake records what arrived (metadata, chunks, requests, deadlines) and answers with canned
data, or aborts with queued status codes, so framing, verification, retries and error
translation are checked over the real transport. It only ever listens on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from sigshare.client.errors import (
    HubAuthError,
    HubConfigError,
    HubProtocolError,
    HubRejectedError,
    HubUnavailableError,
)
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy, Timeouts
from sigshare.client.hub_types import ClusterInfo, ConfirmedToken, new_cluster_id
from sigshare.client.wire import encode_cluster_set
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.codec import SignatureSet, decode_signatures
from sigshare.sketch.minhash import MinHashParams
from sigshare.sketch.resolution import encode_resolution
from sigshare.v1 import hub_pb2, hub_pb2_grpc

CREDENTIAL = "member-a.s3cr3t-credential"
EXPIRES = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BLOOM = BloomParams.for_capacity("email", "k2026a", capacity=1000, target_fpr=1e-3)
MINHASH = MinHashParams(key_id="k2026a", num_perm=64)


def _timestamp(value: datetime) -> Timestamp:
    timestamp = Timestamp()
    timestamp.FromDatetime(value)
    return timestamp


class FakeMemberService(hub_pb2_grpc.MemberServiceServicer):
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.metadata: list[dict[str, str]] = []
        self.deadlines: dict[str, float | None] = {}
        self.failures: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self.submitted: list[list[hub_pb2.SubmitChunk]] = []
        self.confirms: list[hub_pb2.ConfirmRequest] = []
        self.parameters = hub_pb2.GetParametersResponse(
            bloom=[
                hub_pb2.BloomParameters(
                    kind=BLOOM.kind,
                    key_id=BLOOM.key_id,
                    capacity=BLOOM.capacity,
                    target_fpr=BLOOM.target_fpr,
                    m=BLOOM.m,
                    k=BLOOM.k,
                    quorum=2,
                    retention_days=30,
                    reveal_members=False,
                    digest=BLOOM.digest(),
                )
            ],
            minhash=[
                hub_pb2.MinHashParameters(
                    family="prompt",
                    key_id=MINHASH.key_id,
                    num_perm=MINHASH.num_perm,
                    shingle_unit=MINHASH.shingle_unit,
                    shingle_size=MINHASH.shingle_size,
                    threshold=0.5,
                    quorum=2,
                    retention_days=30,
                    reveal_members=True,
                    digest=MINHASH.digest(),
                    bands=16,
                    rows=4,
                )
            ],
            max_upload_bytes=1 << 20,
            chunk_bytes=4096,
        )
        counts = np.random.default_rng(5).integers(0, 6, BLOOM.m).astype(np.uint8)
        counts[counts < 1] = 0
        self.counts = counts
        self.resolution = encode_resolution(counts)
        self.resolution_chunks: list[bytes] | None = None
        """Override of the data chunks sent (corruption, truncation); None: the true ones."""
        self.header_key_id: str | None = None
        self.release = threading.Event()

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        self.calls[method] += 1
        self.metadata.append({key: str(value) for key, value in context.invocation_metadata()})
        self.deadlines[method] = context.time_remaining()
        queued = self.failures.get(method)
        if queued:
            code, message = queued.pop(0)
            context.abort(code, message)

    def GetParameters(self, request, context):
        self._enter("GetParameters", context)
        return self.parameters

    def Submit(self, request_iterator, context):
        self._enter("Submit", context)
        chunks = list(request_iterator)
        self.submitted.append(chunks)
        return hub_pb2.SubmitResponse(
            submission_id=41 + len(self.submitted),
            duplicate=False,
            health=hub_pb2.FilterHealth(
                set_bits=123, fill=0.25, expected_fill=0.24, fpr_at_fill=1e-4
            ),
            expires_at=_timestamp(EXPIRES),
        )

    def DownloadResolution(self, request, context):
        self._enter("DownloadResolution", context)
        yield hub_pb2.ResolutionChunk(
            header=hub_pb2.ResolutionHeader(
                kind=request.kind,
                key_id=self.header_key_id or request.key_id,
                m=BLOOM.m,
                k=BLOOM.k,
                quorum=2,
                members=3,
                content_length=len(self.resolution),
                content_sha256=hashlib.sha256(self.resolution).digest(),
                encoding="u8-zlib",
                computed_at=_timestamp(EXPIRES),
            )
        )
        chunks = self.resolution_chunks
        if chunks is None:
            chunks = [self.resolution[i : i + 500] for i in range(0, len(self.resolution), 500)]
        for data in chunks:
            yield hub_pb2.ResolutionChunk(data=data)

    def Confirm(self, request, context):
        self._enter("Confirm", context)
        self.confirms.append(request)
        return hub_pb2.ConfirmResponse(accepted=len(request.tokens) - 1, shared=1, not_resolved=1)

    def ListMatches(self, request, context):
        self._enter("ListMatches", context)
        return hub_pb2.ListMatchesResponse(
            indicators=[
                hub_pb2.SharedIndicator(
                    id="ind-1",
                    kind="email",
                    token=bytes(range(16)),
                    reporters=3,
                    categories=["distillation"],
                    first_seen=_timestamp(EXPIRES - timedelta(days=3)),
                    status="active",
                )
            ],
            campaigns=[
                hub_pb2.CampaignMatch(
                    cluster_id="ab" * 16,
                    campaign_id="camp-7",
                    similarity=0.8,
                    other_members=2,
                    other_member_names=["lab-b", "lab-c"],
                )
            ],
        )

    def GetStatus(self, request, context):
        self._enter("GetStatus", context)
        self.release.wait(5)
        return hub_pb2.GetStatusResponse(
            member="lab-a",
            submissions=[
                hub_pb2.SubmissionInfo(
                    id=7,
                    member="lab-a",
                    kind="email",
                    key_id="k2026a",
                    declared_count=10,
                    byte_size=300,
                    status="active",
                    created_at=_timestamp(EXPIRES - timedelta(days=30)),
                    expires_at=_timestamp(EXPIRES),
                )
            ],
        )


@pytest.fixture
def fake() -> FakeMemberService:
    return FakeMemberService()


@pytest.fixture
def port(fake: FakeMemberService) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    hub_pb2_grpc.add_MemberServiceServicer_to_server(fake, server)
    bound = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield bound
    fake.release.set()
    server.stop(None)


class Sleeps(list[float]):
    """Injected sleep: records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(port: int, sleeps: Sleeps):
    clients: list[HubClient] = []

    def make(**options) -> HubClient:
        connection = HubConnection(target=f"127.0.0.1:{port}", credential=CREDENTIAL, insecure=True)
        options.setdefault("sleep", sleeps)
        options.setdefault("uniform", lambda: 1.0)  # the full backoff ceiling: deterministic
        client = HubClient(connection, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client) -> HubClient:
    return make_client()


# ---------------------------------------------------------------------------------- parameters


def test_parameters_convert_and_verify_their_digests(client: HubClient, fake: FakeMemberService):
    parameters = client.get_parameters()
    assert parameters.max_upload_bytes == 1 << 20
    assert parameters.chunk_bytes == 4096
    published = parameters.bloom["email"]
    assert published.quorum == 2
    assert published.bloom_params() == BLOOM
    family = parameters.minhash["prompt"]
    assert (family.bands, family.rows, family.reveal_members) == (16, 4, True)
    assert family.minhash_params() == MINHASH


def test_a_digest_the_client_cannot_reproduce_is_a_protocol_error(
    client: HubClient, fake: FakeMemberService
):
    fake.parameters.bloom[0].digest = b"\0" * 32
    fake.parameters.minhash[0].digest = b"\0" * 32
    parameters = client.get_parameters()
    with pytest.raises(HubProtocolError, match="canonical parameter encoding") as caught:
        parameters.bloom["email"].bloom_params()
    assert caught.value.exit_code == ExitCode.FAILURE
    with pytest.raises(HubProtocolError, match="canonical parameter encoding"):
        parameters.minhash["prompt"].minhash_params()


# ---------------------------------------------------------------------------------- submission


def test_submit_sends_a_verified_header_then_the_payload_in_chunks(
    client: HubClient, fake: FakeMemberService
):
    payload = np.random.default_rng(1).bytes(10_000)
    progress: list[int] = []
    result = client.submit(
        sketch_format="bloom",
        kind="email",
        key_id="k2026a",
        params_digest=BLOOM.digest(),
        declared_count=321,
        payload=payload,
        chunk_bytes=4096,
        on_progress=progress.append,
    )
    (chunks,) = fake.submitted
    assert chunks[0].WhichOneof("part") == "header"
    header = chunks[0].header
    assert header.format == hub_pb2.SKETCH_FORMAT_BLOOM_V1
    assert (header.kind, header.key_id, header.declared_count) == ("email", "k2026a", 321)
    assert header.params_digest == BLOOM.digest()
    assert header.content_length == len(payload)
    assert header.content_sha256 == hashlib.sha256(payload).digest()
    data = [chunk.data for chunk in chunks[1:]]
    assert all(chunk.WhichOneof("part") == "data" for chunk in chunks[1:])
    assert [len(piece) for piece in data] == [4096, 4096, 1808]
    assert b"".join(data) == payload
    assert progress == [4096, 4096, 1808]
    assert result.submission_id == 42
    assert not result.duplicate
    assert result.expires_at == EXPIRES
    assert result.health is not None
    assert result.health.set_bits == 123
    assert result.health.fpr_at_fill == pytest.approx(1e-4)
    # Streams get a deadline scaled by size: 60 s + 10 kB at 10 MB/s.
    assert 59 < fake.deadlines["Submit"] < 60.5


def test_submit_defaults_to_the_published_chunk_size_and_clusters_format(
    client: HubClient, fake: FakeMemberService
):
    client.get_parameters()  # publishes chunk_bytes = 4096
    client.submit(
        sketch_format="clusters",
        kind="prompt",
        key_id="k2026a",
        params_digest=MINHASH.digest(),
        declared_count=2,
        payload=b"x" * 9000,
        chunk_bytes=1 << 20,  # capped at what the hub publishes
    )
    (chunks,) = fake.submitted
    assert chunks[0].header.format == hub_pb2.SKETCH_FORMAT_CLUSTERS_V1
    assert [len(chunk.data) for chunk in chunks[1:]] == [4096, 4096, 808]


def test_submit_larger_than_the_published_limit_is_refused_before_upload(
    client: HubClient, fake: FakeMemberService
):
    client.get_parameters()
    with pytest.raises(HubRejectedError, match="at most 1048576"):
        client.submit(
            sketch_format="bloom",
            kind="email",
            key_id="k2026a",
            params_digest=BLOOM.digest(),
            declared_count=1,
            payload=bytes((1 << 20) + 1),
        )
    assert fake.calls["Submit"] == 0


def test_every_call_carries_the_bearer_credential_and_a_deadline(
    client: HubClient, fake: FakeMemberService
):
    fake.release.set()
    client.get_parameters()
    client.list_matches()
    client.status()
    client.confirm("email", "k2026a", [ConfirmedToken(bytes(16))])
    client.download_resolution("email", "k2026a")
    assert len(fake.metadata) == 5
    assert all(entry["authorization"] == f"Bearer {CREDENTIAL}" for entry in fake.metadata)
    for method in ("GetParameters", "ListMatches", "GetStatus", "Confirm"):
        remaining = fake.deadlines[method]
        assert remaining is not None
        assert 25 < remaining < 30.5


# ---------------------------------------------------------------------------------- resolution


def test_resolution_download_returns_exactly_the_encoded_counts(
    client: HubClient, fake: FakeMemberService
):
    progress: list[int] = []
    resolution = client.download_resolution("email", "k2026a", on_progress=progress.append)
    assert resolution.counts.dtype == np.uint8
    np.testing.assert_array_equal(resolution.counts, fake.counts)
    assert (resolution.m, resolution.k, resolution.quorum, resolution.members) == (
        BLOOM.m,
        BLOOM.k,
        2,
        3,
    )
    assert resolution.computed_at == EXPIRES
    assert sum(progress) == len(fake.resolution)


def test_a_corrupted_resolution_chunk_fails_the_checksum(
    client: HubClient, fake: FakeMemberService
):
    corrupted = bytearray(fake.resolution)
    corrupted[len(corrupted) // 2] ^= 0x01
    fake.resolution_chunks = [bytes(corrupted)]
    with pytest.raises(HubProtocolError, match="SHA-256"):
        client.download_resolution("email", "k2026a")
    assert fake.calls["DownloadResolution"] == 1  # corruption is not retried


def test_a_truncated_resolution_stream_is_refused(client: HubClient, fake: FakeMemberService):
    fake.resolution_chunks = [fake.resolution[:-10]]
    with pytest.raises(HubProtocolError, match="ended after") as caught:
        client.download_resolution("email", "k2026a")
    assert caught.value.exit_code == ExitCode.FAILURE


def test_a_resolution_stream_longer_than_announced_is_refused(
    client: HubClient, fake: FakeMemberService
):
    fake.resolution_chunks = [fake.resolution, b"extra"]
    with pytest.raises(HubProtocolError, match="longer than"):
        client.download_resolution("email", "k2026a")


def test_a_resolution_for_another_key_epoch_is_refused(client: HubClient, fake: FakeMemberService):
    fake.header_key_id = "k2025z"
    with pytest.raises(HubProtocolError, match="asked for the resolution of 'email'/'k2026a'"):
        client.download_resolution("email", "k2026a")


# ---------------------------------------------------------------------------------- retries


def test_unavailable_is_retried_with_exponential_backoff_then_succeeds(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
):
    fake.failures["GetParameters"] = [(grpc.StatusCode.UNAVAILABLE, "restarting")] * 3
    parameters = client.get_parameters()
    assert "email" in parameters.bloom
    assert fake.calls["GetParameters"] == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_submission_stream_is_resent_whole_on_retry(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
):
    fake.failures["Submit"] = [(grpc.StatusCode.ABORTED, "contention")]
    payload = b"sketch" * 1000
    result = client.submit(
        sketch_format="bloom",
        kind="email",
        key_id="k2026a",
        params_digest=BLOOM.digest(),
        declared_count=1,
        payload=payload,
        chunk_bytes=1000,
    )
    assert fake.calls["Submit"] == 2
    assert result.submission_id == 42
    (chunks,) = fake.submitted  # the aborted attempt recorded nothing
    assert b"".join(chunk.data for chunk in chunks[1:]) == payload
    assert len(sleeps) == 1


def test_retries_give_up_after_the_policy_attempts(
    make_client, fake: FakeMemberService, sleeps: Sleeps
):
    client = make_client(retry=RetryPolicy(attempts=3, initial_backoff=0.1))
    fake.failures["ListMatches"] = [(grpc.StatusCode.UNAVAILABLE, "down")] * 10
    with pytest.raises(HubUnavailableError, match="after 3 attempts: down") as caught:
        client.list_matches()
    assert caught.value.exit_code == ExitCode.NETWORK
    assert caught.value.status == "UNAVAILABLE"
    assert fake.calls["ListMatches"] == 3
    assert sleeps == [0.1, 0.2]


def test_backoff_is_capped_and_jittered():
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=30.0, multiplier=2.0)
    assert policy.backoff(10, lambda: 1.0) == 30.0
    assert policy.backoff(2, lambda: 0.25) == 0.5
    assert policy.backoff(0, lambda: 0.0) == 0.0


def test_a_missed_deadline_is_retried_then_reported_as_network(
    make_client, fake: FakeMemberService
):
    client = make_client(retry=RetryPolicy(attempts=2), timeouts=Timeouts(unary=0.05))
    with pytest.raises(HubUnavailableError) as caught:
        client.status()  # the fake holds GetStatus until released
    assert caught.value.status == "DEADLINE_EXCEEDED"
    fake.release.set()


def test_a_refused_credential_is_an_auth_error_without_retry(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
):
    fake.failures["GetParameters"] = [(grpc.StatusCode.UNAUTHENTICATED, "unknown credential")]
    with pytest.raises(HubAuthError, match="unknown credential") as caught:
        client.get_parameters()
    assert caught.value.exit_code == ExitCode.AUTH
    assert CREDENTIAL not in str(caught.value)
    assert fake.calls["GetParameters"] == 1
    assert sleeps == []


def test_invalid_argument_is_rejected_with_the_hubs_message(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
):
    message = "declared count 5000 exceeds the capacity 1000 of kind 'email'"
    fake.failures["Submit"] = [(grpc.StatusCode.INVALID_ARGUMENT, message)]
    with pytest.raises(HubRejectedError) as caught:
        client.submit(
            sketch_format="bloom",
            kind="email",
            key_id="k2026a",
            params_digest=BLOOM.digest(),
            declared_count=5000,
            payload=b"bits",
        )
    assert str(caught.value) == message
    assert caught.value.exit_code == ExitCode.REJECTED
    assert fake.calls["Submit"] == 1
    assert sleeps == []


# ---------------------------------------------------------------------------------- confirm, views


def test_confirm_batches_tokens_and_sums_the_answers(make_client, fake: FakeMemberService):
    client = make_client(confirm_batch_tokens=3)
    seen = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    tokens = [
        ConfirmedToken(bytes([i]) * 16, category="distillation", first_seen=seen, last_seen=seen)
        for i in range(7)
    ]
    result = client.confirm("email", "k2026a", tokens)
    assert [len(request.tokens) for request in fake.confirms] == [3, 3, 1]
    assert all((r.kind, r.key_id) == ("email", "k2026a") for r in fake.confirms)
    sent = [token for request in fake.confirms for token in request.tokens]
    assert [token.token for token in sent] == [token.token for token in tokens]
    assert sent[0].category == "distillation"
    assert sent[0].first_seen.ToDatetime(tzinfo=UTC) == seen
    assert sent[0].last_seen.ToDatetime(tzinfo=UTC) == seen
    # The fake accepts all but one token per request, shares one and refuses one.
    assert (result.accepted, result.shared, result.not_resolved) == (4, 3, 3)


def test_confirm_of_nothing_makes_no_call(client: HubClient, fake: FakeMemberService):
    result = client.confirm("email", "k2026a", [])
    assert (result.accepted, result.shared, result.not_resolved) == (0, 0, 0)
    assert fake.calls["Confirm"] == 0


def test_matches_and_status_convert(client: HubClient, fake: FakeMemberService):
    fake.release.set()
    matches = client.list_matches("email")
    (indicator,) = matches.indicators
    assert indicator.token == bytes(range(16))
    assert indicator.categories == ("distillation",)
    assert indicator.reporter_names == ()
    assert indicator.first_seen == EXPIRES - timedelta(days=3)
    assert indicator.last_seen is None
    (campaign,) = matches.campaigns
    assert campaign.other_member_names == ("lab-b", "lab-c")
    member, submissions = client.status()
    assert member == "lab-a"
    assert submissions[0].expires_at == EXPIRES
    assert submissions[0].health is None


# ---------------------------------------------------------------------------------- connection


@pytest.mark.parametrize("target", ["10.0.0.5:8443", "hub.example.org:443", "[2001:db8::1]:443"])
def test_plaintext_off_loopback_is_refused(target: str):
    connection = HubConnection(target=target, credential=CREDENTIAL, insecure=True)
    with pytest.raises(HubConfigError, match="loopback") as caught:
        HubClient(connection)
    assert caught.value.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize("target", ["127.0.0.1:1", "127.8.9.10:1", "[::1]:1", "localhost:1"])
def test_plaintext_on_loopback_is_allowed(target: str):
    HubClient(HubConnection(target=target, credential=CREDENTIAL, insecure=True)).close()


@pytest.mark.parametrize("target", ["127.0.0.1", "127.0.0.1:0", "::1:443", ":443", "h:http"])
def test_malformed_targets_are_config_errors(target: str):
    with pytest.raises(HubConfigError, match="HOST:PORT"):
        HubClient(HubConnection(target=target, credential=CREDENTIAL, insecure=True))


def test_tls_configuration_errors(tmp_path: Path):
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(HubConfigError, match="CA certificate"):
        HubClient(HubConnection(target="127.0.0.1:1", credential=CREDENTIAL, ca_cert=missing))
    with pytest.raises(HubConfigError, match="both"):
        HubClient(HubConnection(target="127.0.0.1:1", credential=CREDENTIAL, client_cert=missing))
    with pytest.raises(HubConfigError, match="credential"):
        HubClient(HubConnection(target="127.0.0.1:1", credential="has space", insecure=True))


def test_the_credential_is_never_in_a_repr():
    connection = HubConnection(target="127.0.0.1:1", credential=CREDENTIAL, insecure=True)
    assert CREDENTIAL not in repr(connection)
    with HubClient(connection) as client:
        assert CREDENTIAL not in repr(client)


# ---------------------------------------------------------------------------------- cluster sets


def test_cluster_set_round_trips_through_the_wire_message():
    values = np.random.default_rng(3).integers(0, 2**32, (2, 16), dtype=np.uint32)
    signatures = SignatureSet(key_id="k2026a", shingle_unit="word", shingle_size=3, values=values)
    clusters = [
        ClusterInfo(new_cluster_id(), volume=120, category="distillation", first_seen=EXPIRES),
        ClusterInfo(new_cluster_id(), volume=7, category="", last_seen=EXPIRES),
    ]
    message = hub_pb2.ClusterSketchSet.FromString(encode_cluster_set(signatures, clusters))
    decoded = decode_signatures(message.signatures)
    np.testing.assert_array_equal(decoded.values, values)
    assert [c.cluster_id for c in message.clusters] == [c.cluster_id for c in clusters]
    assert [c.volume for c in message.clusters] == [120, 7]
    assert message.clusters[0].first_seen.ToDatetime(tzinfo=UTC) == EXPIRES
    assert not message.clusters[0].HasField("last_seen")
    assert message.clusters[1].last_seen.ToDatetime(tzinfo=UTC) == EXPIRES


def test_cluster_set_refuses_rows_and_clusters_that_disagree():
    values = np.zeros((3, 16), dtype=np.uint32)
    signatures = SignatureSet(key_id="k2026a", shingle_unit="word", shingle_size=3, values=values)
    with pytest.raises(ValueError, match="3 signature rows for 2 clusters"):
        encode_cluster_set(signatures, [ClusterInfo(new_cluster_id(), 1, "") for _ in range(2)])


def test_cluster_ids_are_random_lowercase_hex():
    ids = {new_cluster_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and i == i.lower() and int(i, 16) >= 0 for i in ids)
    with pytest.raises(ValueError, match="32 lowercase hex"):
        ClusterInfo("ABCD" * 8, volume=1, category="")
