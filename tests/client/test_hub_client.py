"""The hub SDK against a real in-process gRPC server playing a scripted MemberService.

The fake records what arrived (metadata, chunks, requests, deadlines) and answers with canned
data, or aborts with queued status codes, so framing, verification, retries and error
translation are checked over the real transport. It only ever listens on 127.0.0.1.

Resolve answers come from a table of what the fake "knows" about each token, framed exactly as
the hub frames them (a summary, then answer chunks); tests that need a faulty hub tamper with
that honest stream, and the wire conversion is also checked on its own against every malformed
answer it must refuse.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from sigshare.client import wire
from sigshare.client.errors import (
    HubAuthError,
    HubClientError,
    HubConfigError,
    HubProtocolError,
    HubRejectedError,
    HubUnavailableError,
)
from sigshare.client.hub_client import HubClient, HubConnection, RetryPolicy, Timeouts
from sigshare.client.hub_types import ConfirmedToken, TokenStatus
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.codec import SketchFormat
from sigshare.sketch.minhash import MinHashParams
from sigshare.sketch.prf import TOKEN_BYTES
from sigshare.v1 import hub_pb2, hub_pb2_grpc

CREDENTIAL = "member-a.s3cr3t-credential"
EXPIRES = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FORUM_FPR = 1e-3
MAX_MEMBERS = 32
BLOOM = BloomParams.for_forum("email", "k2026a", 1000, FORUM_FPR, MAX_MEMBERS)
MINHASH = MinHashParams(key_id="k2026a", num_perm=64)
PUBLISHED_CHUNK_BYTES = 1000
"""Not a multiple of the token size: Resolve chunks must still carry whole tokens."""
NAMES = tuple(f"lab-{i:02d}" for i in range(1, 11))
"""Ten other members: holder masks take two bytes."""
QUORUM = 2
MEMBERS = 11
SUBMISSION_BUDGET = 700
DAY_BUDGET = 1000
FREES_AT = EXPIRES + timedelta(hours=5)


def _timestamp(value: datetime) -> Timestamp:
    timestamp = Timestamp()
    timestamp.FromDatetime(value)
    return timestamp


def token(index: int) -> bytes:
    return hashlib.sha256(index.to_bytes(4, "big")).digest()[:TOKEN_BYTES]


# ---------------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    """What the fake hub says about one token."""

    status: TokenStatus
    others: int = 0
    names: tuple[str, ...] = ()


def planned_answer(index: int) -> Answer:
    """Token ``index``'s answer: a mix of every status, 0 to 3 other holders with names."""
    if index % 5 == 3:
        return Answer(TokenStatus.NOT_HELD)
    if index % 5 == 4:
        return Answer(TokenStatus.OVER_BUDGET)
    others = index % 4
    return Answer(
        TokenStatus.ANSWERED,
        others,
        tuple(NAMES[(3 * index + j) % len(NAMES)] for j in range(others)),
    )


def answer_stream(
    kind: str,
    key_id: str,
    answers: Sequence[Answer],
    *,
    reveal: bool,
    chunk_tokens: int = 64,
) -> list[hub_pb2.ResolveResponse]:
    """The hub's framing of ``answers``: a summary, then answer chunks in request order."""
    names = sorted({name for answer in answers for name in answer.names}) if reveal else []
    mask_bytes = -(-len(names) // 8)
    tally = Counter(answer.status for answer in answers)
    summary = hub_pb2.ResolveSummary(
        kind=kind,
        key_id=key_id,
        quorum=QUORUM,
        members=MEMBERS,
        answered=tally[TokenStatus.ANSWERED],
        not_held=tally[TokenStatus.NOT_HELD],
        over_budget=tally[TokenStatus.OVER_BUDGET],
        submission_tokens=tally[TokenStatus.ANSWERED],
        submission_budget=SUBMISSION_BUDGET,
        day_tokens=DAY_BUDGET,
        day_budget=DAY_BUDGET,
        holder_names=names,
        holder_mask_bytes=mask_bytes,
        computed_at=_timestamp(EXPIRES),
    )
    if tally[TokenStatus.OVER_BUDGET]:
        summary.budget_frees_at.CopyFrom(_timestamp(FREES_AT))
    messages = [hub_pb2.ResolveResponse(summary=summary)]
    for start in range(0, len(answers), chunk_tokens):
        part = answers[start : start + chunk_tokens]
        holders = bytearray()
        for answer in part:
            bits = np.zeros(8 * mask_bytes, dtype=np.uint8)
            bits[[names.index(name) for name in answer.names if reveal]] = 1
            holders += np.packbits(bits, bitorder="little").tobytes()
        messages.append(
            hub_pb2.ResolveResponse(
                answers=hub_pb2.ResolveAnswers(
                    status=bytes(answer.status for answer in part),
                    others=bytes(answer.others for answer in part),
                    holders=bytes(holders),
                )
            )
        )
    return messages


Tamper = Callable[[list[hub_pb2.ResolveResponse]], list[hub_pb2.ResolveResponse]]


# ---------------------------------------------------------------------------------- the fake


class FakeMemberService(hub_pb2_grpc.MemberServiceServicer):
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.metadata: list[dict[str, str]] = []
        self.deadlines: dict[str, float | None] = {}
        self.failures: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self.submitted: list[list[hub_pb2.SubmitChunk]] = []
        self.confirms: list[hub_pb2.ConfirmRequest] = []
        self.resolves: list[list[hub_pb2.ResolveRequest]] = []
        self.parameters = hub_pb2.GetParametersResponse(
            bloom=[
                hub_pb2.BloomParameters(
                    kind=BLOOM.kind,
                    key_id=BLOOM.key_id,
                    capacity=BLOOM.capacity,
                    target_fpr=BLOOM.target_fpr,
                    m=BLOOM.m,
                    k=BLOOM.k,
                    quorum=QUORUM,
                    retention_days=30,
                    reveal_members=False,
                    digest=BLOOM.digest(),
                    forum_fpr=FORUM_FPR,
                    max_members=MAX_MEMBERS,
                    replace_interval_seconds=3600,
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
                    quorum=QUORUM,
                    retention_days=30,
                    reveal_members=True,
                    digest=MINHASH.digest(),
                    bands=16,
                    rows=4,
                )
            ],
            max_upload_bytes=1 << 20,
            chunk_bytes=PUBLISHED_CHUNK_BYTES,
        )
        self.known: dict[bytes, Answer] = {token(i): planned_answer(i) for i in range(2000)}
        """What the fake answers per token; tokens it does not know are not held."""
        self.reveal = True
        self.tamper: Tamper | None = None
        """Turns the honest answer into a faulty hub's."""
        self.release = threading.Event()

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        self.calls[method] += 1
        self.metadata.append({key: str(value) for key, value in context.invocation_metadata()})
        self.deadlines[method] = context.time_remaining()
        queued = self.failures.get(method)
        if queued:
            code, message = queued.pop(0)
            context.abort(code, message)

    def GetParameters(
        self, request: hub_pb2.GetParametersRequest, context: grpc.ServicerContext
    ) -> hub_pb2.GetParametersResponse:
        self._enter("GetParameters", context)
        return self.parameters

    def Submit(
        self, request_iterator: Iterator[hub_pb2.SubmitChunk], context: grpc.ServicerContext
    ) -> hub_pb2.SubmitResponse:
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

    def Resolve(
        self, request_iterator: Iterator[hub_pb2.ResolveRequest], context: grpc.ServicerContext
    ) -> Iterator[hub_pb2.ResolveResponse]:
        self._enter("Resolve", context)
        requests = list(request_iterator)
        self.resolves.append(requests)
        header = requests[0].header
        tokens = b"".join(request.tokens for request in requests[1:])
        answers = [
            self.known.get(tokens[i : i + TOKEN_BYTES], Answer(TokenStatus.NOT_HELD))
            for i in range(0, len(tokens), TOKEN_BYTES)
        ]
        messages = answer_stream(header.kind, header.key_id, answers, reveal=self.reveal)
        yield from self.tamper(messages) if self.tamper else messages

    def Confirm(
        self, request: hub_pb2.ConfirmRequest, context: grpc.ServicerContext
    ) -> hub_pb2.ConfirmResponse:
        self._enter("Confirm", context)
        self.confirms.append(request)
        # All but one token accepted, one shared, one refused; in full batches the refused one
        # was over budget.
        return hub_pb2.ConfirmResponse(
            accepted=len(request.tokens) - 1,
            shared=1,
            not_resolved=1,
            over_budget=min(1, len(request.tokens) - 1),
        )

    def ListMatches(
        self, request: hub_pb2.ListMatchesRequest, context: grpc.ServicerContext
    ) -> hub_pb2.ListMatchesResponse:
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

    def GetStatus(
        self, request: hub_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> hub_pb2.GetStatusResponse:
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


class MakeClient(Protocol):
    def __call__(self, **options: Any) -> HubClient: ...


@pytest.fixture
def make_client(port: int, sleeps: Sleeps) -> Iterator[MakeClient]:
    clients: list[HubClient] = []

    def make(**options: Any) -> HubClient:
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
def client(make_client: MakeClient) -> HubClient:
    return make_client()


# ---------------------------------------------------------------------------------- parameters


def test_parameters_convert_and_verify_their_digests(
    client: HubClient, fake: FakeMemberService
) -> None:
    parameters = client.get_parameters()
    assert parameters.max_upload_bytes == 1 << 20
    assert parameters.chunk_bytes == PUBLISHED_CHUNK_BYTES
    published = parameters.bloom["email"]
    assert published.quorum == QUORUM
    assert (published.forum_fpr, published.max_members) == (FORUM_FPR, MAX_MEMBERS)
    assert published.target_fpr == pytest.approx(FORUM_FPR / (MAX_MEMBERS - 1))
    assert published.bloom_params() == BLOOM
    family = parameters.minhash["prompt"]
    assert (family.bands, family.rows, family.reveal_members) == (16, 4, True)
    assert family.minhash_params() == MINHASH


def test_a_digest_the_client_cannot_reproduce_is_a_protocol_error(
    client: HubClient, fake: FakeMemberService
) -> None:
    fake.parameters.bloom[0].digest = b"\0" * 32
    fake.parameters.minhash[0].digest = b"\0" * 32
    parameters = client.get_parameters()
    with pytest.raises(HubProtocolError, match="canonical parameter encoding") as caught:
        parameters.bloom["email"].bloom_params()
    assert type(caught.value) is HubProtocolError
    with pytest.raises(HubProtocolError, match="canonical parameter encoding"):
        parameters.minhash["prompt"].minhash_params()


# ---------------------------------------------------------------------------------- submission


def test_submit_sends_a_verified_header_then_the_payload_in_chunks(
    client: HubClient, fake: FakeMemberService
) -> None:
    payload = np.random.default_rng(1).bytes(10_000)
    progress: list[int] = []
    result = client.submit(
        sketch_format=SketchFormat.BLOOM_V1,
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
    remaining = fake.deadlines["Submit"]
    assert remaining is not None
    assert 59 < remaining < 60.5


def test_submit_defaults_to_the_published_chunk_size_and_clusters_format(
    client: HubClient, fake: FakeMemberService
) -> None:
    client.get_parameters()  # publishes chunk_bytes = 1000
    client.submit(
        sketch_format=SketchFormat.CLUSTERS_V1,
        kind="prompt",
        key_id="k2026a",
        params_digest=MINHASH.digest(),
        declared_count=2,
        payload=b"x" * 2500,
        chunk_bytes=1 << 20,  # capped at what the hub publishes
    )
    (chunks,) = fake.submitted
    assert chunks[0].header.format == hub_pb2.SKETCH_FORMAT_CLUSTERS_V1
    assert [len(chunk.data) for chunk in chunks[1:]] == [1000, 1000, 500]


def test_submit_larger_than_the_published_limit_is_refused_before_upload(
    client: HubClient, fake: FakeMemberService
) -> None:
    client.get_parameters()
    with pytest.raises(HubRejectedError, match="at most 1048576"):
        client.submit(
            sketch_format=SketchFormat.BLOOM_V1,
            kind="email",
            key_id="k2026a",
            params_digest=BLOOM.digest(),
            declared_count=1,
            payload=bytes((1 << 20) + 1),
        )
    assert fake.calls["Submit"] == 0


def test_every_call_carries_the_bearer_credential_and_a_deadline(
    client: HubClient, fake: FakeMemberService
) -> None:
    fake.release.set()
    client.get_parameters()
    client.list_matches()
    client.status()
    client.confirm("email", "k2026a", [ConfirmedToken(bytes(16))])
    client.resolve("email", "k2026a", token(0))
    assert len(fake.metadata) == 5
    assert all(entry["authorization"] == f"Bearer {CREDENTIAL}" for entry in fake.metadata)
    for method in ("GetParameters", "ListMatches", "GetStatus", "Confirm"):
        remaining = fake.deadlines[method]
        assert remaining is not None
        assert 25 < remaining < 30.5
    # A Resolve stream's deadline is that of a stream: 60 s plus its (tiny) size at 10 MB/s.
    remaining = fake.deadlines["Resolve"]
    assert remaining is not None
    assert 59 < remaining < 60.5


# ---------------------------------------------------------------------------------- resolution

COUNT = 130
"""Tokens per resolve in these tests: with 1000-byte chunks, 62 + 62 + 6 tokens."""


def tokens_of(indices: Sequence[int]) -> bytes:
    return b"".join(token(i) for i in indices)


def test_resolve_sends_a_header_then_whole_tokens_in_chunks_no_larger_than_published(
    client: HubClient, fake: FakeMemberService
) -> None:
    client.get_parameters()  # publishes chunk_bytes = 1000: 62 whole tokens (992 bytes)
    tokens = tokens_of(range(COUNT))
    progress: list[int] = []
    client.resolve("email", "k2026a", tokens, on_progress=progress.append)
    (requests,) = fake.resolves
    assert requests[0].WhichOneof("part") == "header"
    header = requests[0].header
    assert (header.kind, header.key_id, header.token_count) == ("email", "k2026a", COUNT)
    assert all(request.WhichOneof("part") == "tokens" for request in requests[1:])
    sizes = [len(request.tokens) for request in requests[1:]]
    assert sizes == [62 * TOKEN_BYTES, 62 * TOKEN_BYTES, 6 * TOKEN_BYTES]
    assert all(size <= PUBLISHED_CHUNK_BYTES for size in sizes)
    assert b"".join(request.tokens for request in requests[1:]) == tokens
    assert progress == [62, 62, 6]  # tokens, not bytes


def test_resolve_before_the_parameters_are_known_uses_the_default_chunk_size(
    client: HubClient, fake: FakeMemberService
) -> None:
    client.resolve("email", "k2026a", tokens_of(range(COUNT)))
    (requests,) = fake.resolves
    assert [len(request.tokens) for request in requests[1:]] == [COUNT * TOKEN_BYTES]


def test_resolve_returns_every_answer_in_request_order(
    client: HubClient, fake: FakeMemberService
) -> None:
    indices = [*range(COUNT), 10_000]  # the last token is one the fake does not know
    result = client.resolve("email", "k2026a", tokens_of(indices))
    planned = [planned_answer(i) for i in range(COUNT)] + [Answer(TokenStatus.NOT_HELD)]
    assert result.status.tolist() == [answer.status for answer in planned]
    assert result.others.tolist() == [answer.others for answer in planned]
    assert [result.names_of(i) for i in range(len(indices))] == [
        tuple(sorted(answer.names)) for answer in planned
    ]
    assert result.holder_names == NAMES
    assert result.holders is not None
    assert result.holders.shape == (len(indices), 2)
    tally = Counter(answer.status for answer in planned)
    assert {status: result.count(status) for status in TokenStatus} == dict(tally)
    assert (result.kind, result.key_id, result.quorum, result.members) == (
        "email",
        "k2026a",
        QUORUM,
        MEMBERS,
    )
    assert (result.submission_tokens, result.submission_budget) == (
        tally[TokenStatus.ANSWERED],
        SUBMISSION_BUDGET,
    )
    assert (result.day_tokens, result.day_budget) == (DAY_BUDGET, DAY_BUDGET)
    assert result.budget_frees_at == FREES_AT
    assert result.computed_at == EXPIRES


def test_without_revealed_members_answers_carry_counts_and_no_names(
    client: HubClient, fake: FakeMemberService
) -> None:
    fake.reveal = False
    result = client.resolve("email", "k2026a", tokens_of(range(COUNT)))
    assert result.others.tolist() == [planned_answer(i).others for i in range(COUNT)]
    assert result.holder_names == ()
    assert result.holders is None
    assert all(result.names_of(i) == () for i in range(COUNT))


def test_an_answer_within_budget_has_no_time_the_budget_frees(
    client: HubClient, fake: FakeMemberService
) -> None:
    answered = [i for i in range(COUNT) if planned_answer(i).status != TokenStatus.OVER_BUDGET]
    result = client.resolve("email", "k2026a", tokens_of(answered))
    assert result.count(TokenStatus.OVER_BUDGET) == 0
    assert result.budget_frees_at is None


# -- a faulty hub: every malformed answer is refused


def _honest() -> list[hub_pb2.ResolveResponse]:
    """The hub's answer about tokens 0 … COUNT − 1: a summary and chunks of 64, 64 and 2."""
    return answer_stream("email", "k2026a", [planned_answer(i) for i in range(COUNT)], reveal=True)


def _summary(messages: list[hub_pb2.ResolveResponse]) -> hub_pb2.ResolveSummary:
    return messages[0].summary


def _chunk(messages: list[hub_pb2.ResolveResponse], index: int) -> hub_pb2.ResolveAnswers:
    return messages[1 + index].answers


def _first(status: TokenStatus) -> int:
    return next(i for i in range(COUNT) if planned_answer(i).status == status)


def _second_summary(messages: list[hub_pb2.ResolveResponse]) -> list[hub_pb2.ResolveResponse]:
    return [*messages[:2], messages[0], *messages[2:]]


def _another(field: str, value: str) -> Tamper:
    def tamper(messages: list[hub_pb2.ResolveResponse]) -> list[hub_pb2.ResolveResponse]:
        setattr(_summary(messages), field, value)
        return messages

    return tamper


def _extra_answer(messages: list[hub_pb2.ResolveResponse]) -> list[hub_pb2.ResolveResponse]:
    # Well-formed on its own (one token, a two-byte mask), but one token more than asked.
    extra = hub_pb2.ResolveAnswers(status=b"\x01", others=b"\x00", holders=b"\x00\x00")
    return [*messages, hub_pb2.ResolveResponse(answers=extra)]


def _missing_answer(messages: list[hub_pb2.ResolveResponse]) -> list[hub_pb2.ResolveResponse]:
    last = _chunk(messages, 2)
    last.status, last.others, last.holders = last.status[:-1], last.others[:-1], last.holders[:-2]
    return messages


def _short_field(field: str) -> Tamper:
    def tamper(messages: list[hub_pb2.ResolveResponse]) -> list[hub_pb2.ResolveResponse]:
        chunk = _chunk(messages, 0)
        setattr(chunk, field, getattr(chunk, field)[:-1])
        return messages

    return tamper


def _moved_tally(messages: list[hub_pb2.ResolveResponse]) -> list[hub_pb2.ResolveResponse]:
    # The total still matches the tokens asked; one status does not.
    summary = _summary(messages)
    summary.answered -= 1
    summary.not_held += 1
    return messages


def _unknown_status(messages: list[hub_pb2.ResolveResponse]) -> list[hub_pb2.ResolveResponse]:
    index = _first(TokenStatus.NOT_HELD)
    chunk = _chunk(messages, 0)
    chunk.status = chunk.status[:index] + b"\x03" + chunk.status[index + 1 :]
    _summary(messages).not_held -= 1  # the known statuses' tallies still agree
    return messages


def _count_for(status: TokenStatus) -> Tamper:
    def tamper(messages: list[hub_pb2.ResolveResponse]) -> list[hub_pb2.ResolveResponse]:
        index = _first(status)
        chunk = _chunk(messages, 0)
        chunk.others = chunk.others[:index] + b"\x01" + chunk.others[index + 1 :]
        return messages

    return tamper


def _one_byte_masks(messages: list[hub_pb2.ResolveResponse]) -> list[hub_pb2.ResolveResponse]:
    # Consistent lengths, but 8 bits cannot name the 10 holders the summary lists.
    _summary(messages).holder_mask_bytes = 1
    for message in messages[1:]:
        message.answers.holders = message.answers.holders[::2]
    return messages


MALFORMED: dict[str, tuple[Tamper, str]] = {
    "nothing": (lambda messages: [], "does not start with a summary"),
    "answers before the summary": (lambda messages: messages[1:], "does not start with"),
    "a second summary": (_second_summary, "second summary"),
    "another kind": (_another("kind", "phone"), r"asked about 'email'/'k2026a'"),
    "another key epoch": (_another("key_id", "k2025z"), r"the hub answered 'email'/'k2025z'"),
    "more answers than tokens": (_extra_answer, f"more than the {COUNT} tokens asked"),
    "one answer too few": (_missing_answer, f"answered {COUNT - 1} of {COUNT} tokens"),
    "a chunk too few": (lambda messages: messages[:-1], f"answered 128 of {COUNT} tokens"),
    "counts shorter than statuses": (_short_field("others"), "fields of different lengths"),
    "masks shorter than statuses": (_short_field("holders"), "fields of different lengths"),
    "statuses shorter than counts": (_short_field("status"), "fields of different lengths"),
    "tallies that disagree": (_moved_tally, "disagree with the hub's summary"),
    "an unknown status": (_unknown_status, "disagree with the hub's summary"),
    "a count for a token not held": (
        _count_for(TokenStatus.NOT_HELD),
        "holder counts for tokens it did not answer",
    ),
    "a count for a token over budget": (
        _count_for(TokenStatus.OVER_BUDGET),
        "holder counts for tokens it did not answer",
    ),
    "masks too short for the names": (_one_byte_masks, "do not fit 10 member names"),
}


def test_an_honest_answer_is_accepted_by_the_wire_check() -> None:
    """The positive control of the malformed cases below: untampered, the same stream passes."""
    result = wire.resolve_from_stream(_honest(), kind="email", key_id="k2026a", count=COUNT)
    assert result.status.tolist() == [planned_answer(i).status for i in range(COUNT)]
    assert result.others.tolist() == [planned_answer(i).others for i in range(COUNT)]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_resolve_answer_is_refused(case: str) -> None:
    tamper, message = MALFORMED[case]
    with pytest.raises(HubProtocolError, match=message) as caught:
        wire.resolve_from_stream(tamper(_honest()), kind="email", key_id="k2026a", count=COUNT)
    assert type(caught.value) is HubProtocolError


def test_holder_masks_wider_than_the_names_need_are_refused() -> None:
    messages = _honest()
    _summary(messages).holder_mask_bytes = 3  # the hub sends ⌈10 / 8⌉ = 2
    for message in messages[1:]:
        masks = np.frombuffer(message.answers.holders, dtype=np.uint8).reshape(-1, 2)
        message.answers.holders = np.pad(masks, ((0, 0), (0, 1))).tobytes()
    with pytest.raises(HubProtocolError, match="holder mask"):
        wire.resolve_from_stream(messages, kind="email", key_id="k2026a", count=COUNT)


def test_a_malformed_answer_over_the_wire_is_a_protocol_error_and_not_retried(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
) -> None:
    fake.tamper = _moved_tally
    with pytest.raises(HubProtocolError, match="disagree with the hub's summary") as caught:
        client.resolve("email", "k2026a", tokens_of(range(COUNT)))
    assert type(caught.value) is HubProtocolError
    assert fake.calls["Resolve"] == 1
    assert sleeps == []


def test_a_ragged_token_buffer_is_refused_before_any_call(
    client: HubClient, fake: FakeMemberService
) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        client.resolve("email", "k2026a", token(0) + b"\x01")
    assert fake.calls["Resolve"] == 0


# -- retries and refusals


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED],
)
def test_a_transiently_failed_resolve_is_sent_again_whole(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps, code: grpc.StatusCode
) -> None:
    """Safe to repeat: a repeated token costs the member no query budget at the hub."""
    fake.failures["Resolve"] = [(code, "busy (injected)")]
    tokens = tokens_of(range(COUNT))
    result = client.resolve("email", "k2026a", tokens)
    assert fake.calls["Resolve"] == 2
    assert sleeps == [0.5]
    (requests,) = fake.resolves  # the failed attempt was refused before it was read
    assert requests[0].header.token_count == COUNT
    assert b"".join(request.tokens for request in requests[1:]) == tokens
    assert result.status.tolist() == [planned_answer(i).status for i in range(COUNT)]


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    details: str
    error_class: type[HubClientError]


REFUSALS = {
    "no own filter": Refusal(
        grpc.StatusCode.FAILED_PRECONDITION,
        "submit a filter of kind email before resolving it: members learn only about values "
        "they hold themselves",
        HubRejectedError,
    ),
    "more held tokens than declared": Refusal(
        grpc.StatusCode.FAILED_PRECONDITION,
        "email: 800 distinct tokens your filter holds in one request, more than the 700 values "
        "it declares: ask only about your own values",
        HubRejectedError,
    ),
    "more tokens than the capacity": Refusal(
        grpc.StatusCode.INVALID_ARGUMENT,
        "1001 tokens in one request; email members hold at most 1000 values",
        HubRejectedError,
    ),
    "not a member": Refusal(grpc.StatusCode.PERMISSION_DENIED, "members only", HubAuthError),
    "revoked": Refusal(grpc.StatusCode.UNAUTHENTICATED, "credential revoked", HubAuthError),
    "a hub without Resolve": Refusal(
        grpc.StatusCode.UNIMPLEMENTED, "Method not found!", HubProtocolError
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_resolve_maps_to_its_error_class_without_retry(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps, case: str
) -> None:
    refusal = REFUSALS[case]
    fake.failures["Resolve"] = [(refusal.code, refusal.details)]
    with pytest.raises(HubClientError) as caught:
        client.resolve("email", "k2026a", tokens_of(range(COUNT)))
    assert type(caught.value) is refusal.error_class
    assert caught.value.status == refusal.code.name
    assert refusal.details in str(caught.value)
    if refusal.error_class is HubRejectedError:
        assert str(caught.value) == refusal.details  # written by the hub for users
    assert fake.calls["Resolve"] == 1
    assert sleeps == []
    assert fake.resolves == []


# ---------------------------------------------------------------------------------- retries


def test_unavailable_is_retried_with_exponential_backoff_then_succeeds(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
) -> None:
    fake.failures["GetParameters"] = [(grpc.StatusCode.UNAVAILABLE, "restarting")] * 3
    parameters = client.get_parameters()
    assert "email" in parameters.bloom
    assert fake.calls["GetParameters"] == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_response_stream_cut_by_a_proxy_is_retried_and_other_unknown_errors_are_not(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
) -> None:
    """HAProxy ends the stream of a replica that died mid-answer without trailers; gRPC calls
    that UNKNOWN "Stream removed". Any other UNKNOWN (a hub bug) is not retried."""
    cut = (grpc.StatusCode.UNKNOWN, "Stream removed (Data frame with END_STREAM flag received)")
    fake.failures["Resolve"] = [cut]
    answer = client.resolve("email", "k2026a", tokens_of(range(COUNT)))
    assert fake.calls["Resolve"] == 2
    assert len(answer.others) == COUNT
    assert len(sleeps) == 1

    fake.failures["GetParameters"] = [(grpc.StatusCode.UNKNOWN, "Exception calling application")]
    with pytest.raises(HubClientError) as caught:
        client.get_parameters()
    assert caught.value.status == "UNKNOWN"
    assert fake.calls["GetParameters"] == 1
    assert len(sleeps) == 1  # no further wait


def test_a_submission_stream_is_resent_whole_on_retry(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
) -> None:
    fake.failures["Submit"] = [(grpc.StatusCode.ABORTED, "contention")]
    payload = b"sketch" * 1000
    result = client.submit(
        sketch_format=SketchFormat.BLOOM_V1,
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
    make_client: MakeClient, fake: FakeMemberService, sleeps: Sleeps
) -> None:
    client = make_client(retry=RetryPolicy(attempts=3, initial_backoff=0.1))
    fake.failures["ListMatches"] = [(grpc.StatusCode.UNAVAILABLE, "down")] * 10
    with pytest.raises(HubUnavailableError, match="after 3 attempts: down") as caught:
        client.list_matches()
    assert type(caught.value) is HubUnavailableError
    assert caught.value.status == "UNAVAILABLE"
    assert fake.calls["ListMatches"] == 3
    assert sleeps == [0.1, 0.2]


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=30.0, multiplier=2.0)
    assert policy.backoff(10, lambda: 1.0) == 30.0
    assert policy.backoff(2, lambda: 0.25) == 0.5
    assert policy.backoff(0, lambda: 0.0) == 0.0


def test_a_missed_deadline_is_retried_then_reported_as_network(
    make_client: MakeClient, fake: FakeMemberService
) -> None:
    client = make_client(retry=RetryPolicy(attempts=2), timeouts=Timeouts(unary=0.05))
    with pytest.raises(HubUnavailableError) as caught:
        client.status()  # the fake holds GetStatus until released
    assert caught.value.status == "DEADLINE_EXCEEDED"
    fake.release.set()


def test_a_refused_credential_is_an_auth_error_without_retry(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
) -> None:
    fake.failures["GetParameters"] = [(grpc.StatusCode.UNAUTHENTICATED, "unknown credential")]
    with pytest.raises(HubAuthError, match="unknown credential") as caught:
        client.get_parameters()
    assert type(caught.value) is HubAuthError
    assert CREDENTIAL not in str(caught.value)
    assert fake.calls["GetParameters"] == 1
    assert sleeps == []


def test_invalid_argument_is_rejected_with_the_hubs_message(
    client: HubClient, fake: FakeMemberService, sleeps: Sleeps
) -> None:
    message = "declared count 5000 exceeds the capacity 1000 of kind 'email'"
    fake.failures["Submit"] = [(grpc.StatusCode.INVALID_ARGUMENT, message)]
    with pytest.raises(HubRejectedError) as caught:
        client.submit(
            sketch_format=SketchFormat.BLOOM_V1,
            kind="email",
            key_id="k2026a",
            params_digest=BLOOM.digest(),
            declared_count=5000,
            payload=b"bits",
        )
    assert str(caught.value) == message
    assert type(caught.value) is HubRejectedError
    assert fake.calls["Submit"] == 1
    assert sleeps == []


# ---------------------------------------------------------------------------------- confirm, views


def test_confirm_batches_tokens_and_sums_the_answers(
    make_client: MakeClient, fake: FakeMemberService
) -> None:
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
    # The fake accepts all but one token per request, shares one and refuses one, which in the
    # two full batches was over budget: every figure is the sum over the batches.
    assert (result.accepted, result.shared, result.not_resolved, result.over_budget) == (
        4,
        3,
        3,
        2,
    )


def test_confirm_of_nothing_makes_no_call(client: HubClient, fake: FakeMemberService) -> None:
    result = client.confirm("email", "k2026a", [])
    assert (result.accepted, result.shared, result.not_resolved, result.over_budget) == (0, 0, 0, 0)
    assert fake.calls["Confirm"] == 0


def test_matches_and_status_convert(client: HubClient, fake: FakeMemberService) -> None:
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
def test_plaintext_off_loopback_is_refused(target: str) -> None:
    connection = HubConnection(target=target, credential=CREDENTIAL, insecure=True)
    with pytest.raises(HubConfigError, match="loopback") as caught:
        HubClient(connection)
    assert type(caught.value) is HubConfigError


@pytest.mark.parametrize("target", ["127.0.0.1:1", "127.8.9.10:1", "[::1]:1", "localhost:1"])
def test_plaintext_on_loopback_is_allowed(target: str) -> None:
    HubClient(HubConnection(target=target, credential=CREDENTIAL, insecure=True)).close()


@pytest.mark.parametrize("target", ["127.0.0.1", "127.0.0.1:0", "::1:443", ":443", "h:http"])
def test_malformed_targets_are_config_errors(target: str) -> None:
    with pytest.raises(HubConfigError, match="HOST:PORT"):
        HubClient(HubConnection(target=target, credential=CREDENTIAL, insecure=True))


def test_tls_configuration_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(HubConfigError, match="CA certificate"):
        HubClient(HubConnection(target="127.0.0.1:1", credential=CREDENTIAL, ca_cert=missing))
    with pytest.raises(HubConfigError, match="both"):
        HubClient(HubConnection(target="127.0.0.1:1", credential=CREDENTIAL, client_cert=missing))
    with pytest.raises(HubConfigError, match="credential"):
        HubClient(HubConnection(target="127.0.0.1:1", credential="has space", insecure=True))


def test_the_credential_is_never_in_a_repr() -> None:
    connection = HubConnection(target="127.0.0.1:1", credential=CREDENTIAL, insecure=True)
    assert CREDENTIAL not in repr(connection)
    with HubClient(connection) as client:
        assert CREDENTIAL not in repr(client)
