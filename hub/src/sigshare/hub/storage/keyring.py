"""Sealed distribution of the forum secret: all SQL of ``member_keys`` (principals' registered
public keys), ``key_rotations``, ``key_envelopes`` (opaque envelopes and their pickups) and
``rotation_requests``, and the lock their writers take.

The hub stores envelopes as it received them and never parses them here; the service checks
an upload before it reaches :meth:`KeyringRepository.add_rotation`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    EnvelopePickup,
    KeyRegistration,
    Role,
    Rotation,
    RotationRequest,
    StoredEnvelope,
    utc,
)
from sigshare.hub.errors import AlreadyExistsError, ConflictError
from sigshare.hub.storage._sql import backend, chunks
from sigshare.hub.storage.models import (
    KeyEnvelopeRow,
    KeyRotationRow,
    MemberKeyRow,
    PrincipalRow,
    RotationRequestRow,
)
from sigshare.hub.storage.principals import active_at

KEYRING_LOCK = "sigshare/keyring"
"""Advisory lock (PostgreSQL) held by every writer of registrations and rotations."""


def _registration(row: MemberKeyRow, principal: str) -> KeyRegistration:
    return KeyRegistration(
        id=row.id,
        principal_id=row.principal_id,
        principal=principal,
        sealing_public=row.sealing_public,
        signing_public=row.signing_public,
        fingerprint=row.fingerprint,
        registered_at=row.registered_at,
        approved_at=row.approved_at,
        approved_by=row.approved_by,
        retired_at=row.retired_at,
    )


def _rotation(row: KeyRotationRow, custodian: str) -> Rotation:
    return Rotation(
        key_id=row.key_id,
        custodian=custodian,
        created_at=row.created_at,
        activate_at=row.activate_at,
        recipients=row.recipients,
        total_bytes=row.total_bytes,
    )


def _request(row: RotationRequestRow) -> RotationRequest:
    return RotationRequest(
        id=row.id,
        reason=row.reason,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        satisfied_by=row.satisfied_by,
    )


def _in_use() -> ColumnElement[bool]:
    """Approved registrations not retired: the keys a principal uses now."""
    return and_(MemberKeyRow.approved_at.is_not(None), MemberKeyRow.retired_at.is_(None))


class KeyringRepository:
    """Registrations, rotations, envelopes and rotation requests."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def lock(self) -> None:
        """Serialise writers of registrations and rotations until the transaction ends.

        An upload checks that it covers exactly the current recipients, then stores: an approval
        committed in between would leave the new recipient without an envelope. On PostgreSQL
        this is a transaction-scoped advisory lock; SQLite's ``BEGIN IMMEDIATE`` already
        serialises every writer.
        """
        if backend(self._session) == "postgresql":
            self._session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": KEYRING_LOCK}
            )

    # ------------------------------------------------------------------------ registrations

    def registration(self, principal_id: int, fingerprint: str) -> KeyRegistration | None:
        """``principal_id``'s registration with ``fingerprint``, in any state."""
        found = self._registrations(
            MemberKeyRow.principal_id == principal_id, MemberKeyRow.fingerprint == fingerprint
        )
        return found[0] if found else None

    def registrations(self, principal_id: int) -> list[KeyRegistration]:
        """Every registration of ``principal_id``, oldest first."""
        return self._registrations(MemberKeyRow.principal_id == principal_id)

    def approved(self, principal_id: int) -> KeyRegistration | None:
        """The registration ``principal_id`` uses now, if an admin approved one."""
        found = self._registrations(MemberKeyRow.principal_id == principal_id, _in_use())
        return found[0] if found else None

    def pending(self, principal_id: int) -> KeyRegistration | None:
        """A registration of ``principal_id`` awaiting approval, if any."""
        found = self._registrations(
            MemberKeyRow.principal_id == principal_id,
            MemberKeyRow.approved_at.is_(None),
            MemberKeyRow.retired_at.is_(None),
        )
        return found[0] if found else None

    def add_registration(
        self,
        principal_id: int,
        *,
        sealing_public: bytes,
        signing_public: bytes,
        fingerprint: str,
        at: datetime,
    ) -> KeyRegistration:
        """A new pending registration. The caller retires an earlier pending one first:
        :class:`ConflictError` if one is still pending (a concurrent registration won)."""
        row = MemberKeyRow(
            principal_id=principal_id,
            sealing_public=sealing_public,
            signing_public=signing_public,
            fingerprint=fingerprint,
            registered_at=utc(at),
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError as exc:
            raise ConflictError(
                "another registration of the same principal was stored at the same time: retry"
            ) from exc
        principal = self._session.get_one(PrincipalRow, principal_id)
        return _registration(row, principal.name)

    def approve(self, registration_id: int, *, actor: str, at: datetime) -> None:
        """Mark a pending registration approved by ``actor`` at ``at``."""
        self._session.execute(
            update(MemberKeyRow)
            .where(MemberKeyRow.id == registration_id)
            .values(approved_at=utc(at), approved_by=actor)
        )

    def retire(self, registration_id: int, at: datetime) -> None:
        """Take a registration out of use (replaced by a newer one)."""
        self._session.execute(
            update(MemberKeyRow)
            .where(MemberKeyRow.id == registration_id, MemberKeyRow.retired_at.is_(None))
            .values(retired_at=utc(at))
        )

    def in_use(self, role: Role, at: datetime) -> list[KeyRegistration]:
        """The approved registrations of every principal of ``role`` active at ``at``, by name.

        On PostgreSQL the principals' rows are share-locked until the transaction ends, so a
        revocation committed later waits for the caller, and one committed before is seen.
        """
        statement = (
            select(MemberKeyRow, PrincipalRow.name)
            .join(PrincipalRow, PrincipalRow.id == MemberKeyRow.principal_id)
            .where(PrincipalRow.role == role.value, active_at(at), _in_use())
            .order_by(PrincipalRow.name)
        )
        if backend(self._session) == "postgresql":
            statement = statement.with_for_update(read=True, of=PrincipalRow)
        return [_registration(row, name) for row, name in self._session.execute(statement)]

    def without_keys(self, role: Role, at: datetime) -> list[str]:
        """Names of the principals of ``role`` active at ``at`` with no approved registration."""
        approved = select(MemberKeyRow.principal_id).where(_in_use())
        statement = (
            select(PrincipalRow.name)
            .where(
                PrincipalRow.role == role.value,
                active_at(at),
                PrincipalRow.id.not_in(approved),
            )
            .order_by(PrincipalRow.name)
        )
        return list(self._session.scalars(statement))

    def _registrations(self, *conditions: ColumnElement[bool]) -> list[KeyRegistration]:
        statement = (
            select(MemberKeyRow, PrincipalRow.name)
            .join(PrincipalRow, PrincipalRow.id == MemberKeyRow.principal_id)
            .where(*conditions)
            .order_by(MemberKeyRow.registered_at, MemberKeyRow.id)
        )
        return [_registration(row, name) for row, name in self._session.execute(statement)]

    # ------------------------------------------------------------------------ rotations

    def rotation(self, key_id: str) -> Rotation | None:
        found = self._rotations(KeyRotationRow.key_id == key_id)
        return found[0] if found else None

    def rotations(self) -> list[Rotation]:
        """Every rotation, newest first."""
        return self._rotations()

    def latest_rotation(self) -> Rotation | None:
        found = self._rotations(limit=1)
        return found[0] if found else None

    def add_rotation(
        self,
        *,
        key_id: str,
        custodian_id: int,
        activate_at: datetime | None,
        envelopes: Sequence[tuple[KeyRegistration, bytes]],
        at: datetime,
    ) -> Rotation:
        """Store a rotation and its envelopes, each sealed to the registration it is paired
        with. :class:`AlreadyExistsError` (nothing stored) if ``key_id`` was rotated to before."""
        moment = utc(at)
        rotation = KeyRotationRow(
            key_id=key_id,
            custodian_id=custodian_id,
            created_at=moment,
            activate_at=None if activate_at is None else utc(activate_at),
            recipients=len(envelopes),
            total_bytes=sum(len(envelope) for _, envelope in envelopes),
        )
        try:
            with self._session.begin_nested():
                self._session.add(rotation)
                self._session.flush()
        except IntegrityError as exc:  # a concurrent upload of the same key id committed first
            raise AlreadyExistsError(
                f"key id {key_id!r} was rotated to already: choose a new key id"
            ) from exc
        self._session.add_all(
            KeyEnvelopeRow(
                key_id=key_id,
                recipient_id=registration.principal_id,
                member_key_id=registration.id,
                envelope=envelope,
                byte_size=len(envelope),
                created_at=moment,
            )
            for registration, envelope in envelopes
        )
        self._session.flush()
        custodian = self._session.get_one(PrincipalRow, custodian_id)
        return _rotation(rotation, custodian.name)

    def _rotations(
        self, *conditions: ColumnElement[bool], limit: int | None = None
    ) -> list[Rotation]:
        statement = (
            select(KeyRotationRow, PrincipalRow.name)
            .join(PrincipalRow, PrincipalRow.id == KeyRotationRow.custodian_id)
            .where(*conditions)
            .order_by(KeyRotationRow.created_at.desc(), KeyRotationRow.key_id.desc())
            .limit(limit)
        )
        return [_rotation(row, name) for row, name in self._session.execute(statement)]

    # ------------------------------------------------------------------------ envelopes

    def envelopes_for(self, recipient_id: int) -> list[StoredEnvelope]:
        """Every envelope addressed to ``recipient_id``, oldest rotation first."""
        custodian = PrincipalRow.__table__.alias("custodian")
        recipient = PrincipalRow.__table__.alias("recipient")
        statement = (
            select(
                KeyEnvelopeRow,
                KeyRotationRow.activate_at,
                MemberKeyRow.fingerprint,
                recipient.c.name,
                custodian.c.name,
            )
            .join(KeyRotationRow, KeyRotationRow.key_id == KeyEnvelopeRow.key_id)
            .join(MemberKeyRow, MemberKeyRow.id == KeyEnvelopeRow.member_key_id)
            .join(recipient, recipient.c.id == KeyEnvelopeRow.recipient_id)
            .join(custodian, custodian.c.id == KeyRotationRow.custodian_id)
            .where(KeyEnvelopeRow.recipient_id == recipient_id)
            .order_by(KeyRotationRow.created_at, KeyEnvelopeRow.id)
        )
        return [
            StoredEnvelope(
                id=row.id,
                key_id=row.key_id,
                recipient=recipient_name,
                custodian=custodian_name,
                recipient_fingerprint=fingerprint,
                envelope=row.envelope,
                created_at=row.created_at,
                activate_at=activate_at,
                first_fetched_at=row.first_fetched_at,
                last_fetched_at=row.last_fetched_at,
            )
            for row, activate_at, fingerprint, recipient_name, custodian_name in (
                self._session.execute(statement)
            )
        ]

    def waiting(self, recipient_id: int) -> int:
        """How many envelopes addressed to ``recipient_id`` it has never fetched."""
        return int(
            self._session.scalar(
                select(func.count()).where(
                    KeyEnvelopeRow.recipient_id == recipient_id,
                    KeyEnvelopeRow.first_fetched_at.is_(None),
                )
            )
            or 0
        )

    def mark_fetched(self, envelope_ids: Sequence[int], at: datetime) -> list[str]:
        """Record a fetch of the envelopes ``envelope_ids`` at ``at``; the key ids of those
        fetched for the first time (decided by one conditional update, so two concurrent
        fetches cannot both claim the first)."""
        moment = utc(at)
        first: list[str] = []
        for part in chunks(envelope_ids):
            first += self._session.scalars(
                update(KeyEnvelopeRow)
                .where(KeyEnvelopeRow.id.in_(part), KeyEnvelopeRow.first_fetched_at.is_(None))
                .values(first_fetched_at=moment)
                .returning(KeyEnvelopeRow.key_id)
            ).all()
            self._session.execute(
                update(KeyEnvelopeRow)
                .where(KeyEnvelopeRow.id.in_(part))
                .values(last_fetched_at=moment)
            )
        return sorted(first)

    def pickups(self, key_id: str) -> list[EnvelopePickup]:
        """Each recipient's envelope of ``key_id`` and whether it was fetched, by name."""
        return self._pickups(KeyEnvelopeRow.key_id == key_id)

    def pickup(self, key_id: str, recipient_id: int) -> EnvelopePickup | None:
        found = self._pickups(
            KeyEnvelopeRow.key_id == key_id, KeyEnvelopeRow.recipient_id == recipient_id
        )
        return found[0] if found else None

    def fetched_counts(self) -> dict[str, int]:
        """Per key id: how many of its recipients fetched their envelope at least once."""
        statement = (
            select(KeyEnvelopeRow.key_id, func.count())
            .where(KeyEnvelopeRow.first_fetched_at.is_not(None))
            .group_by(KeyEnvelopeRow.key_id)
        )
        return {key_id: int(count) for key_id, count in self._session.execute(statement)}

    def _pickups(self, *conditions: ColumnElement[bool]) -> list[EnvelopePickup]:
        statement = (
            select(
                KeyEnvelopeRow.key_id,
                PrincipalRow.name,
                MemberKeyRow.fingerprint,
                KeyEnvelopeRow.byte_size,
                KeyEnvelopeRow.first_fetched_at,
                KeyEnvelopeRow.last_fetched_at,
            )
            .join(PrincipalRow, PrincipalRow.id == KeyEnvelopeRow.recipient_id)
            .join(MemberKeyRow, MemberKeyRow.id == KeyEnvelopeRow.member_key_id)
            .where(*conditions)
            .order_by(PrincipalRow.name)
        )
        return [
            EnvelopePickup(
                key_id=key_id,
                recipient=name,
                recipient_fingerprint=fingerprint,
                byte_size=size,
                first_fetched_at=first,
                last_fetched_at=last,
            )
            for key_id, name, fingerprint, size, first, last in self._session.execute(statement)
        ]

    # ------------------------------------------------------------------------ rotation requests

    def add_request(self, *, reason: str, requested_by: str, at: datetime) -> RotationRequest:
        row = RotationRequestRow(reason=reason, requested_by=requested_by, requested_at=utc(at))
        self._session.add(row)
        self._session.flush()
        return _request(row)

    def open_requests(self) -> list[RotationRequest]:
        """Reasons a rotation is due, oldest first."""
        statement = (
            select(RotationRequestRow)
            .where(RotationRequestRow.satisfied_by.is_(None))
            .order_by(RotationRequestRow.requested_at, RotationRequestRow.id)
        )
        return [_request(row) for row in self._session.scalars(statement)]

    def satisfy_requests(self, key_id: str) -> list[RotationRequest]:
        """Mark every open request satisfied by the rotation to ``key_id``; those requests."""
        due = self.open_requests()
        if due:
            self._session.execute(
                update(RotationRequestRow)
                .where(RotationRequestRow.id.in_([request.id for request in due]))
                .values(satisfied_by=key_id)
            )
        return [dataclasses.replace(request, satisfied_by=key_id) for request in due]
