"""Principals and submissions written straight through the storage repositories, at fixed
times and with digests derived from labels, for tests of storage itself."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from sigshare.hub.domain import Principal, Role, Submission
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
"""When every row is created unless a test says otherwise."""
RETENTION = timedelta(days=30)


def label_digest(label: str) -> bytes:
    """The SHA-256 of ``label``: a stand-in for a credential, parameter or content digest."""
    return hashlib.sha256(label.encode()).digest()


def add_member(session: Session, name: str, role: Role = Role.MEMBER) -> Principal:
    credential_id = hashlib.sha256(name.encode()).hexdigest()[:24]
    return PrincipalRepository(session).add(
        name, role, credential_id, label_digest(f"secret of {name}"), created_at=T0
    )


def add_submission(
    session: Session,
    member: Principal,
    content: str,
    *,
    family_kind: str = "email",
    key_id: str = "epoch-1",
    created_at: datetime = T0,
    payload: bytes | None = None,
    params: str = "params",
) -> Submission:
    """A submission of ``member`` whose content digest is that of ``content`` (and whose payload
    is ``content`` itself unless ``payload`` is given), expiring after :data:`RETENTION`."""
    return SubmissionRepository(session).add(
        member_id=member.id,
        family_kind=family_kind,
        key_id=key_id,
        params_digest=label_digest(params),
        content_sha256=label_digest(content),
        declared_count=1000,
        set_bits=6500,
        payload=payload if payload is not None else content.encode(),
        created_at=created_at,
        expires_at=created_at + RETENTION,
    )
