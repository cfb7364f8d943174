"""One contract suite for the hub's storage, run on SQLite and on PostgreSQL.

Every test takes the parametrised ``engine`` fixture (``[sqlite]`` and ``[postgresql]``) unless it
is about one backend's own mechanism, which its name says.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, event, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from sigshare.hub.domain import (
    GENESIS_HASH,
    MAX_REPLACE_INTERVAL_SECONDS,
    AuditEntry,
    KindParameters,
    MinHashParameters,
    Role,
    Submission,
    SubmissionStatus,
    audit_entry_hash,
    minhash_family_kind,
)
from sigshare.hub.errors import (
    AlreadyExistsError,
    AuditChainError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from sigshare.hub.listing import AuditQuery
from sigshare.hub.matching.query_ledger import QueryLedger
from sigshare.hub.storage import default_database_url, make_engine, session_scope
from sigshare.hub.storage.aggregates import FamilyRepository
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.campaigns import ClusterRepository
from sigshare.hub.storage.ledgers import QueryLedgerRepository
from sigshare.hub.storage.models import AuditLogRow
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.cluster import ClusterInfo
from sigshare.sketch.errors import ParameterError
from tests.support.rows import RETENTION, T0, add_member, add_submission, label_digest


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# --- database.py ------------------------------------------------------------------------------


def test_default_database_url_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGSHARE_HUB_DB", "postgresql://hub@db/hub")
    assert default_database_url() == "postgresql://hub@db/hub"


def test_default_database_url_is_an_absolute_sqlite_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SIGSHARE_HUB_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_database_url() == f"sqlite:///{tmp_path.resolve()}/sigshare-hub.db"


def test_sqlite_engine_enables_foreign_keys_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    engine.dispose()


def test_sqlite_transactions_take_the_write_lock_when_they_begin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    first, second = make_engine(url), make_engine(url)
    with first.connect() as holder:
        holder.exec_driver_sql("SELECT 1")  # a read, yet BEGIN IMMEDIATE took the write lock
        with second.connect() as waiter:
            # Set before the connection begins, or BEGIN would wait the full 30 s.
            driver = waiter.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(OperationalError, match="locked"):
                waiter.exec_driver_sql("SELECT 1")
    first.dispose()
    second.dispose()


def test_make_engine_refuses_other_backends() -> None:
    with pytest.raises(InvalidArgumentError, match="unsupported database backend 'mysql'"):
        make_engine("mysql://hub@localhost/hub")


def test_session_scope_commits_on_success_and_rolls_back_on_error(engine: Engine) -> None:
    with session_scope(engine) as session:
        add_member(session, "kept")

    def add_then_fail() -> None:
        with session_scope(engine) as session:
            add_member(session, "discarded")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        add_then_fail()
    with session_scope(engine) as session:
        assert [p.name for p in PrincipalRepository(session).list()] == ["kept"]


# --- principals -------------------------------------------------------------------------------


def test_principal_round_trips_by_name_and_by_credential_id(engine: Engine) -> None:
    with session_scope(engine) as session:
        added = PrincipalRepository(session).add(
            "acme-labs.eu_1",
            Role.COORDINATOR,
            "cred_ABCDEFGH-123",
            label_digest("s"),
            created_at=T0,
        )
    with session_scope(engine) as session:
        principals = PrincipalRepository(session)
        assert principals.get_by_name("acme-labs.eu_1") == added
        assert principals.get_by_credential_id("cred_ABCDEFGH-123") == added
        assert principals.get_by_name("nobody") is None
        assert principals.get_by_credential_id("cred_nobody_0000") is None
    assert added.role is Role.COORDINATOR
    assert added.created_at == T0
    assert added.created_at.tzinfo == UTC
    assert added.revoked_at is None


def test_principal_created_at_defaults_to_now_in_utc(engine: Engine) -> None:
    before = datetime.now(UTC)
    with session_scope(engine) as session:
        principal = PrincipalRepository(session).add(
            "acme", Role.MEMBER, "c" * 16, label_digest("s")
        )
    assert before <= principal.created_at <= datetime.now(UTC)


def test_duplicate_principal_name_is_refused_and_the_transaction_stays_usable(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        principals = PrincipalRepository(session)
        principals.add("acme", Role.MEMBER, "a" * 16, label_digest("1"))
        with pytest.raises(AlreadyExistsError, match="'acme' already exists"):
            principals.add("acme", Role.ADMIN, "b" * 16, label_digest("2"))
        with pytest.raises(AlreadyExistsError, match="credential id"):
            principals.add("other", Role.MEMBER, "a" * 16, label_digest("3"))
        principals.add("beta", Role.MEMBER, "c" * 16, label_digest("4"))
    with session_scope(engine) as session:
        assert [p.name for p in PrincipalRepository(session).list()] == ["acme", "beta"]


def test_duplicate_principal_inserted_concurrently_is_reported_as_already_exists(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another transaction commits the same name between our check and our insert: only the
    # unique constraint can see it, and the savepoint keeps our transaction usable.
    with session_scope(engine) as session:
        principals = PrincipalRepository(session)
        principals.add("acme", Role.MEMBER, "a" * 16, label_digest("1"))
        with monkeypatch.context() as patch:
            patch.setattr(principals, "get_by_name", lambda name: None)
            with pytest.raises(AlreadyExistsError, match="'acme' or its credential id"):
                principals.add("acme", Role.MEMBER, "b" * 16, label_digest("2"))
        principals.add("beta", Role.MEMBER, "c" * 16, label_digest("3"))
    with session_scope(engine) as session:
        assert [p.name for p in PrincipalRepository(session).list()] == ["acme", "beta"]


@pytest.mark.parametrize(
    "name", ["", "A", "Acme", "-acme", ".acme", "_acme", "a b", "acme!", "ä", "a" * 65, "a:b"]
)
def test_bad_principal_names_are_refused_with_the_rule(engine: Engine, name: str) -> None:
    with (
        session_scope(engine) as session,
        pytest.raises(InvalidArgumentError, match="1-64 characters of a-z"),
    ):
        PrincipalRepository(session).add(name, Role.MEMBER, "a" * 16, label_digest("s"))


@pytest.mark.parametrize("name", ["a", "0", "a" * 64, "acme-labs.eu_1"])
def test_good_principal_names_are_accepted(engine: Engine, name: str) -> None:
    with session_scope(engine) as session:
        assert (
            PrincipalRepository(session).add(name, Role.MEMBER, "a" * 16, label_digest("s")).name
            == name
        )


@pytest.mark.parametrize(
    ("role", "credential_id", "credential_hash", "message"),
    [
        ("owner", "a" * 16, bytes(32), "unknown role 'owner'"),
        (Role.MEMBER, "a" * 15, bytes(32), "credential id must be 16-32"),
        (Role.MEMBER, "a" * 33, bytes(32), "credential id must be 16-32"),
        (Role.MEMBER, "a" * 15 + "/", bytes(32), "credential id must be 16-32"),
        (Role.MEMBER, "a" * 16, bytes(31), "credential hash must be 32 bytes"),
        (Role.MEMBER, "a" * 16, "0" * 32, "credential hash must be 32 bytes"),
    ],
)
def test_bad_roles_credential_ids_and_hashes_are_refused(
    engine: Engine, role: Any, credential_id: str, credential_hash: Any, message: str
) -> None:
    with session_scope(engine) as session, pytest.raises(InvalidArgumentError, match=message):
        PrincipalRepository(session).add("acme", role, credential_id, credential_hash)


def test_revocation_keeps_the_first_time_and_revoked_principals_are_still_found(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        member = add_member(session, "acme")
        add_member(session, "beta")
    with session_scope(engine) as session:
        principals = PrincipalRepository(session)
        revoked = principals.revoke("acme", T0 + timedelta(hours=1))
        assert revoked.revoked_at == T0 + timedelta(hours=1)
    with session_scope(engine) as session:
        principals = PrincipalRepository(session)
        again = principals.revoke("acme", T0 + timedelta(days=3))
        assert again.revoked_at == T0 + timedelta(hours=1)
        found = principals.get_by_credential_id(member.credential_id)
        assert found is not None
        assert found.revoked_at == T0 + timedelta(hours=1)
        assert found.is_active(T0)
        assert not found.is_active(T0 + timedelta(hours=1))
        assert [(p.name, p.revoked_at is None) for p in principals.list()] == [
            ("acme", False),
            ("beta", True),
        ]


def test_revoking_an_unknown_principal_is_not_found(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(NotFoundError) as caught:
        PrincipalRepository(session).revoke("nobody", T0)
    assert str(caught.value) == "principal 'nobody' not found"
    assert caught.value.code == "not_found"


def test_naive_timestamps_are_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        add_member(session, "acme")
        with pytest.raises(InvalidArgumentError, match="timezone-aware"):
            PrincipalRepository(session).revoke("acme", datetime(2026, 1, 1))


def test_timestamps_in_other_zones_are_stored_as_the_same_instant_in_utc(engine: Engine) -> None:
    elsewhere = T0.astimezone(timezone(timedelta(hours=-5)))
    with session_scope(engine) as session:
        add_member(session, "acme")
        PrincipalRepository(session).revoke("acme", elsewhere)
    with session_scope(engine) as session:
        principal = PrincipalRepository(session).get_by_name("acme")
    assert principal is not None
    assert principal.revoked_at == T0
    assert principal.revoked_at is not None
    assert principal.revoked_at.utcoffset() == timedelta(0)


# --- parameters -------------------------------------------------------------------------------


FORUM_FPR = 1e-4


def _kind(
    kind: str = "email", capacity: int = 1_000_000, max_members: int = 32, **policy: Any
) -> KindParameters:
    return KindParameters.for_forum(
        kind=kind,
        key_id="epoch-1",
        capacity=capacity,
        forum_fpr=FORUM_FPR,
        max_members=max_members,
        updated_at=T0,
        **policy,
    )


def _family(family: str = "prompt", **changes: Any) -> MinHashParameters:
    values: dict[str, Any] = {
        "family": family,
        "key_id": "epoch-1",
        "threshold": 0.6,
        "updated_at": T0,
    }
    return MinHashParameters(**(values | changes))


def test_kind_parameters_round_trip_and_upsert_replaces_them(engine: Engine) -> None:
    email = _kind(
        "email",
        max_members=10,
        quorum=3,
        retention_days=14,
        reveal_members=True,
        replace_interval_seconds=600,
    )
    with session_scope(engine) as session:
        assert ParameterRepository(session).set_kind(email) == email
    bigger = dataclasses.replace(
        _kind("email", capacity=5_000_000), updated_at=T0 + timedelta(days=1)
    )
    with session_scope(engine) as session:
        parameters = ParameterRepository(session)
        assert parameters.get_kind("email") == email
        assert parameters.set_kind(bigger) == bigger
        assert parameters.get_kind("email") == bigger  # the session sees the upsert too
    with session_scope(engine) as session:
        parameters = ParameterRepository(session)
        parameters.set_kind(_kind("phone"))
        parameters.set_kind(_kind("domain"))
        assert [k.kind for k in parameters.list_kinds()] == ["domain", "email", "phone"]
        assert parameters.get_kind("email") == bigger
        assert parameters.get_kind("wallet") is None
    assert bigger.bloom_params().m > email.bloom_params().m
    assert (bigger.quorum, bigger.retention_days, bigger.reveal_members) == (2, 30, False)
    assert (bigger.max_members, bigger.replace_interval_seconds) == (32, 3600)
    assert (email.max_members, email.replace_interval_seconds) == (10, 600)


@pytest.mark.parametrize("max_members", [2, 10, 32, 250])
def test_kind_filters_are_sized_for_the_per_filter_rate_of_the_forum(max_members: int) -> None:
    parameters = _kind(max_members=max_members)
    assert parameters.forum_fpr == FORUM_FPR
    assert parameters.target_fpr == FORUM_FPR / (max_members - 1)
    per_filter = BloomParams.for_capacity(
        "email", "epoch-1", 1_000_000, FORUM_FPR / (max_members - 1)
    )
    assert parameters.bloom_params() == per_filter
    assert (parameters.m, parameters.k) == (per_filter.m, per_filter.k)
    assert parameters.digest() == per_filter.digest()


@pytest.mark.parametrize("seconds", [0, 1, MAX_REPLACE_INTERVAL_SECONDS])
def test_replace_intervals_from_none_to_a_week_are_accepted(seconds: int) -> None:
    assert _kind(replace_interval_seconds=seconds).replace_interval_seconds == seconds


def test_minhash_parameters_round_trip_and_upsert_replaces_them(engine: Engine) -> None:
    prompt = _family("prompt", num_perm=256, shingle_unit="char", shingle_size=5, quorum=4)
    with session_scope(engine) as session:
        assert ParameterRepository(session).set_minhash_family(prompt) == prompt
    changed = _family("prompt", threshold=0.8, updated_at=T0 + timedelta(days=2))
    with session_scope(engine) as session:
        parameters = ParameterRepository(session)
        assert parameters.get_minhash_family("prompt") == prompt
        parameters.set_minhash_family(changed)
        parameters.set_minhash_family(_family("account"))
    with session_scope(engine) as session:
        parameters = ParameterRepository(session)
        assert parameters.get_minhash_family("prompt") == changed
        assert [f.family for f in parameters.list_minhash_families()] == ["account", "prompt"]
        assert parameters.get_minhash_family("profile") is None
    assert changed.family_kind == minhash_family_kind("prompt") == "minhash:prompt"
    assert changed.minhash_params().num_perm == 128


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: _kind(quorum=1), "quorum must be at least 2"),
        (lambda: _kind(retention_days=0), "retention must be at least one day"),
        (lambda: _kind("Email"), "name 'Email' is invalid"),
        (lambda: dataclasses.replace(_kind(), m=100), "multiple of 64"),
        (lambda: dataclasses.replace(_kind(), key_id="bad key"), "key id"),
        (lambda: _kind(max_members=1), "max_members must be between 2 and 250, got 1"),
        (lambda: _kind(max_members=251), "max_members must be between 2 and 250, got 251"),
        # Built directly, quorum ≥ 2 refuses a forum of one before anything else can.
        (
            lambda: dataclasses.replace(_kind(), max_members=1),
            "quorum 2 exceeds the forum size of 1 members",
        ),
        (lambda: _kind(max_members=4, quorum=5), "quorum 5 exceeds the forum size of 4 members"),
        (
            lambda: _kind(replace_interval_seconds=-1),
            f"replace interval must be 0 to {MAX_REPLACE_INTERVAL_SECONDS} seconds, got -1",
        ),
        (
            lambda: _kind(replace_interval_seconds=MAX_REPLACE_INTERVAL_SECONDS + 1),
            "replace interval must be 0 to 604800 seconds",
        ),
        (lambda: _family(threshold=1.0), "threshold must be in"),
        (lambda: _family(num_perm=4), "num_perm"),
        (lambda: _family("minhash:prompt"), "is invalid"),
    ],
)
def test_invalid_parameters_cannot_be_built(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        build()


@pytest.mark.parametrize(
    "assignment", ["quorum = 1", "max_members = 1", "replace_interval_seconds = -1"]
)
def test_database_refuses_invalid_policy_written_behind_the_repository(
    engine: Engine, assignment: str
) -> None:
    with session_scope(engine) as session:
        ParameterRepository(session).set_kind(_kind())
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text(f"UPDATE kind_parameters SET {assignment}"))


# --- submissions ------------------------------------------------------------------------------


def test_submission_round_trips_and_find_is_the_idempotency_lookup(engine: Engine) -> None:
    with session_scope(engine) as session:
        acme, beta = add_member(session, "acme"), add_member(session, "beta")
        added = add_submission(session, acme, "filter-1")
    with session_scope(engine) as session:
        submissions = SubmissionRepository(session)
        assert submissions.find(acme.id, "email", label_digest("filter-1")) == added
        assert submissions.get(added.id) == added
        assert submissions.find(beta.id, "email", label_digest("filter-1")) is None
        assert submissions.find(acme.id, "phone", label_digest("filter-1")) is None
        assert submissions.find(acme.id, "email", label_digest("filter-2")) is None
        assert submissions.get(added.id + 1) is None
    assert added.status is SubmissionStatus.ACTIVE
    assert (added.declared_count, added.set_bits, added.byte_size) == (1000, 6500, 8)
    assert added.tokens_asked == 0
    assert (added.created_at, added.expires_at) == (T0, T0 + RETENTION)
    assert added.superseded_at is None


def test_identical_content_twice_is_refused_by_the_database_and_nothing_changes(
    engine: Engine,
) -> None:
    # add() does not look first (the service does, with find()): the unique constraint on
    # (member, family, content) refuses the row, and the savepoint undoes the supersede.
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        first = add_submission(session, acme, "filter-1")
        with pytest.raises(ConflictError, match="refused by the database"):
            add_submission(session, acme, "filter-1", created_at=T0 + timedelta(hours=1))
        submissions = SubmissionRepository(session)
        assert submissions.active("email", "epoch-1") == [first]
        assert submissions.payload(first.id) == b"filter-1"
        add_submission(session, acme, "filter-2")  # the transaction is still usable
    with session_scope(engine) as session:
        listed = SubmissionRepository(session).all_active("email")
        assert [s.content_sha256 for s in listed] == [label_digest("filter-2")]


def test_new_submission_supersedes_the_members_previous_one_of_that_family(
    engine: Engine,
) -> None:
    later = T0 + timedelta(days=1)
    with session_scope(engine) as session:
        acme, beta = add_member(session, "acme"), add_member(session, "beta")
        first = add_submission(session, acme, "acme-1")
        theirs = add_submission(session, beta, "beta-1")
        phone = add_submission(session, acme, "acme-phone", family_kind="phone")
        prompts = add_submission(session, acme, "acme-prompts", family_kind="minhash:prompt")
    with session_scope(engine) as session:
        second = add_submission(session, acme, "acme-2", created_at=later)
    with session_scope(engine) as session:
        submissions = SubmissionRepository(session)
        old = submissions.get(first.id)
        assert old is not None
        assert old.status is SubmissionStatus.SUPERSEDED
        assert old.superseded_at == later
        assert [s.id for s in submissions.active("email", "epoch-1")] == [theirs.id, second.id]
        assert submissions.active("phone", "epoch-1") == [phone]
        assert submissions.active("minhash:prompt", "epoch-1") == [prompts]
        assert submissions.active("email", "epoch-2") == []


def test_active_lists_only_the_requested_key_epoch(engine: Engine) -> None:
    with session_scope(engine) as session:
        acme, beta = add_member(session, "acme"), add_member(session, "beta")
        add_submission(session, acme, "acme-1", key_id="epoch-1")
        newer = add_submission(session, beta, "beta-2", key_id="epoch-2")
        assert SubmissionRepository(session).active("email", "epoch-2") == [newer]


def test_partial_unique_index_refuses_a_second_active_row_behind_the_repository(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        first = add_submission(session, acme, "acme-1")
        add_submission(session, acme, "acme-2")
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text("UPDATE submissions SET status = 'active' WHERE id = :id"), {"id": first.id}
        )
    with engine.begin() as connection:  # superseded rows are not limited: the index is partial
        connection.execute(
            text("UPDATE submissions SET status = 'superseded' WHERE member_id = :m"),
            {"m": acme.id},
        )


def test_concurrent_active_submission_is_a_conflict_on_postgresql(
    postgres_engine: Engine,
) -> None:
    # SQLite cannot interleave two writers at all (BEGIN IMMEDIATE), so this is PostgreSQL's.
    engine = postgres_engine
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
    outcome: list[BaseException | Submission] = []
    with session_scope(engine) as winner_session:
        add_submission(winner_session, acme, "winner")

        def loser() -> None:
            with session_scope(engine) as session:
                try:
                    add_submission(session, acme, "loser")
                except ConflictError as exc:
                    outcome.append(exc)
                    # The savepoint kept this transaction usable: it now sees the winner.
                    winner = SubmissionRepository(session).active("email", "epoch-1")
                    outcome.extend(winner)

        thread = threading.Thread(target=loser)
        thread.start()
        thread.join(timeout=0.5)  # blocked on the unique index until the winner commits
        assert thread.is_alive()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], ConflictError)
    assert [s.content_sha256 for s in outcome[1:] if isinstance(s, Submission)] == [
        label_digest("winner")
    ]


def test_payload_round_trips_apart_from_the_submission(engine: Engine) -> None:
    payload = bytes(range(256)) * 64 + b"\x00\x00"
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        added = add_submission(session, acme, "filter-1", payload=payload)
    with session_scope(engine) as session:
        submissions = SubmissionRepository(session)
        assert submissions.payload(added.id) == payload
        with pytest.raises(NotFoundError, match=f"submission {added.id + 1} not found"):
            submissions.payload(added.id + 1)
    assert added.byte_size == len(payload)


def test_listing_and_lookup_never_read_payloads(engine: Engine) -> None:
    assert "payload" not in {field.name for field in dataclasses.fields(Submission)}
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        added = add_submission(session, acme, "filter-1")
    with session_scope(engine) as session, _statements(engine) as statements:
        submissions = SubmissionRepository(session)
        submissions.active("email", "epoch-1")
        submissions.find(acme.id, "email", label_digest("filter-1"))
        submissions.get(added.id)
        submissions.due("email", "epoch-1", label_digest("params"), T0)
        assert len(statements) >= 4
        assert not any("submission_payloads" in statement for statement in statements)
        submissions.payload(added.id)
        assert "submission_payloads" in statements[-1]


def test_deleting_a_submission_cascades_to_its_payload(engine: Engine) -> None:
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        added = add_submission(session, acme, "filter-1")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM submissions WHERE id = :id"), {"id": added.id})
        remaining = connection.execute(text("SELECT count(*) FROM submission_payloads"))
        assert remaining.scalar() == 0


def _submission_fields(member_id: int) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "family_kind": "email",
        "key_id": "epoch-1",
        "params_digest": label_digest("params"),
        "content_sha256": label_digest("content"),
        "declared_count": 10,
        "set_bits": None,
        "payload": b"bits",
        "created_at": T0,
        "expires_at": T0 + RETENTION,
    }


@pytest.mark.parametrize(
    "changes",
    [
        {"member_id": 999},  # no such principal: the foreign key
        {"params_digest": b"short"},  # the length checks of the digests
        {"content_sha256": bytes(33)},
    ],
    ids=["unknown-member", "short-params-digest", "long-content-digest"],
)
def test_the_database_refuses_what_add_no_longer_checks_itself(
    engine: Engine, changes: dict[str, Any]
) -> None:
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        submissions = SubmissionRepository(session)
        with pytest.raises(ConflictError, match="refused by the database") as caught:
            submissions.add(**(_submission_fields(acme.id) | changes))
        assert isinstance(caught.value.__cause__, IntegrityError)
        assert submissions.all_active("email") == []
        kept = submissions.add(**_submission_fields(acme.id))  # the transaction is usable
    with session_scope(engine) as session:
        assert SubmissionRepository(session).all_active("email") == [kept]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"family_kind": ""}, "family/kind must be 1-80"),
        ({"family_kind": "x" * 81}, "family/kind must be 1-80"),
        ({"declared_count": -1}, "cannot be negative"),
        ({"set_bits": -1}, "cannot be negative"),
        ({"expires_at": T0}, "expire after it was created"),
    ],
)
def test_bad_submission_fields_are_refused(
    engine: Engine, changes: dict[str, Any], message: str
) -> None:
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        with pytest.raises(InvalidArgumentError, match=message):
            SubmissionRepository(session).add(**(_submission_fields(acme.id) | changes))


def test_due_lists_active_submissions_past_their_window(engine: Engine) -> None:
    with session_scope(engine) as session:
        acme, beta, gamma = (add_member(session, n) for n in ("acme", "beta", "gamma"))
        old = add_submission(session, acme, "acme-1")
        add_submission(session, beta, "beta-1")
        newer = add_submission(session, beta, "beta-2", created_at=T0 + timedelta(days=10))
        add_submission(session, gamma, "gamma-1", created_at=T0 + timedelta(days=20))
        add_submission(session, gamma, "phone-1", family_kind="phone")
    with session_scope(engine) as session:
        submissions = SubmissionRepository(session)
        current = ("email", "epoch-1", label_digest("params"))
        assert submissions.due(*current, T0 + RETENTION - timedelta(microseconds=1)) == []
        assert [s.id for s in submissions.due(*current, T0 + RETENTION)] == [old.id]
        later = T0 + RETENTION + timedelta(days=10)
        assert [s.id for s in submissions.due(*current, later)] == [old.id, newer.id]


@pytest.mark.parametrize("status", [SubmissionStatus.EXPIRED, SubmissionStatus.SUPERSEDED])
def test_end_takes_a_submission_out_of_service_and_drops_its_payload_and_clusters(
    engine: Engine, status: SubmissionStatus
) -> None:
    ended_at = T0 + timedelta(days=1)
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        bloom = add_submission(session, acme, "acme-1")
        prompts = add_submission(session, acme, "acme-prompts", family_kind="minhash:prompt")
        ClusterRepository(session).add(
            prompts.id,
            [
                ClusterInfo(
                    cluster_id="ab" * 16, volume=3, category="", first_seen=None, last_seen=None
                )
            ],
        )
    with session_scope(engine) as session:
        submissions = SubmissionRepository(session)
        for submission in (bloom, prompts):
            submissions.end(submission.id, status, ended_at)
            with pytest.raises(NotFoundError):
                submissions.payload(submission.id)
            ended = submissions.get(submission.id)
            assert ended is not None
            assert (ended.status, ended.superseded_at) == (status, ended_at)
            with pytest.raises(ConflictError, match="no longer active"):
                submissions.end(submission.id, SubmissionStatus.EXPIRED, ended_at)
        with pytest.raises(InvalidArgumentError, match="out of service"):
            submissions.end(bloom.id, SubmissionStatus.ACTIVE, ended_at)
    with engine.connect() as connection:
        for table in ("submission_payloads", "clusters"):
            assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_revive_makes_old_content_current_again(engine: Engine) -> None:
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        submissions = SubmissionRepository(session)
        first = add_submission(session, acme, "acme-1")
        submissions.set_tokens_asked(first.id, 30)
        submissions.end(first.id, SubmissionStatus.SUPERSEDED, T0 + timedelta(days=1))
        add_submission(session, acme, "acme-2", created_at=T0 + timedelta(days=1))
        current = submissions.active_of(acme.id, "email")
        assert current is not None
        submissions.end(current.id, SubmissionStatus.SUPERSEDED, T0 + timedelta(days=2))
        later = T0 + timedelta(days=2)
        revived = submissions.revive(
            first.id,
            payload=b"acme-1",
            key_id="epoch-1",
            params_digest=label_digest("params"),
            created_at=later,
            expires_at=later + RETENTION,
        )
        assert (revived.status, revived.created_at) == (SubmissionStatus.ACTIVE, later)
        # A new life: the questions of its first life do not count against it (nor flag it).
        assert revived.tokens_asked == 0
        assert submissions.payload(first.id) == b"acme-1"
        assert [s.id for s in submissions.all_active("email")] == [first.id]
        with pytest.raises(ConflictError):
            submissions.revive(
                first.id,
                payload=b"x",
                key_id="epoch-1",
                params_digest=label_digest("params"),
                created_at=later,
                expires_at=later + RETENTION,
            )


def test_any_due_says_whether_prepare_would_end_an_active_submission(engine: Engine) -> None:
    params, key = label_digest("params"), "epoch-1"
    with session_scope(engine) as session:
        acme, beta = add_member(session, "acme"), add_member(session, "beta")
        submissions = SubmissionRepository(session)
        assert not submissions.any_due("email", key, params, T0)
        add_submission(session, acme, "acme-1")
        later = add_submission(session, beta, "beta-1", created_at=T0 + timedelta(days=5))
        add_submission(session, acme, "acme-phone", family_kind="phone", key_id="epoch-0")
        # Current parameters, within retention: nothing to do.
        assert not submissions.any_due("email", key, params, T0 + RETENTION - timedelta(seconds=1))
        # Expiry is due at expires_at itself.
        assert submissions.any_due("email", key, params, T0 + RETENTION)
        # Another key epoch or parameter digest retires the family's filters.
        assert submissions.any_due("email", "epoch-2", params, T0)
        assert submissions.any_due("email", key, label_digest("other params"), T0)
        # Only the family asked about, and only active submissions, count.
        assert not submissions.any_due("domain", "epoch-2", params, T0 + 10 * RETENTION)
        assert submissions.any_due("phone", key, params, T0)
        submissions.end(later.id, SubmissionStatus.SUPERSEDED, T0 + timedelta(days=6))
        first = submissions.active_of(acme.id, "email")
        assert first is not None
        submissions.end(first.id, SubmissionStatus.EXPIRED, T0 + RETENTION)
        assert not submissions.any_due("email", "epoch-2", label_digest("x"), T0 + 10 * RETENTION)


def test_active_of_live_members_leaves_out_revoked_members_and_other_roles(
    engine: Engine,
) -> None:
    revoked_at = T0 + timedelta(days=2)
    with session_scope(engine) as session:
        beta = add_member(session, "beta")
        acme = add_member(session, "acme")
        gone = add_member(session, "gone")
        coordinator = add_member(session, "coord", Role.COORDINATOR)
        # Submitted in another order than the members were registered: listed by member.
        theirs = add_submission(session, gone, "gone-1")
        ours = add_submission(session, acme, "acme-1")
        add_submission(session, coordinator, "coord-1")
        first = add_submission(session, beta, "beta-1")
        add_submission(session, beta, "beta-old-epoch", family_kind="phone", key_id="epoch-0")
        PrincipalRepository(session).revoke("gone", revoked_at)
    with session_scope(engine) as session:
        submissions = SubmissionRepository(session)
        before = submissions.active_of_live_members(
            "email", "epoch-1", revoked_at - timedelta(seconds=1)
        )
        assert [s.id for s in before] == [first.id, ours.id, theirs.id]
        after = submissions.active_of_live_members("email", "epoch-1", revoked_at)
        assert after == [first, ours]
        assert submissions.active_of_live_members("email", "epoch-2", T0) == []
        assert submissions.active_of_live_members("phone", "epoch-1", T0) == []
        # active() itself is unchanged: revocation is a reader's concern.
        assert len(submissions.active("email", "epoch-1")) == 4


def test_previous_of_is_the_members_submission_before_it_in_that_family(engine: Engine) -> None:
    with session_scope(engine) as session:
        acme, beta = add_member(session, "acme"), add_member(session, "beta")
        first = add_submission(session, acme, "acme-1")
        add_submission(session, beta, "beta-1", created_at=T0 + timedelta(hours=1))
        add_submission(
            session, acme, "acme-phone", family_kind="phone", created_at=T0 + timedelta(hours=2)
        )
        second = add_submission(session, acme, "acme-2", created_at=T0 + timedelta(hours=3))
        third = add_submission(session, acme, "acme-3", created_at=T0 + timedelta(hours=4))
    with session_scope(engine) as session:
        submissions = SubmissionRepository(session)
        assert submissions.previous_of(first) is None
        previous = submissions.previous_of(second)
        assert previous is not None
        assert (previous.id, previous.status) == (first.id, SubmissionStatus.SUPERSEDED)
        assert submissions.previous_of(third) == submissions.get(second.id)


def test_set_tokens_asked_is_recorded_per_submission(engine: Engine) -> None:
    with session_scope(engine) as session:
        acme, beta = add_member(session, "acme"), add_member(session, "beta")
        ours, theirs = (
            add_submission(session, acme, "acme-1"),
            add_submission(session, beta, "beta-1"),
        )
        SubmissionRepository(session).set_tokens_asked(ours.id, 17)
    with session_scope(engine) as session:
        submissions = SubmissionRepository(session)
        assert [s.tokens_asked for s in submissions.all_active("email")] == [17, 0]
        submissions.set_tokens_asked(ours.id, 40)
        recorded = submissions.get(ours.id)
        assert recorded is not None
        assert recorded.tokens_asked == 40
        assert submissions.get(theirs.id) == theirs


def test_family_state_is_reset_then_versioned_by_each_change(engine: Engine) -> None:
    with session_scope(engine) as session:
        families = FamilyRepository(session)
        assert families.get("email") is None
        with pytest.raises(ConflictError, match="reset it first"):
            families.record_change("email", at=T0)
        reset = families.reset(
            "email", key_id="epoch-1", params_digest=label_digest("params"), m=1024, at=T0
        )
        assert (reset.version, reset.derived_version, reset.m) == (1, 0, 1024)
        changed = families.record_change("email", at=T0 + timedelta(hours=1))
        assert (changed.version, changed.updated_at) == (2, T0 + timedelta(hours=1))
    with session_scope(engine) as session:
        families = FamilyRepository(session)
        assert families.get("email") == changed
        again = families.reset(
            "email", key_id="epoch-2", params_digest=label_digest("new"), m=2048, at=T0
        )
        assert (again.version, again.key_id, again.m) == (3, "epoch-2", 2048)


def _lock_family_within(engine: Engine, family_kind: str, timeout: str) -> None:
    with session_scope(engine) as session:
        session.execute(text(f"SET LOCAL lock_timeout = '{timeout}'"))
        SubmissionRepository(session).lock_family(family_kind)


def test_lock_family_serialises_writers_of_one_family_on_postgresql(
    postgres_engine: Engine,
) -> None:
    # On SQLite lock_family is a no-op: BEGIN IMMEDIATE already serialises every writer.
    with session_scope(postgres_engine) as holder:
        SubmissionRepository(holder).lock_family("email")
        _lock_family_within(postgres_engine, "phone", "5s")  # another family: no wait
        with pytest.raises(OperationalError, match="lock timeout"):
            _lock_family_within(postgres_engine, "email", "200ms")
    _lock_family_within(postgres_engine, "email", "5s")  # released by the holder's commit


# --- query ledgers ----------------------------------------------------------------------------


def _ledger(*entries: tuple[int, int, int]) -> QueryLedger:
    """A ledger of ``(hi, lo, asked_at)`` rows, in the order given (sorted by the caller)."""
    return QueryLedger(
        np.array([e[0] for e in entries], dtype=np.uint64),
        np.array([e[1] for e in entries], dtype=np.uint64),
        np.array([e[2] for e in entries], dtype=np.int64),
    )


def _same_ledger(a: QueryLedger, b: QueryLedger) -> bool:
    return a.encode() == b.encode()


def test_query_ledger_round_trips_per_member_and_kind_and_put_replaces_it(
    engine: Engine,
) -> None:
    first = _ledger((1, 2, 100), (1, 3, 90), (2**64 - 1, 0, 80))
    second = _ledger((5, 5, 200))
    with session_scope(engine) as session:
        acme, beta = add_member(session, "acme"), add_member(session, "beta")
        ledgers = QueryLedgerRepository(session)
        assert len(ledgers.get_for_update(acme.id, "email", T0)) == 0
        assert ledgers.entries(acme.id, "email") == 0
        ledgers.put(acme.id, "email", first, T0)
        ledgers.put(acme.id, "phone", second, T0)  # no row read first: inserted
    with session_scope(engine) as session:
        ledgers = QueryLedgerRepository(session)
        assert _same_ledger(ledgers.get_for_update(acme.id, "email", T0), first)
        assert _same_ledger(ledgers.get_for_update(acme.id, "phone", T0), second)
        assert len(ledgers.get_for_update(beta.id, "email", T0)) == 0
        assert (ledgers.entries(acme.id, "email"), ledgers.entries(acme.id, "phone")) == (3, 1)
        ledgers.put(acme.id, "email", second, T0 + timedelta(hours=1))  # an upsert
        assert _same_ledger(ledgers.get_for_update(acme.id, "email", T0), second)
        ledgers.put(acme.id, "phone", QueryLedger.empty(), T0 + timedelta(hours=1))
    with session_scope(engine) as session:
        ledgers = QueryLedgerRepository(session)
        assert ledgers.entries(acme.id, "email") == 1
        assert len(ledgers.get_for_update(acme.id, "phone", T0)) == 0
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT member_id, kind, entries, length(tokens), length(asked_at)"
                " FROM query_ledgers"
            )
        ).all()
    per_time = len(second.encode_times())
    assert sorted(tuple(row) for row in rows) == [
        (acme.id, "email", 1, 16, per_time),
        (acme.id, "phone", 0, 0, 0),
        (beta.id, "email", 0, 0, 0),  # a first read creates the row it locks
    ]


def test_query_ledger_put_can_rewrite_only_the_times(engine: Engine) -> None:
    asked = _ledger((1, 2, 100), (1, 3, 90))
    again = _ledger((1, 2, 300), (1, 3, 90))
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        ledgers = QueryLedgerRepository(session)
        # Without a row to update, the whole ledger is written all the same.
        ledgers.put(acme.id, "email", asked, T0, tokens_changed=False)
    with session_scope(engine) as session:
        ledgers = QueryLedgerRepository(session)
        assert _same_ledger(ledgers.get_for_update(acme.id, "email", T0), asked)
        ledgers.put(acme.id, "email", again, T0 + timedelta(hours=1), tokens_changed=False)
    with session_scope(engine) as session:
        ledgers = QueryLedgerRepository(session)
        assert _same_ledger(ledgers.get_for_update(acme.id, "email", T0), again)
        assert ledgers.entries(acme.id, "email") == 2


def test_an_unreadable_query_ledger_is_a_conflict(engine: Engine) -> None:
    with session_scope(engine) as session:
        acme = add_member(session, "acme")
        QueryLedgerRepository(session).put(acme.id, "email", _ledger((1, 1, 1), (2, 2, 2)), T0)
    with engine.begin() as connection:  # out of order, as no ledger is ever written
        connection.execute(
            text("UPDATE query_ledgers SET tokens = :tokens"),
            {"tokens": np.array([[2, 2], [1, 1]], dtype="<u8").tobytes()},
        )
    with session_scope(engine) as session, pytest.raises(ConflictError, match="unreadable"):
        QueryLedgerRepository(session).get_for_update(acme.id, "email", T0)


def test_a_query_ledger_needs_a_real_member(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(IntegrityError):
        QueryLedgerRepository(session).put(999, "email", QueryLedger.empty(), T0)


def _ledger_within(engine: Engine, member_id: int, timeout: str) -> None:
    with session_scope(engine) as session:
        session.execute(text(f"SET LOCAL lock_timeout = '{timeout}'"))
        QueryLedgerRepository(session).get_for_update(member_id, "email", T0)


def test_a_members_query_ledger_is_locked_until_the_reader_commits_on_postgresql(
    postgres_engine: Engine,
) -> None:
    # SQLite serialises every transaction anyway (BEGIN IMMEDIATE).
    with session_scope(postgres_engine) as session:
        acme, beta = add_member(session, "acme"), add_member(session, "beta")
        for member in (acme, beta):
            QueryLedgerRepository(session).put(member.id, "email", QueryLedger.empty(), T0)
    with session_scope(postgres_engine) as holder:
        QueryLedgerRepository(holder).get_for_update(acme.id, "email", T0)
        _ledger_within(postgres_engine, beta.id, "5s")  # another member's: no wait
        with pytest.raises(OperationalError, match="lock timeout"):
            _ledger_within(postgres_engine, acme.id, "200ms")
    _ledger_within(postgres_engine, acme.id, "5s")  # released by the holder's commit


def test_a_members_first_query_ledger_read_is_locked_too_on_postgresql(
    postgres_engine: Engine,
) -> None:
    # Before a member's first request there is no row to lock: without a lock of its own,
    # concurrent first requests are each charged against an empty ledger and the last put
    # overwrites the others' tokens (more answers than the budgets allow, tokens_asked too low).
    with session_scope(postgres_engine) as session:
        acme = add_member(session, "acme")
    with session_scope(postgres_engine) as holder:
        assert len(QueryLedgerRepository(holder).get_for_update(acme.id, "email", T0)) == 0
        with pytest.raises(OperationalError, match="lock timeout"):
            _ledger_within(postgres_engine, acme.id, "200ms")


# --- audit log --------------------------------------------------------------------------------


def _append_entries(engine: Engine, count: int, actor: str = "admin") -> list[AuditEntry]:
    with session_scope(engine) as session:
        audit = AuditRepository(session)
        return [
            audit.append(
                actor,
                "principal.add",
                f"principal:m{i}",
                {"role": "member", "n": i, "ratio": 0.5, "tags": ["a", "ü"], "none": None},
                at=T0 + timedelta(seconds=i),
            )
            for i in range(count)
        ]


def test_audit_entries_form_a_hash_chain(engine: Engine) -> None:
    entries = _append_entries(engine, 3)
    assert entries[0].prev_hash == GENESIS_HASH == bytes(32)
    assert [e.prev_hash for e in entries[1:]] == [e.entry_hash for e in entries[:-1]]
    for entry in entries:
        assert entry.entry_hash == audit_entry_hash(
            entry.prev_hash,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            details=entry.details,
        )
    with session_scope(engine) as session:
        audit = AuditRepository(session)
        assert audit.verify() == 3
        assert audit.search(limit=3) == entries[::-1]  # what was written is what is read
    assert entries[2].at == T0 + timedelta(seconds=2)
    assert entries[2].details == {
        "n": 2,
        "none": None,
        "ratio": 0.5,
        "role": "member",
        "tags": ["a", "ü"],
    }


def test_audit_hash_covers_every_field() -> None:
    base: dict[str, Any] = {
        "at": T0,
        "actor": "admin",
        "action": "a",
        "target": "t",
        "details": {"x": 1},
    }
    reference = audit_entry_hash(GENESIS_HASH, **base)
    variants: list[dict[str, Any]] = [
        {"at": T0 + timedelta(microseconds=1)},
        {"actor": "admin2"},
        {"action": "b"},
        {"target": "u"},
        {"details": {"x": 2}},
    ]
    for change in variants:
        assert audit_entry_hash(GENESIS_HASH, **(base | change)) != reference, change
    assert audit_entry_hash(b"\x01" * 32, **base) != reference
    assert audit_entry_hash(GENESIS_HASH, **(base | {"details": {"x": 1}})) == reference


def test_verify_of_an_empty_log_checks_nothing(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert AuditRepository(session).verify() == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("details", '{"n":99}'),
        ("details", "not json"),
        ("actor", "someone-else"),
        ("action", "principal.revoke"),
        ("target", "principal:other"),
    ],
)
def test_verify_names_the_modified_entry(engine: Engine, column: str, value: str) -> None:
    entries = _append_entries(engine, 5)
    victim = entries[2].id
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE audit_log SET {column} = :value WHERE id = :id"),
            {"value": value, "id": victim},
        )
    with session_scope(engine) as session, pytest.raises(AuditChainError) as caught:
        AuditRepository(session).verify()
    assert caught.value.entry_id == victim
    assert caught.value.code == "audit_chain_broken"


def test_verify_detects_a_modified_timestamp(engine: Engine) -> None:
    entries = _append_entries(engine, 3)
    with session_scope(engine) as session:  # through the model: stored as the backend does
        session.execute(
            update(AuditLogRow)
            .where(AuditLogRow.id == entries[1].id)
            .values(at=entries[1].at + timedelta(microseconds=1))
        )
    with session_scope(engine) as session, pytest.raises(AuditChainError) as caught:
        AuditRepository(session).verify()
    assert caught.value.entry_id == entries[1].id


def test_verify_detects_a_deleted_middle_entry(engine: Engine) -> None:
    entries = _append_entries(engine, 5)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": entries[2].id})
    with session_scope(engine) as session, pytest.raises(AuditChainError) as caught:
        AuditRepository(session).verify()
    assert caught.value.entry_id == entries[3].id
    assert "removed" in caught.value.reason


def test_a_fork_of_the_chain_is_refused_by_the_database(engine: Engine) -> None:
    entries = _append_entries(engine, 2)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, target, details, prev_hash, entry_hash)"
                " SELECT at, actor, action, target, details, prev_hash, :fake FROM audit_log"
                " WHERE id = :id"
            ),
            {"id": entries[1].id, "fake": label_digest("fork")},
        )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (("", "a", "t", {}), "actor must be 1-128"),
        (("x" * 129, "a", "t", {}), "actor must be 1-128"),
        (("admin", "", "t", {}), "action must be 1-64"),
        (("admin", "a", "t" * 256, {}), "target must be 1-255"),
        (("admin", "a", "t", {"when": T0}), "details must be plain JSON"),
        (("admin", "a", "t", {"x": float("nan")}), "details must be plain JSON"),
    ],
)
def test_bad_audit_entries_are_refused(
    engine: Engine, entry: tuple[str, str, str, dict[str, Any]], message: str
) -> None:
    with session_scope(engine) as session, pytest.raises(InvalidArgumentError, match=message):
        AuditRepository(session).append(*entry)


def test_audit_search_filters_and_pages_newest_first(engine: Engine) -> None:
    admin = _append_entries(engine, 5, actor="admin")
    coordinator = _append_entries(engine, 2, actor="coordinator")
    with session_scope(engine) as session:
        audit = AuditRepository(session)
        assert audit.search() == (admin + coordinator)[::-1]
        assert audit.search(actor="coordinator") == coordinator[::-1]
        assert audit.search(actor="admin", limit=2) == [admin[4], admin[3]]
        newest = audit.page(AuditQuery(actor="admin", size=2))
        assert (newest.items, newest.total, newest.first) == ([admin[4], admin[3]], 5, 1)
        older = AuditQuery.parse(actor="admin", size=2, cursor=newest.next_cursor)
        assert audit.page(older).items == [admin[2], admin[1]]
        assert audit.search(action="principal.add", limit=1) == [coordinator[1]]
        assert audit.search(action="submission.add") == []
        with pytest.raises(InvalidArgumentError, match="page size"):
            audit.search(limit=0)
        assert audit.verify() == 7


def test_concurrent_appends_from_two_engines_keep_one_unbroken_chain(
    database_url: str,
) -> None:
    """Two writers, each with its own engine (think: two hub replicas), append at once.

    On PostgreSQL only the advisory lock stops both reading the same last hash; on SQLite the
    BEGIN IMMEDIATE write lock plus the busy timeout make the second writer wait, not fail.
    """
    per_writer = 50
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def writer(name: str) -> None:
        engine = make_engine(database_url)
        try:
            start.wait()
            for i in range(per_writer):
                with session_scope(engine) as session:
                    AuditRepository(session).append(name, "test.append", f"n:{i}", {"i": i})
        except BaseException as exc:
            failures.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            audit = AuditRepository(session)
            assert audit.verify() == 2 * per_writer
            for name in ("one", "two"):
                assert len(audit.search(actor=name, limit=per_writer + 1)) == per_writer
    finally:
        engine.dispose()


def test_count_made_within_counts_the_members_own_submissions_of_the_kind(engine: Engine) -> None:
    with session_scope(engine) as session:
        acme, beta = add_member(session, "acme"), add_member(session, "beta")
        made = [
            add_submission(session, acme, f"acme-{hours}", created_at=T0 + timedelta(hours=hours))
            for hours in (0, 10, 20, 23, 30)
        ]
        add_submission(session, beta, "beta-1", created_at=T0 + timedelta(hours=21))
        add_submission(
            session, acme, "acme-phone", family_kind="phone", created_at=T0 + timedelta(hours=22)
        )
        submissions = SubmissionRepository(session)
        day = timedelta(days=1)
        # The window is (created_at − 24 h, created_at]: superseded ones count, other members'
        # and other kinds' do not.
        assert [submissions.count_made_within(s, day) for s in made] == [1, 2, 3, 4, 4]
        assert submissions.count_made_within(made[4], timedelta(hours=7)) == 1  # 23 h is out
        assert submissions.count_made_within(made[4], timedelta(hours=8)) == 2
