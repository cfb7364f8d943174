"""Parameter services on SQLite and PostgreSQL: m, k and banding derived by the sketch core,
policy options kept when left out, registered kinds only, sketch-core errors as invalid arguments,
and an audit entry with every public value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sigshare.hub import domain
from sigshare.hub.domain import KindParameters, MinHashParameters
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.services import parameters
from sigshare.hub.storage import AuditRepository, session_scope
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
        "target_fpr": 0.001,
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


def test_set_kind_derives_m_and_k_from_capacity_and_fpr_with_default_policy(
    engine: Engine,
) -> None:
    stored = _set_kind(engine)

    bloom = BloomParams.for_capacity("email", "k2026a", 1_000_000, 0.001)
    assert stored == KindParameters.from_bloom(bloom, updated_at=T0)
    assert (stored.m, stored.k) == (bloom.m, bloom.k) == (14_377_600, 10)
    assert (stored.quorum, stored.retention_days, stored.reveal_members) == (2, 30, False)
    assert stored.digest() == bloom.digest()
    assert _listed(engine) == ([stored], [])


def test_set_kind_audits_every_public_value_including_the_digest(engine: Engine) -> None:
    stored = _set_kind(engine, quorum=3, reveal_members=True)

    assert _audit_rows(engine) == [
        (
            ACTOR,
            "params.set",
            "email",
            {
                "key_id": "k2026a",
                "capacity": 1_000_000,
                "target_fpr": 0.001,
                "m": 14_377_600,
                "k": 10,
                "quorum": 3,
                "retention_days": 30,
                "reveal_members": True,
                "digest": stored.digest().hex(),
            },
        )
    ]
    with session_scope(engine) as session:
        assert AuditRepository(session).verify() == 1


def test_set_kind_keeps_stored_policy_when_options_are_left_out(engine: Engine) -> None:
    _set_kind(engine, quorum=4, retention_days=7, reveal_members=True)

    resized = _set_kind(engine, capacity=10_000, target_fpr=0.01, now=T1)
    assert (resized.quorum, resized.retention_days, resized.reveal_members) == (4, 7, True)
    assert (resized.capacity, resized.updated_at) == (10_000, T1)

    changed = _set_kind(engine, retention_days=90, reveal_members=False, now=T1)
    assert (changed.quorum, changed.retention_days, changed.reveal_members) == (4, 90, False)
    assert _listed(engine)[0] == [changed]


def test_set_kind_refuses_an_unregistered_kind_naming_the_known_ones(engine: Engine) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        _set_kind(engine, kind="shoe_size")
    assert str(caught.value) == (f"unknown kind 'shoe_size'; known kinds: {', '.join(KIND_NAMES)}")
    assert _listed(engine) == ([], [])
    assert _audit_rows(engine) == []


@pytest.mark.parametrize(
    ("overrides", "sketch_core_call"),
    [
        ({"key_id": "bad key!"}, lambda: BloomParams.for_capacity("email", "bad key!", 10, 0.1)),
        ({"target_fpr": 1.5}, lambda: BloomParams.for_capacity("email", "k1", 10, 1.5)),
        ({"capacity": 0}, lambda: BloomParams.for_capacity("email", "k1", 0, 0.1)),
        (
            {"capacity": 10**12, "target_fpr": 1e-9},
            lambda: BloomParams.for_capacity("email", "k1", 10**12, 1e-9),
        ),
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
    ],
)
def test_set_kind_refuses_an_invalid_policy(
    engine: Engine, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        _set_kind(engine, **overrides)
    assert _audit_rows(engine) == []


def test_set_minhash_applies_defaults_and_derives_the_banding(engine: Engine) -> None:
    stored = _set_minhash(engine, threshold=0.6)

    assert (stored.num_perm, stored.shingle_unit, stored.shingle_size) == (128, "word", 3)
    assert (stored.quorum, stored.retention_days, stored.reveal_members) == (2, 30, False)
    assert stored.banding() == optimal_banding(0.6, 128)
    assert stored.digest() == MinHashParams(key_id="k2026a").digest()
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
                "threshold": 0.5,
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
