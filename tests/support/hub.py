"""A real hub for tests: provisioning, a started gRPC server on loopback, member SDK clients and
raw stubs, readers of what the hub recorded (submissions, query ledgers, audited reads,
campaigns), and deterministic forum data with exact answers computed from plain sets.

Nothing here is a fixture, so any test module can combine it with the database fixtures of
``tests/hub/conftest.py``. Every piece of data is derived from fixed seeds: the forum secret, the
e-mail sets and the prompt templates are the same on every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import string
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from itertools import combinations
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2_grpc
from sqlalchemy import Engine

from sigshare.client.hub_client import HubClient, HubConnection, HubServiceClient, RetryPolicy
from sigshare.client.hub_types import ResolveResult, SubmitResult, TokenStatus
from sigshare.hub.domain import KindParameters, MinHashParameters, Principal, Role
from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.review_client import ReviewClient
from sigshare.hub.rpc.server import BoundServer, parse_listen
from sigshare.hub.services import parameters, principals
from sigshare.hub.services.refusals import RefusalPolicy
from sigshare.hub.services.submissions import UploadHeader
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.ledgers import QueryLedgerRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.sketch.bloom import BloomParams, KeyedBloomFilter
from sigshare.sketch.cluster import ClusterInfo, cluster_prompts, new_cluster_id
from sigshare.sketch.codec import SignatureSet, SketchFormat, encode_bloom
from sigshare.sketch.keys import ForumSecret, KeyPurpose
from sigshare.sketch.minhash import MinHashParams, SaltedMinHasher
from sigshare.sketch.prf import KeyedPRF, tokens_to_bytes
from sigshare.sketch.wire import encode_cluster_set
from sigshare.v1 import hub_pb2 as pb
from sigshare.v1 import hub_pb2_grpc
from tests.support.oracles import poisson_allowance

KEY_ID = "epoch-1"
EMAIL = "email"
PROMPT = "prompt"
EMAIL_CAPACITY = 20_000
EMAIL_FPR = 1e-3
"""The forum-level false-shared rate published for ``email``."""
MAX_MEMBERS = 32
PROMPT_THRESHOLD = 0.5
ADMIN = "admin"
COORDINATOR = "coord"
MEMBERS = ("m1", "m2", "m3", "m4")
SETUP_ACTOR = "test-setup"
NO_RETRY = RetryPolicy(attempts=1)
"""Tests see every refusal as it happens; the SDK's retries are tested elsewhere."""
RPC_TIMEOUT = 30.0


def forum_secret(seed: str = "sigshare integration tests") -> ForumSecret:
    """The forum secret of :data:`KEY_ID`, fixed so that every run hashes alike."""
    return ForumSecret(key_id=KEY_ID, secret=hashlib.sha256(seed.encode()).digest())


def email_prf(secret: ForumSecret) -> KeyedPRF:
    return KeyedPRF(secret.derive(KeyPurpose.BLOOM_TOKEN, EMAIL))


def email_params() -> BloomParams:
    """What the hub derives for the parameters :func:`provision` publishes."""
    return BloomParams.for_forum(EMAIL, KEY_ID, EMAIL_CAPACITY, EMAIL_FPR, MAX_MEMBERS)


# ---------------------------------------------------------------------------------- the hub


def provision(
    engine: Engine,
    *,
    members: Sequence[str] = MEMBERS,
    now: datetime | None = None,
) -> dict[str, str]:
    """Register an admin, a coordinator and ``members``; publish ``email`` and ``prompt``.

    ``email`` may be replaced at any time (replace interval 0): tests of supersession send one
    filter after another; the interval has tests of its own. Returns every principal's bearer
    credential by name.
    """
    moment = now or datetime.now(UTC)
    roles = [(ADMIN, Role.ADMIN), (COORDINATOR, Role.COORDINATOR)]
    roles += [(name, Role.MEMBER) for name in members]
    credentials: dict[str, str] = {}
    with session_scope(engine) as session:
        for name, role in roles:
            _, credential = principals.add_principal(
                session, actor=SETUP_ACTOR, name=name, role=role, now=moment
            )
            credentials[name] = credential.token
        parameters.set_kind_parameters(
            session,
            actor=SETUP_ACTOR,
            kind=EMAIL,
            key_id=KEY_ID,
            capacity=EMAIL_CAPACITY,
            forum_fpr=EMAIL_FPR,
            max_members=MAX_MEMBERS,
            replace_interval_seconds=0,
            now=moment,
        )
        parameters.set_minhash_parameters(
            session,
            actor=SETUP_ACTOR,
            family=PROMPT,
            key_id=KEY_ID,
            threshold=PROMPT_THRESHOLD,
            now=moment,
        )
    return credentials


def set_email_policy(
    engine: Engine,
    *,
    quorum: int | None = None,
    retention_days: int | None = None,
    reveal_members: bool | None = None,
) -> KindParameters:
    """Change the forum policy of ``email`` (the Bloom parameters stay as published)."""
    with session_scope(engine) as session:
        return parameters.set_kind_parameters(
            session,
            actor=SETUP_ACTOR,
            kind=EMAIL,
            key_id=KEY_ID,
            capacity=EMAIL_CAPACITY,
            forum_fpr=EMAIL_FPR,
            quorum=quorum,
            retention_days=retention_days,
            reveal_members=reveal_members,
            now=datetime.now(UTC),
        )


def set_prompt_policy(engine: Engine, *, reveal_members: bool) -> MinHashParameters:
    with session_scope(engine) as session:
        return parameters.set_minhash_parameters(
            session,
            actor=SETUP_ACTOR,
            family=PROMPT,
            key_id=KEY_ID,
            threshold=PROMPT_THRESHOLD,
            reveal_members=reveal_members,
            now=datetime.now(UTC),
        )


def principal_named(engine: Engine, name: str) -> Principal:
    with session_scope(engine) as session:
        found = PrincipalRepository(session).get_by_name(name)
    assert found is not None, name
    return found


@dataclass
class RunningHub:
    """A started hub server over ``engine``, with the credentials of its principals."""

    engine: Engine
    server: BoundServer
    credentials: dict[str, str]
    channel: grpc.Channel
    _clients: list[HubServiceClient] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def client(self, name: str) -> HubClient:
        """The member SDK, authenticated as ``name``, without retries."""
        client = HubClient(
            HubConnection(target=self.target, credential=self.credentials[name], insecure=True),
            retry=NO_RETRY,
        )
        self._clients.append(client)
        return client

    def review_client(self, name: str) -> ReviewClient:
        """The coordinators' review client, authenticated as ``name``, without retries."""
        client = ReviewClient(
            HubConnection(target=self.target, credential=self.credentials[name], insecure=True),
            retry=NO_RETRY,
        )
        self._clients.append(client)
        return client

    def metadata(self, name: str) -> tuple[tuple[str, str], ...]:
        """Call metadata for the raw stubs, authenticated as ``name``."""
        return (("authorization", f"Bearer {self.credentials[name]}"),)

    @cached_property
    def member_stub(self) -> hub_pb2_grpc.MemberServiceStub:
        return hub_pb2_grpc.MemberServiceStub(self.channel)

    @cached_property
    def review_stub(self) -> hub_pb2_grpc.ReviewServiceStub:
        return hub_pb2_grpc.ReviewServiceStub(self.channel)

    @cached_property
    def admin_stub(self) -> hub_pb2_grpc.AdminServiceStub:
        return hub_pb2_grpc.AdminServiceStub(self.channel)

    @cached_property
    def key_stub(self) -> hub_pb2_grpc.KeyServiceStub:
        return hub_pb2_grpc.KeyServiceStub(self.channel)

    @cached_property
    def custodian_stub(self) -> hub_pb2_grpc.CustodianServiceStub:
        return hub_pb2_grpc.CustodianServiceStub(self.channel)

    @cached_property
    def health_stub(self) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channel)

    def principal(self, name: str) -> Principal:
        return principal_named(self.engine, name)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.channel.close()
        self.server.stop(0)


LENIENT_REFUSALS = RefusalPolicy(burst=1_000_000, per_minute=1_000_000)
"""The default limit on refused credentials of test hubs: tests of other behaviour (and the
fuzzers) send many bad credentials, all from 127.0.0.1; the limit has tests of its own."""


@contextmanager
def running_hub(
    engine: Engine,
    credentials: Mapping[str, str],
    *,
    refusal_policy: RefusalPolicy = LENIENT_REFUSALS,
    refusal_clock: Callable[[], float] = time.monotonic,
) -> Iterator[RunningHub]:
    """A hub on a free loopback port over ``engine`` (already provisioned), stopped on exit.

    ``refusal_policy`` and ``refusal_clock``: the hub's limit on refused credentials (every
    test client calls from 127.0.0.1, so they share one bucket)."""
    server = build_hub(
        engine,
        parse_listen("127.0.0.1:0"),
        tls=None,
        insecure=True,
        refusal_policy=refusal_policy,
        refusal_clock=refusal_clock,
    )
    server.server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    hub = RunningHub(engine=engine, server=server, credentials=dict(credentials), channel=channel)
    try:
        yield hub
    finally:
        hub.close()


# ---------------------------------------------------------------------------------- records


def submissions_listed(hub: RunningHub) -> dict[tuple[str, int], pb.SubmissionInfo]:
    """Every submission by (member, id), as a coordinator sees it."""
    listed = hub.review_stub.ListSubmissions(
        pb.ListSubmissionsRequest(), metadata=hub.metadata(COORDINATOR), timeout=RPC_TIMEOUT
    )
    return {(s.member, s.id): s for s in listed.submissions}


def ledger_entries(hub: RunningHub, member: str) -> int:
    """Distinct tokens in ``member``'s query ledger of ``email``."""
    principal = hub.principal(member)
    with session_scope(hub.engine) as session:
        return QueryLedgerRepository(session).entries(principal.id, EMAIL)


def resolution_reads(hub: RunningHub) -> list[dict[str, Any]]:
    """The details of every audited resolution, oldest first."""
    with session_scope(hub.engine) as session:
        entries = AuditRepository(session).search(action="resolution.read", limit=1000)
    return [entry.details for entry in reversed(entries)]


# ---------------------------------------------------------------------------------- e-mails


def overlapping_sets(
    members: Sequence[str] = MEMBERS, per_subset: Mapping[int, int] | None = None
) -> dict[str, frozenset[str]]:
    """Every subset of ``members`` holds its own block of addresses, ``per_subset[size]`` each.

    The default gives each of four members 8 addresses of its own and addresses held by exactly
    2, 3 and all 4 members.
    """
    sizes = per_subset or {1: 8, 2: 3, 3: 3, 4: 5}
    held: dict[str, set[str]] = {name: set() for name in members}
    serial = 0
    for size in range(1, len(members) + 1):
        for subset in combinations(members, size):
            for _ in range(sizes.get(size, 0)):
                serial += 1
                value = f"acct{serial:04d}.{'-'.join(subset)}@example.com"
                for name in subset:
                    held[name].add(value)
    return {name: frozenset(values) for name, values in held.items()}


@dataclass
class EmailForum:
    """Members' current e-mail sets, the forum's keys, and the exact answers the sets imply."""

    sets: dict[str, frozenset[str]]
    prf: KeyedPRF
    params: BloomParams = field(default_factory=email_params)

    def holders(self, value: str) -> frozenset[str]:
        return frozenset(name for name, values in self.sets.items() if value in values)

    def others(self, member: str, value: str) -> int:
        """How many members other than ``member`` hold ``value``."""
        return len(self.holders(value) - {member})

    def bloom(self, member: str) -> KeyedBloomFilter:
        bloom = KeyedBloomFilter(self.params, self.prf)
        bloom.add(sorted(self.sets[member]))
        return bloom

    def payload(self, member: str) -> bytes:
        return encode_bloom(self.bloom(member))

    def token(self, value: str) -> bytes:
        return self.prf.token_bytes(value)

    def value_of(self) -> dict[bytes, str]:
        """Token → value for every value any member holds (what a member's local map does)."""
        values = sorted(set().union(*self.sets.values()))
        return dict(zip(tokens_to_bytes(self.prf.tokens(values)), values, strict=True))

    def shared(self, quorum: int) -> dict[str, frozenset[str]]:
        """Values held by at least ``quorum`` members, with their holders."""
        values = set().union(*self.sets.values())
        return {v: h for v in values if len(h := self.holders(v)) >= quorum}

    def filter_fpr(self, member: str) -> float:
        """The false-positive rate of ``member``'s filter at its fill: ``fill^k``."""
        bloom = self.bloom(member)
        return bloom.params.fpr_at_fill(bloom.fill())


def email_forum(sets: Mapping[str, frozenset[str]] | None = None) -> EmailForum:
    """The forum of ``sets`` (default: :func:`overlapping_sets`) under the fixed secret."""
    return EmailForum(dict(sets or overlapping_sets()), email_prf(forum_secret()))


def upload_header(forum: EmailForum, member: str) -> UploadHeader:
    """What a member's stream announces for its current filter (for the services directly)."""
    payload = forum.payload(member)
    return UploadHeader(
        format=SketchFormat.BLOOM_V1,
        kind=EMAIL,
        key_id=KEY_ID,
        params_digest=forum.params.digest(),
        declared_count=len(forum.sets[member]),
        content_length=len(payload),
        content_sha256=hashlib.sha256(payload).digest(),
    )


def submit_email(client: HubClient, forum: EmailForum, member: str) -> SubmitResult:
    """Upload ``member``'s current set the way the member job does."""
    published = client.get_parameters().bloom[EMAIL]
    assert published.bloom_params() == forum.params
    bloom = forum.bloom(member)
    return client.submit(
        sketch_format=SketchFormat.BLOOM_V1,
        kind=EMAIL,
        key_id=KEY_ID,
        params_digest=published.digest,
        declared_count=bloom.count,
        payload=encode_bloom(bloom),
    )


def false_positive_allowance(forum: EmailForum, member: str) -> int:
    """How many of ``member``'s items a correct hub may over-count.

    An item's count rises above the truth only when a member that does not hold it has a filter
    holding all ``k`` of its positions: probability ``fill_j^k`` for member ``j``. Over the
    member's ``n`` items the number of such items is at most about Poisson(``n · Σ_j fill_j^k``)
    (the union bound over the other members); the allowance is that distribution's 1 − alpha
    quantile.
    """
    others = [name for name in forum.sets if name != member]
    rate = sum(forum.filter_fpr(name) for name in others)
    return poisson_allowance(len(forum.sets[member]) * rate)


def resolve_email(client: HubClient, forum: EmailForum, member: str) -> ResolveResult:
    """Ask the hub about ``member``'s own e-mail values, in sorted order, as the member job does."""
    values = sorted(forum.sets[member])
    tokens = b"".join(tokens_to_bytes(forum.prf.tokens(values)))
    return client.resolve(EMAIL, KEY_ID, tokens)


def resolved_counts(
    forum: EmailForum, member: str, result: ResolveResult, quorum: int
) -> dict[str, int]:
    """Check ``member``'s answers (:func:`resolve_email`) against the exact oracle: every own
    value is answered, no count is below the true number of other holders (0 for values fewer
    than ``quorum`` members hold), and counts exceed it for at most the false-positive allowance.
    """
    assert result.quorum == quorum
    values = sorted(forum.sets[member])
    assert result.status.tolist() == [TokenStatus.ANSWERED] * len(values)
    counts = dict(zip(values, (int(c) for c in result.others), strict=True))
    expected = {v: t if (t := forum.others(member, v)) >= quorum - 1 else 0 for v in values}
    under = {v: (counts[v], expected[v]) for v in values if counts[v] < expected[v]}
    over = {v: (counts[v], expected[v]) for v in values if counts[v] > expected[v]}
    assert not under, f"{member}: counts below the true number of other holders: {under}"
    allowance = false_positive_allowance(forum, member)
    assert len(over) <= allowance, (
        f"{member}: {len(over)} over-counted items, {allowance} allowed by Σ fill^k: {over}"
    )
    return counts


# ---------------------------------------------------------------------------------- prompts


def _words(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """``count`` fresh lower-case words, none in ``taken`` (which they join)."""
    out: list[str] = []
    while len(out) < count:
        word = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 9)))
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


@dataclass(frozen=True)
class PromptForum:
    """Templates with disjoint vocabularies and each member's prompts built from some of them.

    A prompt is a template's 20-word prefix, three filler words drawn per prompt, and the
    template's 16-word suffix: 32 word 3-grams are the template's, 5 the prompt's own, so prompts
    of one template have Jaccard ≈ 0.76 and prompts of different templates share nothing.
    """

    templates: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    plan: dict[str, tuple[int, ...]]
    """Member → the templates its traffic contains."""
    prompts: dict[str, list[str]]
    labels: dict[str, list[int]]
    """Member → the template of each of its prompts."""

    def holders(self, template: int) -> frozenset[str]:
        return frozenset(name for name, used in self.plan.items() if template in used)

    def shared_templates(self) -> set[int]:
        return {t for t in range(len(self.templates)) if len(self.holders(t)) >= 2}


def prompt_forum(
    plan: Mapping[str, Sequence[int]], *, seed: int = 20_240_611, per_template: int = 9
) -> PromptForum:
    rng = random.Random(seed)  # reproducible test data
    taken: set[str] = set()
    count = max(t for used in plan.values() for t in used) + 1
    templates = tuple(
        (tuple(_words(rng, 20, taken)), tuple(_words(rng, 16, taken))) for _ in range(count)
    )
    fillers = _words(rng, 3000, taken)
    prompts: dict[str, list[str]] = {}
    labels: dict[str, list[int]] = {}
    for name, used in plan.items():
        pairs = [
            (" ".join([*templates[t][0], *rng.sample(fillers, 3), *templates[t][1]]), t)
            for t in used
            for _ in range(per_template)
        ]
        rng.shuffle(pairs)
        prompts[name] = [text for text, _ in pairs]
        labels[name] = [t for _, t in pairs]
    return PromptForum(
        templates=templates,
        plan={name: tuple(used) for name, used in plan.items()},
        prompts=prompts,
        labels=labels,
    )


@dataclass(frozen=True)
class ClusterUpload:
    """One member's clusters as sent: signature rows, descriptions, and their templates."""

    signatures: SignatureSet
    clusters: tuple[ClusterInfo, ...]
    template_of: dict[str, int]
    """Cluster id → the template all its prompts come from."""

    @property
    def payload(self) -> bytes:
        return encode_cluster_set(self.signatures, self.clusters)

    def with_new_ids(self) -> ClusterUpload:
        """The same clusters under fresh random ids (what a new nightly run sends)."""
        renamed = {c.cluster_id: new_cluster_id() for c in self.clusters}
        return ClusterUpload(
            signatures=self.signatures,
            clusters=tuple(
                dataclasses.replace(c, cluster_id=renamed[c.cluster_id]) for c in self.clusters
            ),
            template_of={renamed[cid]: t for cid, t in self.template_of.items()},
        )

    def without(self, template: int) -> ClusterUpload:
        keep = [
            i for i, c in enumerate(self.clusters) if self.template_of[c.cluster_id] != template
        ]
        return ClusterUpload(
            signatures=SignatureSet(
                key_id=self.signatures.key_id,
                shingle_unit=self.signatures.shingle_unit,
                shingle_size=self.signatures.shingle_size,
                values=self.signatures.values[keep],
            ),
            clusters=tuple(self.clusters[i] for i in keep),
            template_of={cid: t for cid, t in self.template_of.items() if t != template},
        )


def cluster_upload(
    forum: PromptForum, member: str, secret: ForumSecret, params: MinHashParams
) -> ClusterUpload:
    """Cluster ``member``'s prompts locally and describe each cluster by its template.

    Checks the local clustering against the plan: one cluster per template, holding exactly that
    template's prompts.
    """
    hasher = SaltedMinHasher.from_secret(secret, params)
    texts, labels = forum.prompts[member], forum.labels[member]
    clustering = cluster_prompts(hasher, texts, PROMPT_THRESHOLD, min_volume=3)
    clusters: list[ClusterInfo] = []
    template_of: dict[str, int] = {}
    for cluster in clustering.clusters:
        found = {labels[i] for i in cluster.prompts.tolist()}
        assert len(found) == 1, f"{member}: a local cluster mixes templates {found}"
        template = found.pop()
        assert cluster.volume == labels.count(template), f"{member}: template {template} split"
        info = ClusterInfo(
            cluster_id=new_cluster_id(),
            volume=cluster.volume,
            category=f"t{template}",
            core_size=len(cluster.core),
        )
        clusters.append(info)
        template_of[info.cluster_id] = template
    assert sorted(template_of.values()) == sorted(forum.plan[member])
    signatures = SignatureSet(
        key_id=params.key_id,
        shingle_unit=params.shingle_unit,
        shingle_size=params.shingle_size,
        values=np.stack([cluster.signature for cluster in clustering.clusters]),
    )
    return ClusterUpload(signatures=signatures, clusters=tuple(clusters), template_of=template_of)


def submit_clusters(client: HubClient, upload: ClusterUpload) -> SubmitResult:
    published = client.get_parameters().minhash[PROMPT]
    return client.submit(
        sketch_format=SketchFormat.CLUSTERS_V1,
        kind=PROMPT,
        key_id=KEY_ID,
        params_digest=published.digest,
        declared_count=len(upload.clusters),
        payload=upload.payload,
    )


def campaigns_listed(hub: RunningHub) -> list[pb.Campaign]:
    """The coordinator's listing of ``prompt`` campaigns (one page holds them all)."""
    response = hub.review_stub.ListCampaigns(
        pb.ListCampaignsRequest(family=PROMPT),
        metadata=hub.metadata(COORDINATOR),
        timeout=RPC_TIMEOUT,
    )
    assert not response.next_page_token
    return list(response.campaigns)


def check_campaigns(
    hub: RunningHub,
    clients: Mapping[str, HubClient],
    uploads: Mapping[str, ClusterUpload],
    *,
    reveal: bool,
) -> dict[int, str]:
    """Members' campaign matches and the coordinator's campaigns against the templates each
    member's clusters come from. Returns template → campaign id."""
    holders: dict[int, set[str]] = defaultdict(set)
    volumes: dict[int, int] = defaultdict(int)
    for member, upload in uploads.items():
        for cluster in upload.clusters:
            holders[upload.template_of[cluster.cluster_id]].add(member)
            volumes[upload.template_of[cluster.cluster_id]] += cluster.volume
    shared = {t: frozenset(h) for t, h in holders.items() if len(h) >= 2}
    campaign_of: dict[int, str] = {}
    for member, upload in uploads.items():
        matches = clients[member].list_matches()
        assert matches.indicators == ()
        assert clients[member].list_matches(PROMPT) == matches
        got = {match.cluster_id: match for match in matches.campaigns}
        assert len(got) == len(matches.campaigns)
        assert set(got) == {cid for cid, t in upload.template_of.items() if t in shared}
        for cluster_id, match in got.items():
            template = upload.template_of[cluster_id]
            others = shared[template] - {member}
            assert campaign_of.setdefault(template, match.campaign_id) == match.campaign_id
            assert match.other_members == len(others)
            assert match.other_member_names == (tuple(sorted(others)) if reveal else ())
            assert match.similarity == 1.0  # identical template cores
    assert set(campaign_of) == set(shared)
    assert len(set(campaign_of.values())) == len(shared)
    listed = {
        c.id: (tuple(c.members), c.volume, tuple(c.categories), c.similarity, c.family, c.status)
        for c in campaigns_listed(hub)
    }
    assert listed == {
        campaign_of[t]: (tuple(sorted(who)), volumes[t], (f"t{t}",), 1.0, PROMPT, "new")
        for t, who in shared.items()
    }
    return campaign_of
