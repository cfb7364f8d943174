"""Principals (members and coordinators) and their hashed credentials: all SQL of the
``principals`` table, the rule credential ids follow, and the row-to-domain conversion every
repository reading principals uses.
"""

from __future__ import annotations

import builtins
import re
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Select, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sigshare.hub.domain import NAME_RULE, Principal, Role, is_valid_name, utc
from sigshare.hub.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionError,
)
from sigshare.hub.storage._sql import backend, require_sha256
from sigshare.hub.storage.models import PrincipalRow

CREDENTIAL_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,32}")
CREDENTIAL_ID_RULE = "16-32 characters of A-Z, a-z, 0-9, '_' or '-'"


def principal_from_row(row: PrincipalRow) -> Principal:
    """The domain principal of a ``principals`` row."""
    return Principal(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        credential_id=row.credential_id,
        credential_hash=row.credential_hash,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def active_at(at: datetime) -> ColumnElement[bool]:
    """The SQL form of :meth:`Principal.is_active`: principals whose credential is valid at
    ``at`` (a revocation takes effect at its time), for queries that join ``principals``."""
    return or_(PrincipalRow.revoked_at.is_(None), PrincipalRow.revoked_at > utc(at))


class PrincipalRepository:
    """Principals and their hashed credentials. The repository never sees a plaintext secret."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(
        self,
        name: str,
        role: Role,
        credential_id: str,
        credential_hash: bytes,
        *,
        created_at: datetime | None = None,
    ) -> Principal:
        """Register a principal; :class:`AlreadyExistsError` if its name or credential is taken."""
        if not is_valid_name(name):
            raise InvalidArgumentError(f"principal name {name!r} is invalid: use {NAME_RULE}")
        try:
            role = Role(role)
        except ValueError:
            roles = ", ".join(Role)
            raise InvalidArgumentError(f"unknown role {role!r}; roles: {roles}") from None
        if not isinstance(credential_id, str) or not CREDENTIAL_ID_PATTERN.fullmatch(credential_id):
            raise InvalidArgumentError(f"credential id must be {CREDENTIAL_ID_RULE}")
        require_sha256("credential hash", credential_hash)
        if self.get_by_name(name) is not None:
            raise AlreadyExistsError(f"principal {name!r} already exists")
        if self.get_by_credential_id(credential_id) is not None:
            raise AlreadyExistsError("that credential id is already in use")
        row = PrincipalRow(
            name=name,
            role=role.value,
            credential_id=credential_id,
            credential_hash=credential_hash,
            created_at=utc(created_at) if created_at is not None else datetime.now(UTC),
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError as exc:  # a concurrent transaction registered it first
            raise AlreadyExistsError(f"principal {name!r} or its credential id exists") from exc
        return principal_from_row(row)

    def get_by_name(self, name: str) -> Principal | None:
        row = self._one(select(PrincipalRow).where(PrincipalRow.name == name))
        return None if row is None else principal_from_row(row)

    def get_by_credential_id(self, credential_id: str) -> Principal | None:
        """The principal holding ``credential_id``, revoked or not: the caller decides."""
        row = self._one(select(PrincipalRow).where(PrincipalRow.credential_id == credential_id))
        return None if row is None else principal_from_row(row)

    def list(self) -> builtins.list[Principal]:
        """Every principal, revoked ones included, by name."""
        rows = self._session.scalars(select(PrincipalRow).order_by(PrincipalRow.name))
        return [principal_from_row(row) for row in rows]

    def revoke(self, name: str, at: datetime) -> Principal:
        """Revoke ``name``'s credential from ``at`` on. Revoking again keeps the first time."""
        # One conditional UPDATE, so two concurrent revocations cannot overwrite each other.
        self._session.execute(
            update(PrincipalRow)
            .where(PrincipalRow.name == name, PrincipalRow.revoked_at.is_(None))
            .values(revoked_at=utc(at))
        )
        principal = self.get_by_name(name)
        if principal is None:
            raise NotFoundError("principal", name)
        return principal

    def rotate(self, name: str, credential_id: str, credential_hash: bytes) -> Principal:
        """Replace the credential of ``name``, which must not be revoked: the old one matches
        nothing from this statement on. :class:`NotFoundError` for an unknown name,
        :class:`PreconditionError` for a revoked principal (both change nothing)."""
        if not isinstance(credential_id, str) or not CREDENTIAL_ID_PATTERN.fullmatch(credential_id):
            raise InvalidArgumentError(f"credential id must be {CREDENTIAL_ID_RULE}")
        require_sha256("credential hash", credential_hash)
        if self.get_by_credential_id(credential_id) is not None:
            raise AlreadyExistsError("that credential id is already in use")
        try:
            with self._session.begin_nested():
                # Conditional, so a revocation committed first is never undone by a rotation.
                result = self._session.execute(
                    update(PrincipalRow)
                    .where(PrincipalRow.name == name, PrincipalRow.revoked_at.is_(None))
                    .values(credential_id=credential_id, credential_hash=credential_hash)
                )
        except IntegrityError as exc:  # a concurrent transaction took the credential id
            raise AlreadyExistsError("that credential id is already in use") from exc
        principal = self.get_by_name(name)
        if principal is None:
            raise NotFoundError("principal", name)
        if cast(CursorResult[Any], result).rowcount != 1:
            raise PreconditionError(
                f"principal {name!r} is revoked: its credential cannot be rotated"
            )
        return principal

    def lock_for_submission(self, principal_id: int) -> Principal | None:
        """The principal, share-locked until the transaction ends (PostgreSQL), so that a
        concurrent revocation waits for a submission in flight, or the submission sees it.

        Writers that lock families take this lock first, as revocation does (it updates the
        row, then locks the member's families): the same order everywhere, so no deadlock.
        """
        statement = select(PrincipalRow).where(PrincipalRow.id == principal_id)
        if backend(self._session) == "postgresql":
            statement = statement.with_for_update(read=True)
        row = self._session.scalars(
            statement, execution_options={"populate_existing": True}
        ).one_or_none()
        return None if row is None else principal_from_row(row)

    def _one(self, statement: Select[PrincipalRow]) -> PrincipalRow | None:
        return self._session.scalars(statement).one_or_none()
