"""Storage of the hub: ORM models, Alembic migrations and the repositories that hold all SQL,
one module per aggregate (principals, parameters, submissions, aggregates, indicators,
campaigns, reviews, audit, ledgers, web sessions).

Each repository wraps the caller's :class:`~sqlalchemy.orm.Session`. The caller owns the
transaction (one :func:`session_scope` per unit of work): repositories flush so that ids and
constraints are visible, and use savepoints so a refused insert leaves the transaction usable,
but they never commit or roll back the caller's transaction.

Concurrency. On SQLite every transaction begins ``IMMEDIATE`` (see :mod:`.database`), so writers
are serialised by the database file itself. On PostgreSQL several hub replicas write at once;
where a read decides a write (the audit chain's last hash, a family's aggregates) the writer
first takes a transaction-scoped advisory lock, released by COMMIT or ROLLBACK. This relies on
PostgreSQL's default READ COMMITTED isolation, in which the read after the lock sees every
transaction that held the lock before.
"""

from __future__ import annotations

from sigshare.hub.storage.database import default_database_url, make_engine, session_scope

__all__ = ["default_database_url", "make_engine", "session_scope"]
