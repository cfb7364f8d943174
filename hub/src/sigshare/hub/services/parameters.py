"""The parameters the hub publishes: Bloom parameters per indicator kind, MinHash parameters per
fingerprint family, and the forum policy (quorum, retention, whether members are revealed).

Admins give the intent — capacity, the forum-level false-shared rate and the forum size, or a
threshold — and ``m``, ``k`` and the LSH banding are derived here by the sketch core, so every
member and the hub agree on them by construction.
Policy options left out keep their stored value, so changing one of them never silently resets
another. Changing what a sketch's digest covers makes members' current sketches incompatible;
the submission engine retires those lazily, and :func:`invalidates_sketches` tells the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_REPLACE_INTERVAL_SECONDS,
    KindParameters,
    MinHashParameters,
    Role,
    ShingleUnit,
    minhash_family_kind,
)
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.errors import ParameterError
from sigshare.sketch.estimators import false_shared_probability
from sigshare.sketch.kinds import KIND_NAMES, KIND_TYPES

DEFAULT_QUORUM = 2
DEFAULT_RETENTION_DAYS = 30
DEFAULT_REVEAL_MEMBERS = False


@dataclass(frozen=True, slots=True)
class MinHashProfile:
    """What a MinHash family's signatures and matching are made of (everything but the key epoch
    and the forum policy)."""

    num_perm: int
    shingle_unit: ShingleUnit
    shingle_size: int
    drop_stopwords: bool
    core_rules: int
    threshold: float
    cluster_threshold: float | None

    @classmethod
    def of(cls, parameters: MinHashParameters) -> MinHashProfile:
        return cls(
            num_perm=parameters.num_perm,
            shingle_unit=parameters.shingle_unit,
            shingle_size=parameters.shingle_size,
            drop_stopwords=parameters.drop_stopwords,
            core_rules=parameters.core_rules,
            threshold=parameters.threshold,
            cluster_threshold=parameters.cluster_threshold,
        )


RECOMMENDED_MINHASH = MinHashProfile(
    num_perm=128,
    shingle_unit="word",
    shingle_size=1,
    drop_stopwords=True,
    core_rules=2,
    threshold=0.25,
    cluster_threshold=0.5,
)
"""New families' defaults, chosen with the rewording benchmark (``bench/rewording_bench.py``,
docs/decisions/0006-rewording-robust-campaigns.md): word 1-shingles without stopwords, cores
without a member's shared boilerplate, campaigns from Jaccard 0.25 and 8 shared words, members'
own clusters from Jaccard 0.5 of word 3-shingles."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Policy:
    quorum: int = DEFAULT_QUORUM
    retention_days: int = DEFAULT_RETENTION_DAYS
    reveal_members: bool = DEFAULT_REVEAL_MEMBERS


def _or(given: _T | None, fallback: _T) -> _T:
    return fallback if given is None else given


def _policy(
    current: KindParameters | MinHashParameters | None,
    quorum: int | None,
    retention_days: int | None,
    reveal_members: bool | None,
) -> _Policy:
    """The given options, else the stored ones, else the defaults."""
    base = (
        _Policy()
        if current is None
        else _Policy(current.quorum, current.retention_days, current.reveal_members)
    )
    return _Policy(
        quorum=_or(quorum, base.quorum),
        retention_days=_or(retention_days, base.retention_days),
        reveal_members=_or(reveal_members, base.reveal_members),
    )


def _validated(build: Callable[[], _T]) -> _T:
    """``build()``, with the sketch core's :class:`ParameterError` as an invalid argument."""
    try:
        return build()
    except ParameterError as exc:
        raise InvalidArgumentError(str(exc)) from exc


def kind_public_values(parameters: KindParameters) -> dict[str, Any]:
    """Everything published about a kind, as plain JSON values (audit details, listings)."""
    return {
        "key_id": parameters.key_id,
        "capacity": parameters.capacity,
        "forum_fpr": parameters.forum_fpr,
        "max_members": parameters.max_members,
        "target_fpr": parameters.target_fpr,
        "m": parameters.m,
        "k": parameters.k,
        "quorum": parameters.quorum,
        "retention_days": parameters.retention_days,
        "reveal_members": parameters.reveal_members,
        "replace_interval_seconds": parameters.replace_interval_seconds,
        "digest": parameters.digest().hex(),
    }


def minhash_public_values(parameters: MinHashParameters) -> dict[str, Any]:
    """Everything published about a MinHash family, as plain JSON values."""
    banding = parameters.banding()
    return {
        "key_id": parameters.key_id,
        "num_perm": parameters.num_perm,
        "shingle_unit": parameters.shingle_unit,
        "shingle_size": parameters.shingle_size,
        "drop_stopwords": parameters.drop_stopwords,
        "core_rules": parameters.core_rules,
        "threshold": parameters.threshold,
        "cluster_threshold": parameters.member_threshold,
        "bands": banding.bands,
        "rows": banding.rows,
        "quorum": parameters.quorum,
        "retention_days": parameters.retention_days,
        "reveal_members": parameters.reveal_members,
        "digest": parameters.digest().hex(),
    }


def invalidates_sketches(
    before: KindParameters | MinHashParameters | None,
    after: KindParameters | MinHashParameters,
) -> bool:
    """Whether members' sketches made under ``before`` no longer combine with ``after``.

    The digest covers exactly what sketches must agree on (key epoch, ``m``, ``k`` and capacity;
    or ``P`` and the shingling rules), so comparing digests catches every such change and none
    of the policy-only ones (quorum, retention, reveal, MinHash threshold).
    """
    return before is not None and before.digest() != after.digest()


def kind_parameters(session: Session, kind: str) -> KindParameters | None:
    """The stored parameters of ``kind``, or ``None`` if it has none yet."""
    return ParameterRepository(session).get_kind(kind)


def minhash_parameters(session: Session, family: str) -> MinHashParameters | None:
    """The stored parameters of MinHash family ``family``, or ``None``."""
    return ParameterRepository(session).get_minhash_family(family)


def set_kind_parameters(
    session: Session,
    *,
    actor: str,
    kind: str,
    key_id: str,
    capacity: int,
    forum_fpr: float,
    max_members: int | None = None,
    quorum: int | None = None,
    retention_days: int | None = None,
    reveal_members: bool | None = None,
    replace_interval_seconds: int | None = None,
    now: datetime,
) -> KindParameters:
    """Publish Bloom parameters for ``kind``: ``m`` and ``k`` sized for ``capacity`` items at
    the per-filter rate ``forum_fpr / (max_members − 1)``. Options left out keep their stored
    value, else the defaults (32 members, one replacement per hour).
    :class:`InvalidArgumentError` for an unregistered kind or invalid values."""
    if kind not in KIND_TYPES:
        raise InvalidArgumentError(f"unknown kind {kind!r}; known kinds: {', '.join(KIND_NAMES)}")
    repository = ParameterRepository(session)
    current = repository.get_kind(kind)
    policy = _policy(current, quorum, retention_days, reveal_members)
    parameters = _validated(
        lambda: KindParameters.for_forum(
            kind=kind,
            key_id=key_id,
            capacity=capacity,
            forum_fpr=forum_fpr,
            max_members=_or(
                max_members, DEFAULT_MAX_MEMBERS if current is None else current.max_members
            ),
            updated_at=now,
            quorum=policy.quorum,
            retention_days=policy.retention_days,
            reveal_members=policy.reveal_members,
            replace_interval_seconds=_or(
                replace_interval_seconds,
                DEFAULT_REPLACE_INTERVAL_SECONDS
                if current is None
                else current.replace_interval_seconds,
            ),
        )
    )
    stored = repository.set_kind(parameters)
    AuditRepository(session).append(actor, "params.set", kind, kind_public_values(stored), at=now)
    return stored


def set_minhash_parameters(
    session: Session,
    *,
    actor: str,
    family: str,
    key_id: str | None = None,
    threshold: float | None = None,
    num_perm: int | None = None,
    shingle_unit: ShingleUnit | None = None,
    shingle_size: int | None = None,
    drop_stopwords: bool | None = None,
    core_rules: int | None = None,
    cluster_threshold: float | None = None,
    quorum: int | None = None,
    retention_days: int | None = None,
    reveal_members: bool | None = None,
    profile: MinHashProfile | None = None,
    now: datetime,
) -> MinHashParameters:
    """Publish MinHash parameters for fingerprint family ``family``.

    Options left out keep their stored value, else :data:`RECOMMENDED_MINHASH`; ``profile``
    replaces every signature and matching option at once (``upgrade``: the recommended one).
    The key id is required for a new family."""
    repository = ParameterRepository(session)
    current = repository.get_minhash_family(family)
    policy = _policy(current, quorum, retention_days, reveal_members)
    base = profile or (RECOMMENDED_MINHASH if current is None else MinHashProfile.of(current))
    if key_id is None:
        if current is None:
            raise InvalidArgumentError(f"MinHash family {family!r} is new: give its key id")
        key_id = current.key_id
    if shingle_unit == "char" and drop_stopwords is None:
        drop_stopwords = False  # stopwords are words: character shingles keep every character
    parameters = _validated(
        lambda: MinHashParameters(
            family=family,
            key_id=key_id,
            num_perm=_or(num_perm, base.num_perm),
            shingle_unit=_or(shingle_unit, base.shingle_unit),
            shingle_size=_or(shingle_size, base.shingle_size),
            drop_stopwords=_or(drop_stopwords, base.drop_stopwords),
            core_rules=_or(core_rules, base.core_rules),
            threshold=_or(threshold, base.threshold),
            cluster_threshold=_or(cluster_threshold, base.cluster_threshold),
            quorum=policy.quorum,
            retention_days=policy.retention_days,
            reveal_members=policy.reveal_members,
            updated_at=now,
        )
    )
    stored = repository.set_minhash_family(parameters)
    AuditRepository(session).append(
        actor,
        "params.set",
        minhash_family_kind(stored.family),
        minhash_public_values(stored),
        at=now,
    )
    return stored


def list_parameters(session: Session) -> tuple[list[KindParameters], list[MinHashParameters]]:
    """Every kind's and every MinHash family's parameters, each by name."""
    repository = ParameterRepository(session)
    return repository.list_kinds(), repository.list_minhash_families()


@dataclass(frozen=True, slots=True)
class FalseSharedRate:
    """How often a value no other member holds is reported as held by others, for one kind."""

    kind: str
    filters: int
    """Active filters of live members."""
    members: int
    """Registered members whose credential is not revoked."""
    max_members: int
    forum_fpr: float
    """The published rate (at capacity with ``max_members`` members)."""
    current: float
    """The worst member's expected rate with the filters' current fills (0 without filters)."""
    at_capacity: float
    """The rate if every registered member's filter were full: the published bound while
    ``members ≤ max_members``."""

    @property
    def over_forum_size(self) -> bool:
        return self.members > self.max_members

    @property
    def over_published_rate(self) -> bool:
        """Whether full filters of every member would exceed the published rate (with quorum
        above 2 a forum can outgrow ``max_members`` and still stay below it)."""
        return self.at_capacity > self.forum_fpr


def false_shared_rates(session: Session, now: datetime) -> list[FalseSharedRate]:
    """Per kind: the expected false-shared rate now, and at capacity with every member.

    A value no other member holds is reported as shared when at least ``quorum − 1`` other
    members' filters each give a false positive; member ``j``'s filter does so with probability
    ``fill_j^k``.
    """
    members = sum(
        1
        for principal in PrincipalRepository(session).list()
        if principal.role is Role.MEMBER and principal.is_active(now)
    )
    submissions = SubmissionRepository(session)
    rates = []
    for params in ParameterRepository(session).list_kinds():
        bloom = params.bloom_params()
        digest = params.digest()
        fprs = [
            bloom.fpr_at_fill(s.set_bits / params.m)
            for s in submissions.active_of_live_members(params.kind, params.key_id, now)
            if s.set_bits is not None and s.params_digest == digest
        ]
        needed = params.quorum - 1
        current = max(
            (false_shared_probability(fprs[:i] + fprs[i + 1 :], needed) for i in range(len(fprs))),
            default=0.0,
        )
        at_capacity = false_shared_probability([params.target_fpr] * max(members - 1, 0), needed)
        rates.append(
            FalseSharedRate(
                kind=params.kind,
                filters=len(fprs),
                members=members,
                max_members=params.max_members,
                forum_fpr=params.forum_fpr,
                current=current,
                at_capacity=at_capacity,
            )
        )
    return rates
