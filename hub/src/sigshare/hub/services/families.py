"""Keeping a kind's or family's derived state in step with its active submissions.

Every operation that changes a family first calls :func:`prepare`, under the family's lock:
submissions past their retention window expire, submissions made under parameters that are no
longer published retire, and a family whose parameters changed starts afresh. Readers first ask
:func:`is_prepared`, which takes no lock, and prepare only when something is due — so answers
run in parallel on every replica while nothing changes. Campaigns, derived from a family's
clusters, are kept by :mod:`sigshare.hub.services.campaigns`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    FamilyState,
    KindParameters,
    MinHashParameters,
    SubmissionStatus,
)
from sigshare.hub.storage.aggregates import FamilyRepository
from sigshare.hub.storage.submissions import SubmissionRepository

Parameters = KindParameters | MinHashParameters


def _identity(params: Parameters) -> tuple[str, str, bytes, int | None]:
    if isinstance(params, KindParameters):
        return params.kind, params.key_id, params.bloom_params().digest(), params.m
    return params.family_kind, params.key_id, params.minhash_params().digest(), None


def is_prepared(session: Session, params: Parameters, now: datetime) -> bool:
    """Whether :func:`prepare` would change nothing (no lock taken: a hint for readers, who
    prepare under the lock when it says no)."""
    family_kind, key_id, digest, _ = _identity(params)
    state = FamilyRepository(session).get(family_kind)
    if state is None or state.params_digest != digest or state.key_id != key_id:
        return False
    return not SubmissionRepository(session).any_due(family_kind, key_id, digest, now)


def prepare(session: Session, params: Parameters, now: datetime) -> FamilyState:
    """Expire and retire what is due, reset the family if its parameters changed.

    The caller holds the family's exclusive lock (``SubmissionRepository.lock_family``).
    """
    family_kind, key_id, digest, m = _identity(params)
    submissions = SubmissionRepository(session)
    families = FamilyRepository(session)
    state = families.get(family_kind)
    changed = state is None or state.params_digest != digest or state.key_id != key_id
    if state is None or changed:
        state = families.reset(family_kind, key_id=key_id, params_digest=digest, m=m, at=now)
    due = submissions.due(family_kind, key_id, digest, now)
    for submission in due:
        submissions.end(submission.id, SubmissionStatus.EXPIRED, now)
    promoted = _promote_pending(submissions, family_kind, key_id, digest, now) if changed else 0
    if due or promoted:
        state = families.record_change(family_kind, at=now)
    return state


def _promote_pending(
    submissions: SubmissionRepository, family_kind: str, key_id: str, digest: bytes, now: datetime
) -> int:
    """Make the pending submissions made under the newly published ``(key_id, digest)`` their
    members' active ones, so that a key-epoch switch finds every member that sent ahead already
    in place; end the others (made under other parameters, another key id, or past their
    expiry): a later rotation announces its own epoch, and members send ahead again. Returns
    how many became active."""
    promoted = 0
    for pending in submissions.pending(family_kind):
        usable = (
            pending.key_id == key_id
            and pending.params_digest == digest
            and pending.expires_at > now
        )
        if usable and submissions.active_of(pending.member_id, family_kind) is None:
            submissions.activate(pending.id)
            promoted += 1
        else:
            # Another sketch of the new epoch is active already, or this one no longer fits.
            submissions.end(pending.id, SubmissionStatus.EXPIRED, now)
    return promoted
