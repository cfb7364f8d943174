"""Property-based fuzzing of every sigshare RPC against one real hub (issue 6, "bad input").

One hub per module (SQLite temp file, loopback, insecure) with a baseline: members m1 and m2
have e-mail filters, m1 has prompt clusters, and both members' answers to a ``Resolve`` of their
own e-mail tokens are recorded. Every case then sends something hostile — undecodable request
bytes, valid messages with hostile field values, malformed Submit streams (no header, data
first, two headers, truncated, oversized, corrupted SGBF/SGMH/ClusterSketchSet payloads),
malformed Resolve streams (no header, a second header, ragged token bytes, more or fewer bytes
than announced, empty chunks, token counts of 0, the capacity and beyond), arbitrary tokens,
Resolve streams cancelled while sending or while answering — and checks:

* the hub answers within :data:`fuzzing.RPC_TIMEOUT` (no hang);
* the status is OK or one of the refusals (INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND,
  PERMISSION_DENIED, UNAUTHENTICATED; ALREADY_EXISTS for a taken principal name) with a
  message — never INTERNAL or UNKNOWN;
* a refused request changes nothing (submissions, shared indicators, confirmations, campaigns,
  clusters, principals, parameters, non-read audit entries, query ledgers and ``tokens_asked``
  row for row); an accepted one changes no query ledger or ``tokens_asked`` but its caller's;
* an accepted Resolve answers exactly: ANSWERED where the caller's own filter holds the token
  (NOT_HELD elsewhere) with the number of other members whose filter holds it;
* after each fuzz test, m1 and m2 still get their baseline answers byte for byte, every query
  ledger holds only tokens its member's own filter holds, and the audit chain verifies.

Findings F1-F4 (an undecodable body answered INTERNAL before authentication; page tokens with
non-ASCII digits or beyond 64 bits answered INTERNAL; refusals echoing unbounded values past
gRPC's 8 KiB trailer limit) were fixed; ``test_finding_f*`` keep them fixed, and the property
tests tolerate no INTERNAL at all.

CI runs the "ci" profile (a few hundred cases per test); the long run takes
``SIGSHARE_FUZZ_EXAMPLES=N`` examples per test (see ``fuzzing.py``), e.g. ``scripts/security-long``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from sigshare.hub.rpc.servicers import MAX_UPLOAD_BYTES
from sigshare.v1 import hub_pb2 as pb
from tests.security import fuzzing
from tests.security.fuzzing import REFUSALS, FuzzHub, counted, fuzz_settings
from tests.support.hub import ADMIN, COORDINATOR, EMAIL, EMAIL_CAPACITY, KEY_ID, MEMBERS, PROMPT

MODULE = "test_fuzz_rpc"
OK = grpc.StatusCode.OK
ALLOWED = REFUSALS | {OK}
ALLOWED_ADMIN = ALLOWED | {grpc.StatusCode.ALREADY_EXISTS}
DESERIALIZE_FAILURE = "Exception deserializing request!"
PROTECTED = frozenset({ADMIN, COORDINATOR, *MEMBERS})
MEMBER_RPC = "/sigshare.v1.MemberService/"
REVIEW_RPC = "/sigshare.v1.ReviewService/"
ADMIN_RPC = "/sigshare.v1.AdminService/"
KEY_RPC = "/sigshare.v1.KeyService/"
CUSTODIAN_RPC = "/sigshare.v1.CustodianService/"
SUBMIT = MEMBER_RPC + "Submit"
RESOLVE = MEMBER_RPC + "Resolve"
STREAMS = frozenset({SUBMIT, RESOLVE})
"""Client-streaming methods: fuzzed as whole streams, not as single messages."""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzHub]:
    with fuzzing.fuzz_hub(tmp_path_factory.mktemp("fuzz-hub")) as running:
        FUZZED[:] = running.record_ids
        yield running
    fuzzing.write_cases(MODULE)


def finish(hub: FuzzHub) -> None:
    """After a fuzz test: the baseline answers are unchanged, ledgers hold only own tokens, the
    audit chain holds."""
    hub.check_baseline()
    verified = pb.VerifyAuditResponse()
    outcome = hub.call(ADMIN_RPC + "VerifyAudit", pb.VerifyAuditRequest())
    assert outcome.code is OK, outcome
    verified.ParseFromString(outcome.responses[0])
    assert verified.intact, verified.reason


def parses(method: str, body: bytes) -> bool:
    """Whether ``body`` decodes as ``method``'s request message (what the server will try)."""
    try:
        fuzzing.METHODS[method][1]().ParseFromString(body)
    except DecodeError:
        return False
    return True


# ---------------------------------------------------------------------------------- strategies

callers = st.sampled_from(["", "", "", "", None, "m2", COORDINATOR, ADMIN]) | (
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80).map(
        lambda t: f"Bearer {t}"
    )
)
"""The method's own role (``""``) most of the time; else anonymous, other roles, junk tokens."""

U64 = st.integers(0, 2**64 - 1) | st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1])
U32 = st.integers(0, 2**32 - 1) | st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1])
DOUBLES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 1.0, 1e-300])
huge_text = st.builds(
    lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(256, 70_000)
)
hostile_text = st.one_of(
    st.just(""),
    st.text(max_size=40),
    huge_text,
    st.sampled_from(
        [
            "email",
            "prompt",
            "EMAIL",
            "email ",
            "minhash:prompt",
            "phone",
            "epoch-1",
            "epoch-2",
            "../../etc/passwd",
            "'; DROP TABLE submissions; --",
            "\x00",
            "é" * 33,
        ]
    ),
)
kinds = st.sampled_from(["email", "prompt", "phone", "nope", ""]) | hostile_text
key_ids = st.sampled_from([KEY_ID, "", "epoch-2"]) | hostile_text


def cursor_token(fields: object, version: str = "c1.") -> str:
    """A page token spelled as the hub spells its cursors — ``version`` and the unpadded
    base64url of compact JSON — around any contents (JSON text is taken as it is)."""
    text = fields if isinstance(fields, str) else json.dumps(fields, separators=(",", ":"))
    return version + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


LISTED = ("indicators", "campaigns")
cursor_fields = st.tuples(
    st.sampled_from(LISTED) | st.sampled_from(["audit", "Indicators", ""]) | st.text(max_size=8),
    st.sampled_from(["created", "reporters", "last_seen", "volume", "id"]) | st.text(max_size=8),
    st.sampled_from(["asc", "desc", "up"]),
    st.sampled_from(["next", "prev", "back"]),
    st.none()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, 2**63 - 1, 2**63]),
)
"""Cursor contents: the listings' own (creation order, oldest first, is what the Review service
lists, so many are accepted) and others' sort keys, directions, types and 64-bit overflows."""
page_tokens = st.one_of(
    hostile_text,
    st.sampled_from(["p1.", "p1.0", "p1.1", "p1.-1", "p1.1e3", "p2.5", "c1.", "c1.=", "c2.AA"]),
    st.integers(0, 2**63 - 1).map(lambda n: f"p1.{n}"),  # digits after another prefix
    cursor_fields.map(list).map(cursor_token),
    st.tuples(cursor_fields.map(list), st.sampled_from(["c0.", "c2.", "C1.", "c1"])).map(
        lambda args: cursor_token(*args)
    ),
    st.integers(0, 2**80).map(
        lambda n: cursor_token(["indicators", "created", "asc", "next", n, n])
    ),
    st.text(alphabet="0123456789²٣", min_size=1, max_size=30).map(
        lambda d: cursor_token(f'["campaigns","created","asc","next",{d},{d}]')
    ),
    st.binary(max_size=64).map(lambda b: "c1." + base64.urlsafe_b64encode(b).decode().rstrip("=")),
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/", max_size=600
    ).map(lambda body: "c1." + body),
)
"""Random junk, other and older versions, cursors of other listings and orders, numbers beyond
64 bits (finding F3), non-ASCII digits (finding F2), broken base64 and over-long tokens."""
pages = st.builds(pb.PageRequest, page_size=U32, page_token=page_tokens)
review_statuses = st.sampled_from(["new", "triaged", "confirmed", "dismissed", ""]) | hostile_text
sorts = st.sampled_from(["created", "reporters", "last_seen", "status", "kind", "members"])
record_filters = st.builds(
    pb.RecordFilter,
    status=review_statuses,
    category=st.sampled_from(["", "cat-m1"]) | hostile_text,
    assignee=st.sampled_from(["", COORDINATOR, ADMIN, "m1"]) | hostile_text,
    sort=sorts | hostile_text,
    descending=st.booleans(),
)
"""The review listings' filters and orders (with the CLI's page tokens, cursors must fit)."""
FUZZED: list[str] = []
"""The fuzz hub's shared indicators, once it is up (their ids are random per run)."""
record_ids = st.one_of(
    st.deferred(lambda: st.sampled_from(FUZZED)),
    st.sampled_from(["0" * 32, "", "f" * 31, "F" * 32]),
    hostile_text,
)
"""Ids of real records most of the time, else ids of nothing and hostile text."""
notes = st.sampled_from(["", "seen twice", "line\nbreak", "\x07", "x" * 4001]) | hostile_text


def stamp(seconds: int, nanos: int) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


stamps = st.none() | st.builds(
    stamp,
    st.integers(-(2**63), 2**63 - 1) | st.integers(0, 2_000_000_000),
    st.integers(-(2**31), 2**31 - 1) | st.just(0),
)
tokens = st.binary(max_size=40) | st.binary(min_size=16, max_size=16)


def confirmed(token: bytes, category: str, first: Any, last: Any) -> pb.ConfirmedToken:
    item = pb.ConfirmedToken(token=token, category=category)
    if first is not None:
        item.first_seen.CopyFrom(first)
    if last is not None:
        item.last_seen.CopyFrom(last)
    return item


confirmed_tokens = st.builds(confirmed, tokens, hostile_text, stamps, stamps)
unprotected_names = hostile_text.filter(lambda n: n not in PROTECTED)
optional_bool = st.none() | st.booleans()


def bloom_params(  # noqa: PLR0917 (st.builds passes positionally)
    kind: str,
    key_id: str,
    cap: int,
    fpr: float,
    members: int,
    q: int,
    r: int,
    rev: Any,
    interval: Any,
) -> Any:
    message = pb.BloomParameters(
        kind=kind,
        key_id=key_id,
        capacity=cap,
        forum_fpr=fpr,
        max_members=members,
        quorum=q,
        retention_days=r,
    )
    if rev is not None:
        message.reveal_members = rev
    if interval is not None:
        message.replace_interval_seconds = interval
    return message


def minhash_params(  # noqa: PLR0917 (st.builds passes positionally)
    family: str, key_id: str, perm: int, unit: str, size: int, thr: float, q: int, rev: Any
) -> Any:
    message = pb.MinHashParameters(
        family=family,
        key_id=key_id,
        num_perm=perm,
        shingle_unit=unit,
        shingle_size=size,
        threshold=thr,
        quorum=q,
    )
    if rev is not None:
        message.reveal_members = rev
    return message


# Never the baseline's own kind and family: changing them is a legitimate admin act that would
# (rightly) change the baseline answers.
param_kinds = (
    st.sampled_from(["phone", "ip", "domain", "username", "wallet"]) | hostile_text
).filter(lambda k: k.strip().lower() != "email")
param_families = hostile_text.filter(lambda f: f.strip().lower() != "prompt")
small_u32 = st.integers(0, 2000) | U32
bloom_messages = st.builds(
    bloom_params,
    param_kinds,
    key_ids,
    U64 | st.integers(1, 100_000),
    DOUBLES,
    st.sampled_from([0, 1, 2, 32, 250, 251]) | U32,
    small_u32,
    small_u32,
    optional_bool,
    st.none() | st.sampled_from([0, 3600]) | U32,
)
minhash_messages = st.builds(
    minhash_params,
    param_families,
    key_ids,
    small_u32,
    st.sampled_from(["word", "char", "", "byte"]) | hostile_text,
    small_u32,
    DOUBLES,
    small_u32,
    optional_bool,
)

requests: dict[str, st.SearchStrategy[Any]] = {
    MEMBER_RPC + "GetParameters": st.just(pb.GetParametersRequest()),
    # A header alone: hostile values, nothing after (stream shapes have a test of their own).
    RESOLVE: st.builds(
        lambda k, i, n: pb.ResolveRequest(header=pb.ResolveHeader(kind=k, key_id=i, token_count=n)),
        kinds,
        key_ids,
        st.sampled_from([0, 1, EMAIL_CAPACITY, EMAIL_CAPACITY + 1]) | U64,
    ),
    MEMBER_RPC + "Confirm": st.builds(
        lambda k, i, t: pb.ConfirmRequest(kind=k, key_id=i, tokens=t),
        kinds,
        key_ids,
        st.lists(confirmed_tokens, max_size=8),
    ),
    MEMBER_RPC + "ListMatches": st.builds(pb.ListMatchesRequest, kind=kinds),
    MEMBER_RPC + "GetStatus": st.just(pb.GetStatusRequest()),
    REVIEW_RPC + "GetOverlapMatrix": st.builds(pb.OverlapRequest, kind=kinds),
    REVIEW_RPC + "GetOverlapMatrices": st.builds(pb.OverlapRequest, kind=kinds),
    REVIEW_RPC + "ListSharedIndicators": st.builds(
        pb.ListSharedIndicatorsRequest, kind=kinds, page=pages, filter=st.none() | record_filters
    ),
    REVIEW_RPC + "ListCampaigns": st.builds(
        pb.ListCampaignsRequest, family=kinds, page=pages, filter=st.none() | record_filters
    ),
    REVIEW_RPC + "ListSubmissions": st.builds(
        pb.ListSubmissionsRequest, kind=kinds, flag_factor=st.none() | DOUBLES
    ),
    REVIEW_RPC + "SetReviewStatus": st.builds(
        pb.SetReviewStatusRequest,
        record_id=record_ids,
        status=review_statuses,
        note=notes,
        member_note=notes,
    ),
    REVIEW_RPC + "AssignReview": st.builds(
        pb.AssignReviewRequest,
        record_id=record_ids,
        assignee=st.sampled_from(["", COORDINATOR, ADMIN, "m1", "nobody"]) | hostile_text,
        note=notes,
    ),
    REVIEW_RPC + "AddReviewNote": st.builds(
        pb.AddReviewNoteRequest, record_id=record_ids, note=notes, for_members=st.booleans()
    ),
    REVIEW_RPC + "GetReviewHistory": st.builds(pb.GetReviewHistoryRequest, record_id=record_ids),
    ADMIN_RPC + "AddPrincipal": st.builds(
        pb.AddPrincipalRequest,
        name=hostile_text,
        role=st.integers(-(2**31), 2**31 - 1) | st.integers(0, 4),
    ),
    ADMIN_RPC + "ListPrincipals": st.just(pb.ListPrincipalsRequest()),
    ADMIN_RPC + "RevokePrincipal": st.builds(pb.RevokePrincipalRequest, name=unprotected_names),
    ADMIN_RPC + "RotatePrincipal": st.builds(pb.RotatePrincipalRequest, name=unprotected_names),
    ADMIN_RPC + "SetParameters": st.builds(
        lambda b, h: pb.SetParametersRequest(bloom=b, minhash=h),
        st.lists(bloom_messages, max_size=3),
        st.lists(minhash_messages, max_size=3),
    ),
    ADMIN_RPC + "VerifyAudit": st.just(pb.VerifyAuditRequest()),
    KEY_RPC + "RegisterKeys": st.builds(
        pb.RegisterKeysRequest,
        sealing_public=st.binary(max_size=40) | st.binary(min_size=1216, max_size=1216),
        signing_public=st.binary(max_size=64) | st.binary(min_size=32, max_size=32),
        proof=st.binary(max_size=80) | st.binary(min_size=64, max_size=64),
    ),
    KEY_RPC + "GetKeyStatus": st.just(pb.GetKeyStatusRequest()),
    KEY_RPC + "FetchEnvelopes": st.just(pb.FetchEnvelopesRequest()),
    KEY_RPC + "ListCustodians": st.just(pb.ListCustodiansRequest()),
    CUSTODIAN_RPC + "ListRecipients": st.just(pb.ListRecipientsRequest()),
    CUSTODIAN_RPC + "UploadEnvelopes": st.builds(
        lambda key_id, at, envelopes: pb.UploadEnvelopesRequest(
            key_id=key_id, activate_at=at, envelopes=envelopes
        ),
        key_ids,
        stamps,
        st.lists(
            st.builds(
                pb.Envelope,
                key_id=key_ids,
                recipient=st.sampled_from(["m1", "m2", "nobody", ""]) | hostile_text,
                custodian=hostile_text,
                recipient_fingerprint=hostile_text,
                envelope=st.binary(max_size=200) | st.binary(min_size=1403, max_size=1403),
            ),
            max_size=3,
        ),
    ),
}
assert set(requests) | STREAMS == set(fuzzing.METHODS), "a new RPC needs a request strategy"


# ---------------------------------------------------------------------------------- 1. raw bytes


@fuzz_settings(300)
@given(
    method=st.sampled_from(sorted(fuzzing.METHODS)),
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=3),
    who=callers,
)
@counted(f"{MODULE}::test_random_bytes_as_any_request")
def _random_bytes(hub: FuzzHub, method: str, bodies: list[bytes], who: str | None) -> None:
    caller = hub.role_for(method) if who == "" else who
    before = hub.snapshot()
    outcome = hub.call_raw(method, bodies, who=caller)
    sent = bodies if fuzzing.METHODS[method][0] == "stream" else bodies[:1]
    if not all(parses(method, b) for b in sent) and outcome.code is not OK:
        # An undecodable body is refused after authentication (F1, fixed).
        assert outcome.code in REFUSALS, outcome
        assert outcome.details != DESERIALIZE_FAILURE
    allowed = ALLOWED_ADMIN if method.startswith(ADMIN_RPC) else ALLOWED
    hub.check_refusal(outcome, before, allowed=allowed)


def test_random_bytes_as_any_request(hub: FuzzHub) -> None:
    _random_bytes(hub)
    finish(hub)


# ------------------------------------------------------------------------------ 2. hostile values


@fuzz_settings(400)
@given(data=st.data(), method=st.sampled_from(sorted(requests)), who=callers)
@counted(f"{MODULE}::test_hostile_field_values")
def _hostile(hub: FuzzHub, data: st.DataObject, method: str, who: str | None) -> None:
    message = data.draw(requests[method], label="request")
    before = hub.snapshot()
    outcome = hub.call(method, message, who=who)
    allowed = ALLOWED_ADMIN if method.startswith(ADMIN_RPC) else ALLOWED
    hub.check_refusal(outcome, before, allowed=allowed)
    if outcome.code is OK and method == RESOLVE:
        # Only a well-formed empty question is answered: zero tokens, by a member with a filter.
        assert message.header.token_count == 0
        assert outcome.caller in fuzzing.SUBMITTERS
        answers = fuzzing.decode_answers(outcome.responses)
        assert (answers.status, answers.others) == (b"", b"")
        assert answers.summary.kind == message.header.kind == EMAIL


def test_hostile_field_values(hub: FuzzHub) -> None:
    _hostile(hub)
    finish(hub)


@fuzz_settings(10, long_cap=100)
@given(
    count=st.integers(1_000, 60_000),
    token=tokens,
    kind=st.sampled_from(["email", "nope", ""]),
)
@counted(f"{MODULE}::test_oversized_token_lists")
def _oversized_tokens(hub: FuzzHub, count: int, token: bytes, kind: str) -> None:
    request = pb.ConfirmRequest(kind=kind, key_id=KEY_ID)
    request.tokens.extend(pb.ConfirmedToken(token=token, category="x") for _ in range(count))
    before = hub.snapshot()
    outcome = hub.call(MEMBER_RPC + "Confirm", request, timeout=30.0)
    hub.check_refusal(outcome, before, allowed=ALLOWED | {grpc.StatusCode.RESOURCE_EXHAUSTED})


def test_oversized_token_lists(hub: FuzzHub) -> None:
    _oversized_tokens(hub)
    finish(hub)


# ------------------------------------------------------------------------------ 3. Submit streams


def mutate(payload: bytes, how: str, data: st.DataObject) -> bytes:
    if how == "same" or not payload:
        return payload
    if how == "flip":
        flips = data.draw(st.lists(st.integers(0, len(payload) * 8 - 1), min_size=1, max_size=4))
        out = bytearray(payload)
        for bit in flips:
            out[bit >> 3] ^= 1 << (bit & 7)
        return bytes(out)
    if how == "truncate":
        return payload[: data.draw(st.integers(0, len(payload) - 1))]
    if how == "extend":
        return payload + data.draw(st.binary(min_size=1, max_size=64))
    if how == "splice":
        at = data.draw(st.integers(0, len(payload)))
        return payload[:at] + data.draw(st.binary(max_size=32)) + payload[at + 8 :]
    return data.draw(st.binary(max_size=2048))  # "random"


def chunked(payload: bytes, size: int) -> list[bytes]:
    return [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]


@fuzz_settings(300)
@given(data=st.data())
@counted(f"{MODULE}::test_malformed_submit_streams")
def _submit(hub: FuzzHub, data: st.DataObject) -> None:
    bloom = data.draw(st.booleans(), label="bloom")
    base = hub.bloom_payload if bloom else hub.cluster_payload
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice", "random", "same"]))
    payload = mutate(base, how, data)
    sha = hashlib.sha256(payload).digest()
    header = pb.SubmitHeader(
        format=pb.SketchFormat.ValueType(
            data.draw(
                st.sampled_from(
                    [pb.SKETCH_FORMAT_BLOOM_V1 if bloom else pb.SKETCH_FORMAT_CLUSTERS_V1]
                )
                | st.integers(0, 2**31 - 1)
            )
        ),
        kind=data.draw(st.sampled_from([EMAIL if bloom else PROMPT]) | kinds),
        key_id=data.draw(st.sampled_from([KEY_ID]) | key_ids),
        params_digest=data.draw(
            st.sampled_from([hub.email_digest if bloom else hub.prompt_digest])
            | st.binary(max_size=40)
        ),
        declared_count=data.draw(
            st.sampled_from([len(hub.forum.sets["m1"]) if bloom else hub.cluster_count]) | U64
        ),
        content_length=data.draw(
            st.sampled_from([len(payload), len(payload) + 1, max(len(payload) - 1, 0)]) | U64
        ),
        content_sha256=data.draw(st.sampled_from([sha]) | st.binary(max_size=40)),
    )
    shape = data.draw(
        st.sampled_from(
            [
                "normal",
                "no-header",
                "data-first",
                "two-headers",
                "truncated",
                "extra",
                "header-only",
                "empty",
            ]
        )
    )
    head = pb.SubmitChunk(header=header)
    parts = [pb.SubmitChunk(data=c) for c in chunked(payload, data.draw(st.integers(1, 70_000)))]
    stream: list[pb.SubmitChunk]
    if shape == "normal":
        stream = [head, *parts]
    elif shape == "no-header":
        stream = parts
    elif shape == "data-first":
        stream = [parts[0], head, *parts[1:]]
    elif shape == "two-headers":
        at = data.draw(st.integers(0, len(parts)))
        stream = [head, *parts[:at], head, *parts[at:]]
    elif shape == "truncated":
        stream = [head, *parts[: data.draw(st.integers(0, max(len(parts) - 1, 0)))]]
    elif shape == "extra":
        stream = [
            head,
            *parts,
            pb.SubmitChunk(data=data.draw(st.binary(min_size=1, max_size=4096))),
        ]
    elif shape == "header-only":
        stream = [head]
    else:
        stream = []
    # Submitting as m1 (whose baseline is the reference): a mutation the hub accepts can only
    # re-encode m1's own bits (SGBF's CRC-32 covers them), so its answers stay the same.
    before = hub.snapshot()
    outcome = hub.call(SUBMIT, *stream, who="m1")
    hub.check_refusal(outcome, before, allowed=ALLOWED)
    if outcome.code is OK:
        assert shape == "normal", "accepted a malformed stream"
        assert header.content_sha256 == sha, "accepted a stream whose SHA-256 does not match"


def test_malformed_submit_streams(hub: FuzzHub) -> None:
    _submit(hub)
    finish(hub)


@pytest.mark.parametrize("content_length", [2**64 - 1, 2**63, MAX_UPLOAD_BYTES + 1, 10**9])
def test_content_length_beyond_limits(hub: FuzzHub, content_length: int) -> None:
    header = pb.SubmitHeader(
        format=pb.SKETCH_FORMAT_BLOOM_V1,
        kind=EMAIL,
        key_id=KEY_ID,
        params_digest=hub.email_digest,
        declared_count=len(hub.forum.sets["m1"]),
        content_length=content_length,
        content_sha256=hashlib.sha256(hub.bloom_payload).digest(),
    )
    before = hub.snapshot()
    outcome = hub.call(
        SUBMIT, pb.SubmitChunk(header=header), pb.SubmitChunk(data=hub.bloom_payload), who="m1"
    )
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT, outcome
    hub.check_refusal(outcome, before, allowed=REFUSALS)


def test_more_bytes_than_announced_in_large_chunks(hub: FuzzHub) -> None:
    """Bytes far beyond the announced length, in chunks up to the message limit and beyond."""
    payload = hub.bloom_payload
    header = pb.SubmitHeader(
        format=pb.SKETCH_FORMAT_BLOOM_V1,
        kind=EMAIL,
        key_id=KEY_ID,
        params_digest=hub.email_digest,
        declared_count=len(hub.forum.sets["m1"]),
        content_length=len(payload),
        content_sha256=hashlib.sha256(payload).digest(),
    )
    for size in (1 << 20, 4 << 20, 5 << 20):
        before = hub.snapshot()
        outcome = hub.call(
            SUBMIT,
            pb.SubmitChunk(header=header),
            *[pb.SubmitChunk(data=b"\0" * size) for _ in range(3)],
            who="m1",
            timeout=30.0,
        )
        # Chunks above the 4 MiB message limit are refused by gRPC itself.
        hub.check_refusal(outcome, before, allowed=REFUSALS | {grpc.StatusCode.RESOURCE_EXHAUSTED})
    finish(hub)


# ------------------------------------------------------------------------------ 4. Resolve streams

RESOLVE_SHAPES = (
    "normal",
    "empty-chunks",
    "no-header",
    "second-header",
    "header-last",
    "more-bytes",
    "fewer-bytes",
    "header-only",
    "empty",
)
VALID_SHAPES = frozenset({"normal", "empty-chunks"})
MAX_CHUNKS = 512
"""Chunks per drawn stream at most: a bulk of 20,000 tokens in 1-byte chunks would take longer
than the call's deadline to send (the client's cost, not the hub's)."""


@st.composite
def token_material(draw: st.DrawFn, hub: FuzzHub) -> bytes:
    """Tokens to ask about: m1's and m2's own (whole or cut), arbitrary 16-byte blocks, ragged
    bytes, repeats, and sometimes a bulk of pseudo-random tokens up to past the capacity."""
    own = {m: hub.own_tokens(m) for m in fuzzing.SUBMITTERS}
    pick = st.sampled_from(fuzzing.SUBMITTERS).flatmap(
        lambda m: st.integers(0, len(own[m]) // 16 - 1).map(lambda i: own[m][16 * i : 16 * i + 16])
    )
    pieces = draw(
        st.lists(
            st.one_of(
                pick,
                pick,
                st.binary(min_size=16, max_size=16),
                st.sampled_from([own["m1"], own["m2"], bytes(16), b"\xff" * 16]),
                st.binary(max_size=40),  # usually ragged
            ),
            max_size=24,
        ),
        label="pieces",
    )
    material = b"".join(pieces)
    if draw(st.integers(0, 9), label="bulk?") == 0:
        count = draw(
            st.sampled_from([EMAIL_CAPACITY, EMAIL_CAPACITY + 1])
            | st.integers(1_000, EMAIL_CAPACITY + 10),
            label="bulk",
        )
        seed = draw(st.integers(0, 2**32 - 1), label="seed")
        material += np.random.default_rng(seed).bytes(16 * count)
    return material


def resolve_stream(  # noqa: PLR0911 (one return per shape)
    data: st.DataObject, header: pb.ResolveHeader, material: bytes, shape: str
) -> list[pb.ResolveRequest]:
    head = pb.ResolveRequest(header=header)
    size = data.draw(st.integers(1, 70_000) | st.sampled_from([16, 1 << 20]), label="chunk")
    size = max(size, len(material) // MAX_CHUNKS)
    parts = [pb.ResolveRequest(tokens=c) for c in chunked(material, size) if c]
    if shape == "empty-chunks":
        for _ in range(data.draw(st.integers(1, 4), label="empties")):
            parts.insert(data.draw(st.integers(0, len(parts))), pb.ResolveRequest(tokens=b""))
    if shape in ("normal", "empty-chunks"):
        return [head, *parts]
    if shape == "no-header":
        return parts or [pb.ResolveRequest(tokens=b"")]
    if shape == "second-header":
        at = data.draw(st.integers(0, len(parts)))
        return [head, *parts[:at], head, *parts[at:]]
    if shape == "header-last":
        return [*parts, head]
    if shape == "more-bytes":
        return [
            head,
            *parts,
            pb.ResolveRequest(tokens=data.draw(st.binary(min_size=1, max_size=64))),
        ]
    if shape == "fewer-bytes":
        keep = data.draw(st.integers(0, max(len(parts) - 1, 0)))
        cut = parts[:keep]
        if len(parts) == keep + 1 and len(material) > 1:  # or cut the last chunk short
            cut.append(pb.ResolveRequest(tokens=parts[keep].tokens[:-1]))
        return [head, *cut]
    if shape == "header-only":
        return [head]
    return []  # "empty"


def held_tokens(hub: FuzzHub, member: str, material: bytes) -> set[bytes]:
    """The distinct tokens of ``material`` that ``member``'s own filter holds."""
    if member not in fuzzing.SUBMITTERS or len(material) % 16:
        return set()
    array = np.frombuffer(material, dtype="<u8").reshape(-1, 2)
    held = hub.forum.bloom(member).contains_tokens(array)
    return {material[16 * i : 16 * i + 16] for i in np.flatnonzero(held).tolist()}


def check_resolve_effect(
    hub: FuzzHub, before: fuzzing.Snapshot, who: str, asked: set[bytes], *, settle: bool = False
) -> bool:
    """A Resolve by ``who`` about ``asked`` (its held tokens) left the state unchanged, or
    fully updated — never half: ``who``'s ledger holds exactly its old tokens and ``asked``,
    every asked token with one new time, the others with their old ones. Nothing else changed.
    ``settle``: judge the state once it has stopped changing (a cancelled stream may still be
    recorded after the client gave up). Returns whether the ledger was updated."""
    after = hub.settled_snapshot() if settle else hub.snapshot()
    assert after.queries_of_others(who) == before.queries_of_others(who)
    assert dataclasses.replace(after, ledgers=(), asked=()) == dataclasses.replace(
        before, ledgers=(), asked=()
    )
    old = fuzzing.ledger_times(before, who)
    new = fuzzing.ledger_times(after, who)
    if new == old:
        return False
    assert new.keys() == old.keys() | asked, "the ledger records other tokens than those asked"
    assert {new[t] for t in asked} == {max(new.values())}, "asked tokens with different times"
    assert all(new[t] == old[t] for t in new.keys() - asked), "an unasked token was touched"
    assert max(new.values()) >= max(old.values(), default=0)
    return True


@fuzz_settings(300, long_cap=4000)
@given(data=st.data())
@counted(f"{MODULE}::test_malformed_resolve_streams")
def _resolve(hub: FuzzHub, data: st.DataObject) -> None:
    who = data.draw(st.sampled_from(["m1", "m1", "m1", "m2", "m2", "m3", COORDINATOR]), label="who")
    material = data.draw(token_material(hub), label="tokens")
    exact = len(material) // 16
    header = pb.ResolveHeader(
        kind=data.draw(st.sampled_from([EMAIL] * 4) | kinds, label="kind"),
        key_id=data.draw(st.sampled_from([KEY_ID] * 4) | key_ids, label="key id"),
        token_count=data.draw(
            st.sampled_from([exact] * 6 + [exact + 1, max(exact - 1, 0), 0])
            | st.sampled_from([EMAIL_CAPACITY, EMAIL_CAPACITY + 1, 2**64 - 1])
            | U64,
            label="count",
        ),
    )
    shape = data.draw(st.sampled_from(RESOLVE_SHAPES), label="shape")
    stream = resolve_stream(data, header, material, shape)
    if [m.WhichOneof("part") for m in stream] == ["header"] and header.token_count == 0:
        shape, material = "normal", b""  # a header alone announcing no tokens: a whole question
    valid = (
        shape in VALID_SHAPES
        and who in fuzzing.SUBMITTERS
        and (header.kind, header.key_id) == (EMAIL, KEY_ID)
        and header.token_count * 16 == len(material)
        and header.token_count <= EMAIL_CAPACITY
    )
    before = hub.snapshot()
    outcome = hub.call(RESOLVE, *stream, who=who, timeout=30.0)
    hub.check_refusal(outcome, before, allowed=ALLOWED)
    if not valid:
        assert outcome.code is not OK, f"answered a malformed stream ({shape})"
        return
    assert outcome.code is OK, outcome
    answers = fuzzing.decode_answers(outcome.responses)
    status, others = hub.expected_answers(who, material)
    assert (answers.status, answers.others) == (status, others)
    summary = answers.summary
    assert (summary.kind, summary.key_id, summary.quorum) == (EMAIL, KEY_ID, 2)
    assert summary.answered == status.count(0)
    assert summary.not_held == status.count(1)
    assert summary.over_budget == 0
    assert summary.submission_tokens <= summary.submission_budget == len(hub.forum.sets[who])
    assert summary.day_tokens <= summary.day_budget == EMAIL_CAPACITY
    check_resolve_effect(hub, before, who, held_tokens(hub, who, material))


def test_malformed_resolve_streams(hub: FuzzHub) -> None:
    _resolve(hub)
    finish(hub)


def own_stream(hub: FuzzHub, member: str, extra: bytes, chunk: int) -> list[bytes]:
    material = hub.own_tokens(member) + extra
    header = pb.ResolveHeader(kind=EMAIL, key_id=KEY_ID, token_count=len(material) // 16)
    stream = [pb.ResolveRequest(header=header)]
    stream += [pb.ResolveRequest(tokens=c) for c in chunked(material, chunk)]
    return [m.SerializeToString() for m in stream]


@fuzz_settings(60, long_cap=2000)
@given(
    after=st.integers(1, 3),
    member=st.sampled_from(fuzzing.SUBMITTERS),
    extra=st.lists(st.binary(min_size=16, max_size=16), max_size=5).map(b"".join),
    chunk=st.sampled_from([16, 64, 1 << 20]),
)
@counted(f"{MODULE}::test_resolve_cancelled_while_answering")
def _cancelled_answering(hub: FuzzHub, after: int, member: str, extra: bytes, chunk: int) -> None:
    before = hub.settled_snapshot()
    outcome = hub.call_raw(
        RESOLVE, own_stream(hub, member, extra, chunk), who=member, cancel_after=after
    )
    assert outcome.code in (OK, grpc.StatusCode.CANCELLED), outcome
    # The hub commits before it sends the summary: a reader that leaves after it finds the
    # request recorded in full.
    material = hub.own_tokens(member) + extra
    check_resolve_effect(hub, before, member, held_tokens(hub, member, material), settle=True)


def test_resolve_cancelled_while_answering(hub: FuzzHub) -> None:
    _cancelled_answering(hub)
    finish(hub)


@fuzz_settings(30, long_cap=300)
@given(
    member=st.sampled_from(fuzzing.SUBMITTERS),
    sent=st.sampled_from(["header", "part", "all"]),
    extra=st.lists(st.binary(min_size=16, max_size=16), max_size=5).map(b"".join),
)
@counted(f"{MODULE}::test_resolve_cancelled_while_sending")
def _cancelled_sending(hub: FuzzHub, member: str, sent: str, extra: bytes) -> None:
    stream = own_stream(hub, member, extra, 16)
    if sent == "header":
        stream = stream[:1]
    elif sent == "part":
        stream = stream[: len(stream) // 2]
    before = hub.settled_snapshot()
    outcome = hub.cancel_while_sending(RESOLVE, stream, who=member, after=0.1)
    assert outcome.code is grpc.StatusCode.CANCELLED, outcome
    material = hub.own_tokens(member) + extra
    updated = check_resolve_effect(
        hub, before, member, held_tokens(hub, member, material), settle=True
    )
    # Part of a question is never answered; a whole one left open may be (gRPC can end the
    # hub's read of a cancelled stream as if the client had closed it).
    assert sent == "all" or not updated, "a request cancelled part-way was recorded"


def test_resolve_cancelled_while_sending(hub: FuzzHub) -> None:
    _cancelled_sending(hub)
    finish(hub)


# ---------------------------------------------------------------------------------- 5. findings


@pytest.mark.parametrize("who", ["m1", None])
def test_finding_f1_undecodable_request_is_refused_after_authentication(
    hub: FuzzHub, who: str | None
) -> None:
    outcome = hub.call_raw(MEMBER_RPC + "GetStatus", [b"\xff\xff\xff"], who=who)
    expected = grpc.StatusCode.INVALID_ARGUMENT if who else grpc.StatusCode.UNAUTHENTICATED
    assert outcome.code is expected, outcome


@pytest.mark.parametrize("method", ["ListSharedIndicators", "ListCampaigns"])
def test_finding_f2_unicode_digit_page_token_is_invalid(hub: FuzzHub, method: str) -> None:
    request: Any = (
        pb.ListSharedIndicatorsRequest
        if method == "ListSharedIndicators"
        else pb.ListCampaignsRequest
    )(page=pb.PageRequest(page_token=cursor_token('["indicators","created","asc","next",4²,4²]')))
    outcome = hub.call(REVIEW_RPC + method, request)
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT, outcome


@pytest.mark.parametrize("method", ["ListSharedIndicators", "ListCampaigns"])
def test_finding_f3_huge_page_token_is_invalid(hub: FuzzHub, method: str) -> None:
    request: Any = (
        pb.ListSharedIndicatorsRequest
        if method == "ListSharedIndicators"
        else pb.ListCampaignsRequest
    )(
        page=pb.PageRequest(
            page_token=cursor_token(["indicators", "created", "asc", "next", 1, 2**63])
        )
    )
    outcome = hub.call(REVIEW_RPC + method, request)
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT, outcome


def test_finding_f4_refusals_are_bounded(hub: FuzzHub) -> None:
    header = pb.SubmitHeader(
        format=pb.SKETCH_FORMAT_BLOOM_V1,
        kind="x" * 20_000,
        key_id=KEY_ID,
        params_digest=hub.email_digest,
        declared_count=1,
        content_length=1,
        content_sha256=bytes(32),
    )
    outcome = hub.call(SUBMIT, pb.SubmitChunk(header=header), who="m1")
    assert outcome.code in REFUSALS, outcome


def test_finding_f4_non_ascii_echoes_are_bounded_by_their_encoded_size(hub: FuzzHub) -> None:
    # Percent-encoded in the trailer, each emoji costs 12 bytes: a cut by characters is not enough.
    request = pb.AddPrincipalRequest(name="\U0001f60d" * 7618, role=pb.ROLE_MEMBER)
    outcome = hub.call(ADMIN_RPC + "AddPrincipal", request, who=ADMIN)
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.details.endswith("…")


def test_hub_still_serves_the_baseline(hub: FuzzHub) -> None:
    finish(hub)
