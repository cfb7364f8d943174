"""Review transitions are compare-and-set: on PostgreSQL two coordinators who read the same
record and move it at once cannot both succeed, and assigning never writes back a status read
before another coordinator's transition. (SQLite runs one write transaction at a time.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from sigshare.hub.domain import ReviewStatus
from sigshare.hub.errors import ConflictError
from sigshare.hub.services import reviews
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.reviews import ReviewRepository
from tests.support.databases import empty_tables
from tests.support.review_seed import seed_forum

NOW = datetime(2026, 12, 3, tzinfo=UTC)


@pytest.fixture
def seeded(migrated_postgres_url: str) -> Iterator[tuple[Engine, str]]:
    empty_tables(migrated_postgres_url)
    engine = make_engine(migrated_postgres_url)
    try:
        forum = seed_forum(engine)
        yield engine, sorted(forum.value_of_id)[0]
    finally:
        engine.dispose()


def test_two_transitions_from_the_same_read_cannot_both_succeed(
    seeded: tuple[Engine, str],
) -> None:
    engine, record_id = seeded
    with session_scope(engine) as alice, session_scope(engine) as bob:
        alice_state = ReviewRepository(alice).record(record_id)
        bob_state = ReviewRepository(bob).record(record_id)
        assert alice_state is not None
        assert bob_state is not None
        assert alice_state.status is bob_state.status is ReviewStatus.NEW
        ReviewRepository(alice).move(alice_state, to=ReviewStatus.TRIAGED, at=NOW)
        alice.commit()  # bob's update below meets the committed transition
        with pytest.raises(ConflictError, match="no longer new"):
            ReviewRepository(bob).move(bob_state, to=ReviewStatus.DISMISSED, at=NOW)
        bob.rollback()
    with session_scope(engine) as session:
        state = ReviewRepository(session).record(record_id)
        assert state is not None
        assert state.status is ReviewStatus.TRIAGED


def test_assigning_never_writes_back_a_status_read_before_a_transition(
    seeded: tuple[Engine, str],
) -> None:
    engine, record_id = seeded
    with session_scope(engine) as alice, session_scope(engine) as bob:
        stale = ReviewRepository(alice).record(record_id)
        assert stale is not None
        assert stale.status is ReviewStatus.NEW
        reviews.set_status(
            bob, actor="bob", record_id=record_id, status=ReviewStatus.DISMISSED, now=NOW
        )
        bob.commit()
        ReviewRepository(alice).assign(stale, assignee="alice", at=NOW)
    with session_scope(engine) as session:
        state = ReviewRepository(session).record(record_id)
        assert state is not None
        assert state.status is ReviewStatus.DISMISSED
        assert state.assignee == "alice"
