"""Keys and sealed envelopes for hub tests: deterministic member keys, their registration and
approval through the hub's services, and one genuine envelope per recipient of a rotation.

Every private key is derived from the principal's name and a generation number, so runs are
reproducible and a test can give a principal new keys by raising the generation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Engine

from sigshare.hub.domain import KeyRegistration, Role
from sigshare.hub.services import keyring, principals
from sigshare.hub.services.keyring import EnvelopeUpload, KeyApproval, RegistrationOutcome
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.keyring import (
    MemberKeys,
    SealingKey,
    SigningKey,
    registration_proof,
    seal_envelope,
)
from sigshare.sketch.keys import ForumSecret

SETUP_ACTOR = "cli:setup"


def keys_of(name: str, generation: int = 0) -> MemberKeys:
    """``name``'s key pairs of ``generation``, the same on every run."""

    def seed(purpose: str) -> bytes:
        return hashlib.sha256(f"{name}/{generation}/{purpose}".encode()).digest()

    return MemberKeys(
        sealing=SealingKey(seed=seed("sealing")), signing=SigningKey(seed=seed("signing"))
    )


def secret_of(key_id: str) -> ForumSecret:
    """The forum secret of ``key_id`` a test custodian distributes."""
    return ForumSecret(key_id=key_id, secret=hashlib.sha256(f"secret/{key_id}".encode()).digest())


def add_principals(engine: Engine, roles: Mapping[str, Role], now: datetime) -> dict[str, str]:
    """Add each principal with its role; their bearer credentials by name."""
    credentials: dict[str, str] = {}
    with session_scope(engine) as session:
        for name, role in roles.items():
            _, credential = principals.add_principal(
                session, actor=SETUP_ACTOR, name=name, role=role, now=now
            )
            credentials[name] = credential.token
    return credentials


def register(
    engine: Engine, name: str, now: datetime, *, keys: MemberKeys | None = None
) -> RegistrationOutcome:
    """Register ``keys`` (default: :func:`keys_of` ``name``) as ``name`` would, with its proof."""
    keys = keys or keys_of(name)
    with session_scope(engine) as session:
        principal = PrincipalRepository(session).get_by_name(name)
        assert principal is not None, name
        return keyring.register_keys(
            session,
            principal=principal,
            sealing_public=keys.sealing_public,
            signing_public=keys.signing_public,
            proof=registration_proof(name, keys),
            now=now,
        )


def approve(engine: Engine, name: str, fingerprint: str, now: datetime) -> KeyApproval:
    with session_scope(engine) as session:
        return keyring.approve_keys(
            session, actor=SETUP_ACTOR, name=name, fingerprint=fingerprint, now=now
        )


def register_and_approve(
    engine: Engine, names: Sequence[str], now: datetime, *, generation: int = 0
) -> dict[str, MemberKeys]:
    """Register and approve :func:`keys_of` each name; the keys by name."""
    keys = {name: keys_of(name, generation) for name in names}
    for name, own in keys.items():
        register(engine, name, now, keys=own)
        approve(engine, name, own.fingerprint, now)
    return keys


def sealed(
    recipients: Sequence[KeyRegistration],
    *,
    key_id: str,
    custodian: str,
    created_at: datetime,
    activate_at: datetime | None = None,
    custodian_keys: MemberKeys | None = None,
) -> list[EnvelopeUpload]:
    """One genuine envelope of :func:`secret_of` ``key_id`` per recipient, as the custodian's
    client seals them, labelled as its upload labels them."""
    signer = custodian_keys or keys_of(custodian)
    return [
        EnvelopeUpload(
            key_id=key_id,
            recipient=recipient.principal,
            custodian=custodian,
            recipient_fingerprint=recipient.fingerprint,
            envelope=seal_envelope(
                secret_of(key_id),
                recipient=recipient.principal,
                recipient_sealing_public=recipient.sealing_public,
                recipient_signing_public=recipient.signing_public,
                custodian=custodian,
                custodian_keys=signer,
                created_at=created_at,
                activate_at=activate_at,
            ),
        )
        for recipient in recipients
    ]
