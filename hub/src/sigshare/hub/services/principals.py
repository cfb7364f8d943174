"""Principals: register, list, rotate, revoke, and authenticate a bearer credential.

A credential's secret exists in plain only in the value :func:`add_principal` or
:func:`rotate_principal` returns, for the caller to show its owner once; the database, the audit
log and any log line see the hash or nothing. Authentication reads the principal on every call,
so a rotation or a revocation takes effect at once.

Revoking a member also withdraws its submissions, in the same transaction: every aggregate
(resolutions, overlap matrices, campaigns, counts of members with filters) is computed from
active submissions only, so none of them counts the member from the commit on, and the
campaigns of the families it had clusters in are recomputed by their next reader.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from sigshare.hub.domain import Principal, Role, Submission, SubmissionStatus
from sigshare.hub.services.credentials import (
    Credential,
    hash_secret,
    new_credential,
    parse_credential,
    secret_matches,
)
from sigshare.hub.storage.aggregates import FamilyRepository
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.indicators import IndicatorRepository
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.hub.storage.web_sessions import WebSessionRepository

_UNKNOWN_ID_HASH = hash_secret(secrets.token_urlsafe(32))
"""Compared against when a credential id is unknown, so that both outcomes cost the same."""


def add_principal(
    session: Session, *, actor: str, name: str, role: Role, now: datetime
) -> tuple[Principal, Credential]:
    """Register ``name`` with a fresh credential; the caller hands ``credential.token`` over once.

    :class:`AlreadyExistsError` if the name is taken, :class:`InvalidArgumentError` if it or the
    role is malformed. The audit entry records the role only, never any part of the credential.
    """
    credential = new_credential()
    principal = PrincipalRepository(session).add(
        name, role, credential.credential_id, credential.secret_hash, created_at=now
    )
    AuditRepository(session).append(
        actor, "principal.add", principal.name, {"role": principal.role.value}, at=now
    )
    return principal, credential


def list_principals(session: Session) -> list[Principal]:
    """Every principal by name, revoked ones included (the caller decides what to show)."""
    return PrincipalRepository(session).list()


def revoke_principal(session: Session, *, actor: str, name: str, now: datetime) -> Principal:
    """Revoke ``name``'s credential from ``now`` on and withdraw its active submissions;
    :class:`NotFoundError` if there is no such principal. Revoking again keeps the first
    revocation time but is audited all the same."""
    principal = PrincipalRepository(session).revoke(name, now)
    assert principal.revoked_at is not None  # revoke() sets it or raises
    withdrawn = _withdraw_submissions(session, principal, now)
    confirmations = _withdraw_confirmations(session, principal, now)
    AuditRepository(session).append(
        actor,
        "principal.revoke",
        principal.name,
        {
            "role": principal.role.value,
            "revoked_at": principal.revoked_at.isoformat(),
            "withdrawn_submissions": [s.id for s in withdrawn],
            "withdrawn_confirmations": confirmations,
        },
        at=now,
    )
    return principal


def _withdraw_confirmations(session: Session, principal: Principal, now: datetime) -> int:
    """Delete the revoked ``principal``'s confirmations and recount the shared indicators they
    were part of: it is no longer among their reporters (names and counts), and a token it
    took below its kind's quorum keeps its record (and review history) with the count it has
    now. The kinds are locked in name order first, as confirming locks its kind."""
    indicators = IndicatorRepository(session)
    for kind in indicators.confirmed_kinds(principal.id):
        indicators.lock_kind(kind)
    withdrawn = indicators.withdraw_confirmations(principal.id)
    kinds = ParameterRepository(session)
    for (kind, key_id), tokens in sorted(withdrawn.items()):
        params = kinds.get_kind(kind)
        # A kind no longer published gets no new records, only recounts.
        quorum = params.quorum if params is not None else sys.maxsize
        indicators.refresh_shared(kind=kind, key_id=key_id, tokens=tokens, quorum=quorum, at=now)
    return sum(len(tokens) for tokens in withdrawn.values())


def _withdraw_submissions(
    session: Session, principal: Principal, now: datetime
) -> list[Submission]:
    """End every active (and pending) submission of the revoked ``principal`` as withdrawn
    (payloads and clusters dropped) and move each family whose answers it counted in to a new
    version.

    The principal row is updated first: on PostgreSQL that waits for any submission of the
    member in flight (each holds a share lock on the row, see ``_store``) and makes later ones
    see the revocation, so the list read next is complete. The families are then locked in name
    order (one active submission per family, listed by family).
    """
    submissions = SubmissionRepository(session)
    families = FamilyRepository(session)
    withdrawn = submissions.of_member(principal.id)
    for submission in withdrawn:
        submissions.lock_family(submission.family_kind)
        submissions.end(submission.id, SubmissionStatus.WITHDRAWN, now)
        if submission.status is SubmissionStatus.ACTIVE:  # a pending one counted nowhere
            families.record_change(submission.family_kind, at=now)
    return withdrawn


def rotate_principal(
    session: Session, *, actor: str, name: str, now: datetime
) -> tuple[Principal, Credential]:
    """Give ``name`` a fresh credential; the old one is refused from the commit on and the
    principal's console sessions end. The caller hands ``credential.token`` over once.

    :class:`NotFoundError` for an unknown name, :class:`PreconditionError` for a revoked
    principal; either changes nothing. The audit entry records the role only, never any part
    of either credential.
    """
    credential = new_credential()
    principal = PrincipalRepository(session).rotate(
        name, credential.credential_id, credential.secret_hash
    )
    ended = WebSessionRepository(session).end_all_of(principal.id, now)
    AuditRepository(session).append(
        actor,
        "principal.rotate",
        principal.name,
        {"role": principal.role.value, "web_sessions_ended": ended},
        at=now,
    )
    return principal, credential


MAX_AUDITED_IDENTITIES = 8
MAX_AUDITED_IDENTITY_LENGTH = 200


def record_certificate_mismatch(
    session: Session, principal: Principal, identities: Sequence[str], now: datetime
) -> None:
    """Audit a valid credential of ``principal`` presented over a client certificate that may
    not carry it (mTLS): the certificate's identities, bounded, and never the credential."""
    AuditRepository(session).append(
        principal.name,
        "rpc.certificate_refused",
        principal.name,
        {
            "certificate": [
                identity[:MAX_AUDITED_IDENTITY_LENGTH]
                for identity in identities[:MAX_AUDITED_IDENTITIES]
            ]
        },
        at=now,
    )


def authenticate(session: Session, bearer: str, now: datetime) -> Principal | None:
    """The active principal holding ``bearer``, or ``None`` — for a malformed, unknown, wrong or
    revoked credential alike, so callers cannot tell (and cannot leak) which it was.

    The secret is compared in constant time even when the id is unknown, so the response time
    does not reveal which credential ids exist.
    """
    presented = parse_credential(bearer)
    if presented is None:
        return None
    principal = PrincipalRepository(session).get_by_credential_id(presented.credential_id)
    stored_hash = _UNKNOWN_ID_HASH if principal is None else principal.credential_hash
    matches = secret_matches(presented.secret, stored_hash)
    if principal is None or not matches or not principal.is_active(now):
        return None
    return principal
