"""Storage of the hub: ORM models, Alembic migrations and the repositories that hold all SQL.

Callers open one :func:`session_scope` per unit of work and pass its session to the repositories;
repositories flush but never commit.
"""

from __future__ import annotations

from sigshare.hub.storage.database import default_database_url, make_engine, session_scope
from sigshare.hub.storage.repositories import (
    AuditRepository,
    ParameterRepository,
    PrincipalRepository,
    SubmissionRepository,
)

__all__ = [
    "AuditRepository",
    "ParameterRepository",
    "PrincipalRepository",
    "SubmissionRepository",
    "default_database_url",
    "make_engine",
    "session_scope",
]
