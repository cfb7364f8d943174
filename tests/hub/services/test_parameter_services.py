"""Parameter services on SQLite and PostgreSQL: m, k and banding derived by the sketch core,
policy options kept when left out, registered kinds only, sketch-core errors as invalid arguments,
an audit entry with every public value, and the false-shared rates against an exact oracle."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sigshare.hub import domain
from sigshare.hub.domain import KindParameters, MinHashParameters, Role
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.services import parameters, principals
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.errors import ParameterError
from sigshare.sketch.kinds import KIND_NAMES
from sigshare.sketch.lsh import Banding, optimal_banding
from sigshare.sketch.minhash import MinHashParams

T0 = datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
ACTOR = "cli:alice"


def _set_kind(engine: Engine, **overrides: Any) -> KindParameters:
    arguments: dict[str, Any] = {
        "actor": ACTOR,
        "kind": "email",
        "key_id": "k2026a",
        "capacity": 1_000_000,
        "forum_fpr": 0.001,
        "now": T0,
        **overrides,
    }
    with session_scope(engine) as session:
        return parameters.set_kind_parameters(session, **arguments)


def _set_minhash(engine: Engine, **overrides: Any) -> MinHashParameters:
    arguments: dict[str, Any] = {
        "actor": ACTOR,
        "family": "prompt",
        "key_id": "k2026a",
        "threshold": 0.5,
        "now": T0,
        **overrides,
    }
    with session_scope(engine) as session:
        return parameters.set_minhash_parameters(session, **arguments)


def _listed(engine: Engine) -> tuple[list[KindParameters], list[MinHashParameters]]:
    with session_scope(engine) as session:
        return parameters.list_parameters(session)


def _audit_rows(engine: Engine) -> list[tuple[str, str, str, dict[str, Any]]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT actor, action, target, details FROM audit_log ORDER BY id")
        )
        return [(row.actor, row.action, row.target, json.loads(row.details)) for row in rows]


def test_set_kind_sizes_filters_for_the_per_filter_rate_with_default_policy(
    engine: Engine,
) -> None:
    stored = _set_kind(engine)

    # Every filter is tested for each value: 31 other filters share the forum's rate.
    bloom = BloomParams.for_capacity("email", "k2026a", 1_000_000, 0.001 / 31)
    assert BloomParams.for_forum("email", "k2026a", 1_000_000, 0.001, 32) == bloom
    assert stored == KindParameters.for_forum(
        kind="email",
        key_id="k2026a",
        capacity=1_000_000,
        forum_fpr=0.001,
        max_members=32,
        updated_at=T0,
    )
    assert (stored.m, stored.k) == (bloom.m, bloom.k) == (21_524_992, 15)
    assert (stored.forum_fpr, stored.target_fpr) == (0.001, 0.001 / 31)
    assert (stored.max_members, stored.replace_interval_seconds) == (32, 3600)
    assert (stored.quorum, stored.retention_days, stored.reveal_members) == (2, 30, False)
    assert stored.bloom_params() == bloom
    assert stored.digest() == bloom.digest()
    assert _listed(engine) == ([stored], [])


def test_set_kind_sizes_filters_for_the_forum_size_it_is_given(engine: Engine) -> None:
    stored = _set_kind(engine, max_members=8)

    bloom = BloomParams.for_capacity("email", "k2026a", 1_000_000, 0.001 / 7)
    assert (stored.m, stored.k) == (bloom.m, bloom.k) == (18_427_776, 13)
    assert (stored.max_members, stored.target_fpr) == (8, 0.001 / 7)


def test_set_kind_audits_every_public_value_including_the_digest(engine: Engine) -> None:
    stored = _set_kind(
        engine, quorum=3, reveal_members=True, max_members=8, replace_interval_seconds=600
    )

    assert _audit_rows(engine) == [
        (
            ACTOR,
            "params.set",
            "email",
            {
                "key_id": "k2026a",
                "capacity": 1_000_000,
                "forum_fpr": 0.001,
                "max_members": 8,
                "target_fpr": 0.001 / 7,
                "m": 18_427_776,
                "k": 13,
                "quorum": 3,
                "retention_days": 30,
                "reveal_members": True,
                "replace_interval_seconds": 600,
                "digest": stored.digest().hex(),
            },
        )
    ]
    with session_scope(engine) as session:
        assert AuditRepository(session).verify() == 1


def test_set_kind_keeps_stored_values_when_options_are_left_out(engine: Engine) -> None:
    _set_kind(
        engine,
        quorum=4,
        retention_days=7,
        reveal_members=True,
        max_members=10,
        replace_interval_seconds=0,
    )

    resized = _set_kind(engine, capacity=10_000, forum_fpr=0.01, now=T1)
    assert (resized.quorum, resized.retention_days, resized.reveal_members) == (4, 7, True)
    assert (resized.max_members, resized.replace_interval_seconds) == (10, 0)
    assert (resized.capacity, resized.forum_fpr, resized.updated_at) == (10_000, 0.01, T1)
    assert (resized.m, resized.k) == (
        BloomParams.for_forum("email", "k2026a", 10_000, 0.01, 10).m,
        BloomParams.for_forum("email", "k2026a", 10_000, 0.01, 10).k,
    )

    changed = _set_kind(engine, retention_days=90, reveal_members=False, now=T1)
    assert (changed.quorum, changed.retention_days, changed.reveal_members) == (4, 90, False)
    assert (changed.max_members, changed.replace_interval_seconds) == (10, 0)
    grown = _set_kind(engine, max_members=50, replace_interval_seconds=7200, now=T1)
    assert (grown.quorum, grown.max_members, grown.replace_interval_seconds) == (4, 50, 7200)
    assert grown.target_fpr == 0.001 / 49
    assert _listed(engine)[0] == [grown]


def test_set_kind_refuses_an_unregistered_kind_naming_the_known_ones(engine: Engine) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        _set_kind(engine, kind="shoe_size")
    assert str(caught.value) == (f"unknown kind 'shoe_size'; known kinds: {', '.join(KIND_NAMES)}")
    assert _listed(engine) == ([], [])
    assert _audit_rows(engine) == []


@pytest.mark.parametrize(
    ("overrides", "sketch_core_call"),
    [
        (
            {"key_id": "bad key!"},
            lambda: BloomParams.for_forum("email", "bad key!", 10, 0.1, 32),
        ),
        ({"forum_fpr": 1.5}, lambda: BloomParams.for_forum("email", "k1", 10, 1.5, 32)),
        ({"capacity": 0}, lambda: BloomParams.for_forum("email", "k1", 0, 0.1, 32)),
        (
            {"capacity": 10**9, "forum_fpr": 1e-6},
            lambda: BloomParams.for_forum("email", "k1", 10**9, 1e-6, 32),
        ),
        ({"max_members": 1}, lambda: BloomParams.for_forum("email", "k1", 10, 0.1, 1)),
        ({"max_members": 251}, lambda: BloomParams.for_forum("email", "k1", 10, 0.1, 251)),
    ],
)
def test_set_kind_turns_sketch_core_errors_into_invalid_arguments(
    engine: Engine, overrides: dict[str, Any], sketch_core_call: Any
) -> None:
    with pytest.raises(ParameterError) as expected:
        sketch_core_call()
    with pytest.raises(InvalidArgumentError) as caught:
        _set_kind(engine, **overrides)
    assert not isinstance(caught.value, ParameterError)
    assert str(caught.value) == str(expected.value)
    assert _listed(engine) == ([], [])
    assert _audit_rows(engine) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quorum": 1}, "quorum must be at least 2, got 1"),
        ({"retention_days": 0}, "retention must be at least one day, got 0"),
        ({"max_members": 4, "quorum": 5}, "quorum 5 exceeds the forum size of 4 members"),
        ({"replace_interval_seconds": -1}, "replace interval must be 0 to 604800 seconds"),
        ({"replace_interval_seconds": 604_801}, "replace interval must be 0 to 604800 seconds"),
    ],
)
def test_set_kind_refuses_an_invalid_policy(
    engine: Engine, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        _set_kind(engine, **overrides)
    assert _listed(engine) == ([], [])
    assert _audit_rows(engine) == []


def test_a_stored_quorum_above_a_new_forum_size_is_refused(engine: Engine) -> None:
    stored = _set_kind(engine, quorum=5)
    with pytest.raises(InvalidArgumentError, match="quorum 5 exceeds the forum size of 4"):
        _set_kind(engine, max_members=4, now=T1)
    assert _listed(engine)[0] == [stored]


def test_set_minhash_applies_defaults_and_derives_the_banding(engine: Engine) -> None:
    stored = _set_minhash(engine, threshold=0.6)

    # A new family starts from the recommended profile; the threshold given replaces its own.
    assert (stored.num_perm, stored.shingle_unit, stored.shingle_size) == (128, "word", 1)
    assert (stored.drop_stopwords, stored.core_rules, stored.cluster_threshold) == (True, 2, 0.5)
    assert (stored.quorum, stored.retention_days, stored.reveal_members) == (2, 30, False)
    assert stored.banding() == optimal_banding(0.6, 128)
    assert stored.digest() == (
        MinHashParams(key_id="k2026a", shingle_size=1, drop_stopwords=True, core_rules=2).digest()
    )
    assert _listed(engine) == ([], [stored])


def test_set_minhash_audits_under_its_family_kind(engine: Engine) -> None:
    stored = _set_minhash(engine, num_perm=64, shingle_unit="char", shingle_size=5)
    banding = optimal_banding(0.5, 64)

    assert _audit_rows(engine) == [
        (
            ACTOR,
            "params.set",
            "minhash:prompt",
            {
                "key_id": "k2026a",
                "num_perm": 64,
                "shingle_unit": "char",
                "shingle_size": 5,
                "drop_stopwords": False,  # character shingles keep every character
                "core_rules": 2,
                "threshold": 0.5,
                "cluster_threshold": 0.5,
                "bands": banding.bands,
                "rows": banding.rows,
                "quorum": 2,
                "retention_days": 30,
                "reveal_members": False,
                "digest": stored.digest().hex(),
            },
        )
    ]


def test_set_minhash_keeps_stored_shingling_and_policy_when_left_out(engine: Engine) -> None:
    _set_minhash(engine, num_perm=256, shingle_unit="char", shingle_size=4, quorum=3)

    updated = _set_minhash(engine, threshold=0.8, now=T1)
    assert (updated.num_perm, updated.shingle_unit, updated.shingle_size) == (256, "char", 4)
    assert (updated.quorum, updated.threshold, updated.updated_at) == (3, 0.8, T1)
    assert _listed(engine)[1] == [updated]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"threshold": 1.0}, "threshold must be in (0, 1), got 1.0"),
        ({"num_perm": 4}, "num_perm must be between 8 and 1024, got 4"),
        ({"shingle_unit": "line"}, "shingle unit must be 'word' or 'char', got 'line'"),
        ({"family": "Prompts!"}, "name 'Prompts!' is invalid"),
        ({"quorum": 0}, "quorum must be at least 2, got 0"),
    ],
)
def test_set_minhash_refuses_invalid_values(
    engine: Engine, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        _set_minhash(engine, **overrides)
    assert str(caught.value).startswith(message)
    assert _listed(engine) == ([], [])
    assert _audit_rows(engine) == []


def test_list_parameters_orders_each_kind_of_parameters_by_name(engine: Engine) -> None:
    phone = _set_kind(engine, kind="phone")
    email = _set_kind(engine, kind="email")
    profile = _set_minhash(engine, family="profile")
    prompt = _set_minhash(engine, family="prompt")
    assert _listed(engine) == ([email, phone], [profile, prompt])


def test_only_changes_to_what_sketches_agree_on_invalidate_them(engine: Engine) -> None:
    first = _set_kind(engine)
    policy_only = _set_kind(engine, quorum=5, retention_days=3, reveal_members=True)
    new_epoch = _set_kind(engine, key_id="k2026b")
    resized = _set_kind(engine, key_id="k2026b", capacity=2_000_000)

    assert not parameters.invalidates_sketches(None, first)
    assert not parameters.invalidates_sketches(first, policy_only)
    assert parameters.invalidates_sketches(policy_only, new_epoch)
    assert parameters.invalidates_sketches(new_epoch, resized)

    family = _set_minhash(engine)
    rethresholded = _set_minhash(engine, threshold=0.9)
    reshingled = _set_minhash(engine, threshold=0.9, shingle_size=4)
    assert not parameters.invalidates_sketches(family, rethresholded)
    assert parameters.invalidates_sketches(rethresholded, reshingled)


def test_banding_is_computed_once_per_threshold_and_size() -> None:
    domain._cached_banding.cache_clear()
    a = MinHashParameters(family="a", key_id="k1", threshold=0.7, updated_at=T0)
    b = MinHashParameters(family="b", key_id="k2", threshold=0.7, updated_at=T1)

    assert a.banding() == b.banding() == optimal_banding(0.7, 128)
    assert isinstance(a.banding(), Banding)
    info = domain._cached_banding.cache_info()
    assert (info.misses, info.hits) == (1, 2)


# --- false-shared rates --------------------------------------------------------------------


def _filter_fpr(set_bits: int, m: int, k: int) -> Fraction:
    """Exact chance that a non-member's ``k`` distinct positions all hit ``set_bits`` of ``m``."""
    return Fraction(math.comb(set_bits, k), math.comb(m, k))


def _tail_by_subsets(rates: Sequence[Fraction], needed: int) -> Fraction:
    """P(at least ``needed`` of independent events happen), summed over every subset."""
    total = Fraction(0)
    for happened in itertools.product((False, True), repeat=len(rates)):
        if sum(happened) >= needed:
            term = Fraction(1)
            for rate, yes in zip(rates, happened, strict=True):
                term *= rate if yes else 1 - rate
            total += term
    return total


def _add_filter(
    engine: Engine, member: str, params: KindParameters, set_bits: int, *, digest: bytes
) -> None:
    with session_scope(engine) as session:
        member_id = {p.name: p.id for p in principals.list_principals(session)}[member]
        SubmissionRepository(session).add(
            member_id=member_id,
            family_kind=params.kind,
            key_id=params.key_id,
            params_digest=digest,
            content_sha256=hashlib.sha256(f"{member}/{params.kind}".encode()).digest(),
            declared_count=100,
            set_bits=set_bits,
            payload=b"filter",
            created_at=T0,
            expires_at=T0 + timedelta(days=30),
        )


# Float rounding: each rate is a product of k ≤ 64 factors and the tail a sum of at most 2⁴
# products of 4 rates, every operation within one ulp (2⁻⁵³ ≈ 1.1e-16) relative: 1e-12 is
# several hundred times what they can add up to.
RELATIVE = 1e-12


def test_false_shared_rates_match_the_exact_poisson_binomial_tail(engine: Engine) -> None:
    with session_scope(engine) as session:
        for name in ("m1", "m2", "m3", "m4", "m5", "gone"):
            principals.add_principal(session, actor=ACTOR, name=name, role=Role.MEMBER, now=T0)
        principals.add_principal(session, actor=ACTOR, name="coord", role=Role.COORDINATOR, now=T0)
        principals.revoke_principal(session, actor=ACTOR, name="gone", now=T0)
    email = _set_kind(engine, capacity=1000, forum_fpr=0.01, max_members=8, quorum=3)
    phone = _set_kind(engine, kind="phone", capacity=1000, forum_fpr=0.01, max_members=4)
    _set_kind(engine, kind="domain", capacity=1000, forum_fpr=0.01, max_members=4)
    m, k = email.m, email.k
    fills = {"m1": m // 2, "m2": m // 3, "m3": m // 4, "m4": m // 5}
    for member, set_bits in fills.items():
        _add_filter(engine, member, email, set_bits, digest=email.digest())
    # Neither a revoked member's filter nor one made under other parameters is tested.
    _add_filter(engine, "gone", email, m - 1, digest=email.digest())
    _add_filter(engine, "m5", email, m - 1, digest=hashlib.sha256(b"old").digest())
    _add_filter(engine, "m1", phone, phone.m // 2, digest=phone.digest())
    _add_filter(engine, "m2", phone, phone.m // 3, digest=phone.digest())

    with session_scope(engine) as session:
        rates = {rate.kind: rate for rate in parameters.false_shared_rates(session, T1)}

    assert list(rates) == ["domain", "email", "phone"]
    exact = {member: _filter_fpr(bits, m, k) for member, bits in fills.items()}
    worst = max(
        _tail_by_subsets([r for other, r in exact.items() if other != member], needed=2)
        for member in exact
    )
    # Five live members: four others at capacity, each at the per-filter rate.
    at_capacity = _tail_by_subsets([Fraction(email.target_fpr)] * 4, needed=2)
    got = rates["email"]
    assert (got.filters, got.members, got.max_members, got.over_forum_size) == (4, 5, 8, False)
    assert got.current == pytest.approx(float(worst), rel=RELATIVE)
    assert got.at_capacity == pytest.approx(float(at_capacity), rel=RELATIVE)
    # Quorum 2: one other filter's false positive suffices.
    phone_rates = [
        _filter_fpr(phone.m // 2, phone.m, phone.k),
        _filter_fpr(phone.m // 3, phone.m, phone.k),
    ]
    got = rates["phone"]
    assert (got.filters, got.members, got.max_members, got.over_forum_size) == (2, 5, 4, True)
    assert got.current == pytest.approx(float(max(phone_rates)), rel=RELATIVE)
    assert got.at_capacity == pytest.approx(
        float(_tail_by_subsets([Fraction(phone.target_fpr)] * 4, needed=1)), rel=RELATIVE
    )
    assert got.at_capacity > phone.forum_fpr  # five members, sized for four
    # No filters yet: nothing can be reported as shared.
    got = rates["domain"]
    assert (got.filters, got.current, got.over_forum_size) == (0, 0.0, True)


def test_at_capacity_stays_within_the_forum_rate_up_to_the_forum_size(engine: Engine) -> None:
    with session_scope(engine) as session:
        for index in range(4):
            principals.add_principal(
                session, actor=ACTOR, name=f"m{index}", role=Role.MEMBER, now=T0
            )
    email = _set_kind(engine, capacity=1000, forum_fpr=0.01, max_members=4)
    with session_scope(engine) as session:
        (rate,) = parameters.false_shared_rates(session, T1)
    exact = _tail_by_subsets([Fraction(email.target_fpr)] * 3, needed=1)
    assert rate.at_capacity == pytest.approx(float(exact), rel=RELATIVE)
    # The union bound the filters are sized by: 3 × forum_fpr / 3.
    assert rate.at_capacity <= email.forum_fpr
    assert (rate.members, rate.filters, rate.current, rate.over_forum_size) == (4, 0, 0.0, False)
