"""Campaign verification under core rules 2: estimated Jaccard ≥ θ *and* enough shared shingles.

Signatures are made by a real :class:`SaltedMinHasher` from planted sets of random 32-bit shingle
values, so each pair has a known exact Jaccard ``J`` and known sizes. Decisions are predicted
from the law of the estimate: if the keyed permutations behave like independent min-wise hashes
(``tests/sketch/test_minhash.py`` checks that they do), the number ``X`` of equal minima of two
sets is Binomial(P, J) and, given ``X``, the equal positions are a uniformly random ``X``-subset
of the ``P`` positions. The hub keeps a pair when it shares a band (LSH), ``X/P ≥ θ`` and
``X/P·(a + b)/(1 + X/P) ≥ 8``; :func:`campaign_probability` computes the exact probability of
that from the law. Seeds are fixed, so the tests are deterministic; every decision asserted
outright has odds below 10⁻⁴ of going the other way for *any* key (asserted next to it), and the
one statistical test states its tolerance.

Also here: the hub's refusal of clusters without a core size in families that need it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats
from sqlalchemy import Engine, text

from sigshare.hub.domain import MinHashParameters, Principal, Role
from sigshare.hub.errors import SketchRejectedError
from sigshare.hub.matching.campaigns import estimated_shared, find_campaigns
from sigshare.hub.rpc.convert import cluster_set
from sigshare.hub.services import parameters, principals
from sigshare.hub.services.submissions import UploadHeader, submit_clusters
from sigshare.hub.storage import session_scope
from sigshare.sketch.cluster import MIN_SHARED_SHINGLES, ClusterInfo
from sigshare.sketch.codec import SignatureSet, SketchFormat
from sigshare.sketch.lsh import Banding, optimal_banding
from sigshare.sketch.minhash import MinHashParams, SaltedMinHasher
from sigshare.sketch.wire import encode_cluster_set

P = 128
THETA = parameters.RECOMMENDED_MINHASH.threshold
BANDING = optimal_banding(THETA, P)
KEY = bytes(range(32))
ODDS = 1e-4
"""Largest chance, for any key, that a decision asserted outright would go the other way."""
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def hasher() -> SaltedMinHasher:
    return SaltedMinHasher(MinHashParams("verify-1", num_perm=P), KEY)


def test_the_forum_defaults_these_tests_assume() -> None:
    assert (parameters.RECOMMENDED_MINHASH.num_perm, 0.25, 8) == (P, THETA, MIN_SHARED_SHINGLES)
    assert Banding(bands=42, rows=3) == BANDING


# ---------------------------------------------------------------------------------- the oracle


def planted_pair(
    rng: np.random.Generator, first: int, second: int, shared: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """Two sets of distinct random shingle values, of sizes ``first`` and ``second``, with
    exactly ``shared`` values in common."""
    values = rng.choice(2**32, size=first + second - shared, replace=False).astype(np.uint32)
    return values[:first], np.concatenate([values[:shared], values[first:]])


def exact_jaccard(first: npt.NDArray[np.uint32], second: npt.NDArray[np.uint32]) -> Fraction:
    a, b = set(first.tolist()), set(second.tolist())
    return Fraction(len(a & b), len(a | b))


def kept(matches: int, first: int, second: int, *, sizes: bool) -> bool:
    """Whether the hub keeps a candidate pair with ``matches`` equal minima, in exact
    arithmetic: ``X/P ≥ θ`` and, with core sizes, ``X(a + b)/(P + X) ≥ 8``."""
    if Fraction(matches, P) < Fraction(THETA):
        return False
    return not sizes or Fraction(matches * (first + second), P + matches) >= MIN_SHARED_SHINGLES


def no_full_band(matches: int, banding: Banding = BANDING) -> Fraction:
    """P(no band has all its rows equal | ``matches`` equal positions, uniformly placed): the
    placements with at most ``rows − 1`` equal rows in every band over all placements."""
    per_band = [math.comb(banding.rows, j) for j in range(banding.rows)]  # (1+x)^r − x^r
    free = P - banding.bands * banding.rows  # positions no band reads
    poly = [math.comb(free, j) for j in range(free + 1)]
    for _ in range(banding.bands):
        out = [0] * (len(poly) + len(per_band) - 1)
        for i, c in enumerate(poly):
            for j, d in enumerate(per_band):
                out[i + j] += c * d
        poly = out
    placements = poly[matches] if matches < len(poly) else 0
    return Fraction(placements, math.comb(P, matches))


def campaign_probability(jaccard: float, first: int, second: int, *, sizes: bool) -> float:
    """Exact probability that two sets of Jaccard ``jaccard`` and sizes ``first``, ``second``
    form a campaign (module docstring: Binomial(P, J) equal minima, uniformly placed)."""
    pmf = stats.binom.pmf(np.arange(P + 1), P, jaccard)
    return float(
        sum(
            pmf[x] * (1 - float(no_full_band(x)))
            for x in range(P + 1)
            if kept(x, first, second, sizes=sizes)
        )
    )


def test_no_full_band_counts_placements_exactly() -> None:
    small = Banding(bands=2, rows=2)
    # P = 128 positions, 4 read by two bands of 2: with 2 matches, the placements that fill
    # a band are the 2 pairs {0,1}, {2,3} out of C(128, 2).
    assert no_full_band(2, small) == 1 - Fraction(2, math.comb(P, 2))
    assert no_full_band(0) == 1
    # Pigeonhole: at most rows − 1 equal rows per band plus the unread positions.
    most = BANDING.bands * (BANDING.rows - 1) + P - BANDING.bands * BANDING.rows
    assert no_full_band(most) > 0
    assert no_full_band(most + 1) == 0


def test_estimated_shared_is_exact_for_the_exact_jaccard() -> None:
    # (|A|, |B|, |A ∩ B|): disjoint, identical, nested, lopsided and the motivating cases.
    cases = [(10, 10, 4), (30, 30, 15), (8, 20, 8), (1, 1, 1), (5, 7, 0), (40, 12, 12)]
    cases += [(100, 3, 2), (14, 14, 8), (1000, 999, 500)]
    rng = np.random.default_rng(11)
    jaccards, firsts, seconds, truth = [], [], [], []
    for first, second, shared in cases:
        a, b = planted_pair(rng, first, second, shared)
        jaccard = exact_jaccard(a, b)
        jaccards.append(float(jaccard))
        firsts.append(len(set(a.tolist())))
        seconds.append(len(set(b.tolist())))
        truth.append(len(set(a.tolist()) & set(b.tolist())))
    assert truth == [shared for _, _, shared in cases]
    estimate = estimated_shared(
        np.array(jaccards), np.array(firsts, np.int64), np.array(seconds, np.int64)
    )
    np.testing.assert_allclose(estimate, truth, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------- decisions


PAIRS = {
    # Two 10-shingle cores sharing 4: J = 0.25 = θ, but 4 shared words are a topic, not a
    # template. With sizes the hub would need X ≥ 86 of 128 equal minima (Ĵ ≥ 2/3).
    "short": (10, 10, 4),
    # Two 8-shingle cores sharing 7: J = 7/9, far above θ, yet only 7 shingles in common.
    # With sizes it would need every minimum equal (Ĵ = 1).
    "dense short": (8, 8, 7),
    # Two 30-shingle template cores sharing 24: J = 2/3, 24 shared.
    "template": (30, 30, 24),
}


def planted_signatures(
    hasher: SaltedMinHasher, pairs: Sequence[tuple[int, int, int]], seed: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Signatures of each pair's two sets (members 0 and 1, consecutive rows) and core sizes."""
    rng = np.random.default_rng(seed)
    rows, sizes = [], []
    for first, second, shared in pairs:
        a, b = planted_pair(rng, first, second, shared)
        assert exact_jaccard(a, b) == Fraction(shared, first + second - shared)
        rows += [hasher.signature_of_set(a), hasher.signature_of_set(b)]
        sizes += [first, second]
    members = np.tile(np.array([0, 1], np.int64), len(pairs))
    return np.stack(rows), members, np.array(sizes, np.int64)


def campaign_pairs(
    signatures: npt.NDArray[np.uint32],
    members: npt.NDArray[np.int64],
    sizes: npt.NDArray[np.int64] | None,
) -> list[int]:
    """The pairs (by index) that the hub turns into campaigns; each must be exactly its two rows."""
    found = find_campaigns(
        signatures,
        members,
        BANDING,
        THETA,
        2,
        core_sizes=sizes,
        min_shared=MIN_SHARED_SHINGLES,
    )
    pairs = []
    for component in found:
        first = int(component.nodes[0])
        assert component.nodes.tolist() == [first, first + 1]
        assert first % 2 == 0
        assert component.members == 2
        pairs.append(first // 2)
    return sorted(pairs)


def test_campaigns_need_enough_shared_shingles_not_just_jaccard(hasher: SaltedMinHasher) -> None:
    names = list(PAIRS)
    shapes = [PAIRS[name] for name in names]
    for name, (first, second, shared) in PAIRS.items():
        jaccard = shared / (first + second - shared)
        sized = campaign_probability(jaccard, first, second, sizes=True)
        assert (sized if name == "template" else 1 - sized) > 1 - ODDS, name
        if name != "short":
            assert campaign_probability(jaccard, first, second, sizes=False) > 1 - ODDS, name
    # "short" sits on θ itself: without sizes it is a coin flip, left unasserted below.
    assert 0.2 < campaign_probability(0.25, 10, 10, sizes=False) < 0.8

    signatures, members, sizes = planted_signatures(hasher, shapes, seed=2026)
    with_sizes = campaign_pairs(signatures, members, sizes)
    without_sizes = campaign_pairs(signatures, members, None)
    assert [names[i] for i in with_sizes] == ["template"]
    # Without sizes the dense short pair is a campaign: the shared-shingle stage rejects it.
    assert {names[i] for i in without_sizes} >= {"dense short", "template"}


@pytest.mark.parametrize(
    ("first", "second", "matches", "campaign"),
    [
        # a + b = 28: ŝ = 28X/(128 + X) crosses 8 between X = 51 (7.98) and 52 (8.09).
        (14, 14, 51, False),
        (14, 14, 52, True),
        (8, 20, 51, False),
        (8, 20, 52, True),
        # ŝ exactly 8 ("at least 8 shared"): X = 64 with a + b = 24, and X = 32 (Ĵ = θ too)
        # with a + b = 40; one fewer shingle and it falls short.
        (12, 12, 64, True),
        (12, 11, 64, False),
        (20, 20, 32, True),
        (20, 19, 32, False),
        # a + b = 60: ŝ ≥ 8 from X = 20, so θ (X ≥ 32) decides.
        (30, 30, 31, False),
        (30, 30, 32, True),
    ],
)
def test_the_shared_shingle_boundary_is_exact(
    first: int, second: int, matches: int, campaign: bool
) -> None:
    """Hand-made signatures equal in exactly ``matches`` positions, the first ones (so a band is
    full and the pair is a candidate): the decision is the exact arithmetic of the rule."""
    rng = np.random.default_rng(matches)
    base = rng.integers(0, 2**31, size=P, dtype=np.int64).astype(np.uint32)
    other = base.copy()
    other[matches:] += np.uint32(2**31)  # differs everywhere after the first ``matches``
    signatures = np.stack([base, other])
    members = np.array([0, 1], np.int64)
    assert campaign == kept(matches, first, second, sizes=True)
    found = campaign_pairs(signatures, members, np.array([first, second], np.int64))
    assert found == ([0] if campaign else [])
    # Without sizes only θ counts.
    assert campaign_pairs(signatures, members, None) == ([0] if matches >= 32 else [])
    if campaign:
        (component,) = find_campaigns(
            signatures,
            members,
            BANDING,
            THETA,
            2,
            core_sizes=np.array([first, second], np.int64),
            min_shared=MIN_SHARED_SHINGLES,
        )
        assert component.min_edge_similarity == matches / P
        assert component.best_similarity.tolist() == [matches / P] * 2


def test_campaigns_near_eight_shared_shingles_follow_the_binomial_law(
    hasher: SaltedMinHasher,
) -> None:
    """Two 14-shingle cores sharing s: J = s/(28 − s), and ŝ ≥ 8 ⟺ X ≥ 52 (Ĵ ≥ 0.40625).

    Statistical: per s, the number of campaigns among N independent pairs is a sum of N
    Bernoulli(p_s), p_s from :func:`campaign_probability`; it must lie within the binomial's
    central 1 − 2·10⁻⁵ range (so a correct hub fails a given s with odds ≤ 2·10⁻⁵).
    """
    count = 150
    shared_counts = [6, 7, 8, 9, 10, 11]
    shapes = [(14, 14, s) for s in shared_counts for _ in range(count)]
    signatures, members, sizes = planted_signatures(hasher, shapes, seed=8)
    found = campaign_pairs(signatures, members, sizes)
    observed = np.bincount(np.array(found, np.int64) // count, minlength=len(shared_counts))
    expected = []
    for index, shared in enumerate(shared_counts):
        p = campaign_probability(shared / (28 - shared), 14, 14, sizes=True)
        expected.append(p)
        low = stats.binom.ppf(1e-5, count, p)
        high = stats.binom.isf(1e-5, count, p)
        assert low <= observed[index] <= high, (shared, int(observed[index]), count * p)
    # The law the observations follow: rare below 8 shared, about even at 8 (E[Ĵ] = 0.4, just
    # under the bound 0.40625), near certain above.
    assert expected[0] < 1e-3
    assert expected[-1] > 1 - 1e-3
    assert 0.35 < expected[shared_counts.index(8)] < 0.55


# ---------------------------------------------------------------------------------- submissions


def _member(engine: Engine) -> Principal:
    with session_scope(engine) as session:
        member, _ = principals.add_principal(
            session, actor="test", name="acme", role=Role.MEMBER, now=T0
        )
    return member


def _family(engine: Engine, family: str, core_rules: int) -> MinHashParameters:
    with session_scope(engine) as session:
        return parameters.set_minhash_parameters(
            session, actor="test", family=family, key_id="epoch-1", core_rules=core_rules, now=T0
        )


UNSIZED_ID = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"


def _upload(params: MinHashParameters) -> tuple[UploadHeader, SignatureSet, list[ClusterInfo]]:
    """Two clusters as a client sends them, the second without a core size; decoded by the hub."""
    rng = np.random.default_rng(5)
    signatures = SignatureSet(
        key_id=params.key_id,
        shingle_unit=params.shingle_unit,
        shingle_size=params.shingle_size,
        values=rng.integers(0, 2**32 - 1, size=(2, params.num_perm), dtype=np.uint32),
    )
    payload = encode_cluster_set(
        signatures,
        [
            ClusterInfo(cluster_id="a" * 32, volume=12, category="jailbreak", core_size=20),
            ClusterInfo(cluster_id=UNSIZED_ID, volume=7, category="jailbreak"),
        ],
    )
    header = UploadHeader(
        format=SketchFormat.CLUSTERS_V1,
        kind=params.family,
        key_id=params.key_id,
        params_digest=params.digest(),
        declared_count=2,
        content_length=len(payload),
        content_sha256=hashlib.sha256(payload).digest(),
    )
    decoded, clusters = cluster_set(payload)
    return header, decoded, clusters


def _stored(engine: Engine) -> tuple[list[tuple[str, str]], list[tuple[str, int]], list[str]]:
    with engine.connect() as connection:
        submissions = connection.execute(
            text("SELECT family_kind, status FROM submissions ORDER BY id")
        ).all()
        clusters = connection.execute(
            text("SELECT cluster_id, core_size FROM clusters ORDER BY id")
        ).all()
        actions = connection.execute(text("SELECT action FROM audit_log ORDER BY id")).all()
    return (
        [tuple(row) for row in submissions],
        [tuple(row) for row in clusters],
        [row[0] for row in actions],
    )


def test_core_rules_2_refuses_clusters_without_a_core_size_and_leaves_no_trace(
    engine: Engine,
) -> None:
    member = _member(engine)
    params = _family(engine, "prompt", core_rules=2)
    header, signatures, clusters = _upload(params)
    assert [c.core_size for c in clusters] == [20, 0]
    before = _stored(engine)

    with pytest.raises(SketchRejectedError) as caught, session_scope(engine) as session:
        submit_clusters(session, member, header, signatures=signatures, clusters=clusters, now=T0)
    assert str(caught.value) == (
        f"cluster {UNSIZED_ID} states no core size, which prompt needs (core rules 2): "
        "upgrade the client"
    )
    assert _stored(engine) == before == ([], [], ["principal.add", "params.set"])


def test_core_rules_1_accepts_the_same_clusters(engine: Engine) -> None:
    member = _member(engine)
    params = _family(engine, "legacy", core_rules=1)
    header, signatures, clusters = _upload(params)

    with session_scope(engine) as session:
        outcome = submit_clusters(
            session, member, header, signatures=signatures, clusters=clusters, now=T0
        )
    assert not outcome.duplicate
    submissions, stored_clusters, actions = _stored(engine)
    assert submissions == [("minhash:legacy", "active")]
    assert stored_clusters == [("a" * 32, 20), (UNSIZED_ID, 0)]
    assert actions[-1] == "submission.add"
