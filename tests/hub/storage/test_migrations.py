"""The migrations are code under test: they build every test database and must match the models,
and the data migrations carry existing rows over."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import QueuePool

from sigshare.hub.domain import KindParameters, MinHashParameters, SubmissionStatus
from sigshare.hub.errors import DatabaseNotMigratedError
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.models import metadata
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.reviews import ReviewRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.bloom import MAX_BITS, BloomParams
from sigshare.sketch.errors import ParameterError

HEAD = "0010"
"""The newest schema revision."""

TABLES = {
    "principals",
    "kind_parameters",
    "minhash_parameters",
    "submissions",
    "submission_payloads",
    "audit_log",
    "family_state",
    "query_ledgers",
    "confirmations",
    "shared_indicators",
    "clusters",
    "campaigns",
    "campaign_clusters",
    "review_events",
    "web_sessions",
    "member_keys",
    "key_rotations",
    "key_envelopes",
    "rotation_requests",
}


def _schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def _named_schema_objects(engine: Engine) -> dict[str, set[str]]:
    """Every named constraint and index, per table, as the database reports them.

    Primary keys are left out: SQLite does not report their names.
    """
    inspector = inspect(engine)
    names: dict[str, set[str]] = {}
    for table in TABLES:
        found = {fk["name"] for fk in inspector.get_foreign_keys(table)}
        found |= {uq["name"] for uq in inspector.get_unique_constraints(table)}
        found |= {ck["name"] for ck in inspector.get_check_constraints(table)}
        found |= {ix["name"] for ix in inspector.get_indexes(table)}
        names[table] = {name for name in found if name is not None}
    return names


def _model_schema_objects() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for table in metadata.sorted_tables:
        found = {
            str(constraint.name)
            for constraint in table.constraints
            if constraint is not table.primary_key
        }
        found |= {str(index.name) for index in table.indexes}
        names[table.name] = found
    return names


@pytest.fixture
def empty_engine(empty_database_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_database_url)
    yield engine
    engine.dispose()


def test_upgrade_from_empty_reaches_head_and_creates_every_table(empty_engine: Engine) -> None:
    assert migrate.current_revision(empty_engine) is None
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    assert set(inspect(empty_engine).get_table_names()) == TABLES | {"alembic_version"}


def test_migrated_schema_matches_models(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    assert _schema_differences(empty_engine) == []


def test_migrated_constraint_and_index_names_match_models(empty_engine: Engine) -> None:
    # compare_metadata ignores CHECK constraints and partial-index predicates: compare names.
    migrate.upgrade(empty_engine)
    in_database = _named_schema_objects(empty_engine)
    for table, expected in _model_schema_objects().items():
        assert expected <= in_database[table], table
        # PostgreSQL also lists the index backing a unique constraint, under the same name.
        assert in_database[table] <= expected, table
    assert "uq_submissions_one_active" in in_database["submissions"]
    inspector = inspect(empty_engine)
    for table in TABLES:  # SQLite reports no primary key names; PostgreSQL must report ours
        assert inspector.get_pk_constraint(table)["name"] in (None, f"pk_{table}")


def test_require_current_refuses_an_empty_database_and_accepts_a_migrated_one(
    empty_engine: Engine,
) -> None:
    with pytest.raises(DatabaseNotMigratedError, match="sigshare-hub db upgrade") as caught:
        migrate.require_current(empty_engine)
    assert caught.value.current is None
    assert caught.value.expected == migrate.head_revision()
    assert caught.value.code == "database_not_migrated"

    migrate.upgrade(empty_engine)
    migrate.require_current(empty_engine)


def test_downgrade_to_base_then_upgrade_again(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.downgrade(empty_engine, "base")
    assert migrate.current_revision(empty_engine) is None
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    with pytest.raises(DatabaseNotMigratedError):
        migrate.require_current(empty_engine)

    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    assert _schema_differences(empty_engine) == []


def test_sqlite_foreign_keys_are_back_on_after_migrating(tmp_path: Path) -> None:
    # Migrations run with them off (batch table copies would cascade-delete); the pooled
    # connection they ran on must not come back without them.
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate.upgrade(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    assert pool.checkedin() == 1  # the very connection the migration used
    engine.dispose()


def test_upgrade_accepts_a_url_as_well_as_an_engine(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    migrate.require_current(engine)
    engine.dispose()


def test_migrations_are_found_from_the_package_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert migrate.head_revision() == HEAD
    assert (migrate.MIGRATIONS_DIR / "env.py").is_file()
    assert (migrate.MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()


# --- 0004: per-member resolution ---------------------------------------------------------------

BEFORE_RESOLUTION = "0003"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BIG_CAPACITY = 200_000_000
"""At a rate of 10⁻³ / 31 this needs more than 2³² bits: the migration keeps its old size."""


def _reflected(engine: Engine) -> dict[str, Table]:
    """The tables as the database has them now (not as the current models describe them)."""
    reflected = MetaData()
    reflected.reflect(engine)
    return dict(reflected.tables)


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def _insert_acme(connection: Connection, tables: dict[str, Table]) -> None:
    """Member ``acme`` (id 1), as every schema revision stores a principal."""
    connection.execute(
        insert(tables["principals"]).values(
            id=1,
            name="acme",
            role="member",
            credential_id="a" * 16,
            credential_hash=bytes(32),
            created_at=T0,
        )
    )


def _seed_before_resolution(engine: Engine, kinds: dict[str, tuple[int, int]]) -> None:
    """Rows as a hub at revision 0003 wrote them: ``kinds`` (name → capacity, quorum) at a
    stated per-filter rate of 10⁻³, a counted filter with its payload, and email's count
    vector."""
    tables = _reflected(engine)
    with engine.begin() as connection:
        _insert_acme(connection, tables)
        for kind, (capacity, quorum) in kinds.items():
            old = BloomParams.for_capacity(kind, "epoch-1", capacity, 0.001)
            connection.execute(
                insert(tables["kind_parameters"]).values(
                    kind=kind,
                    key_id="epoch-1",
                    capacity=capacity,
                    target_fpr=0.001,
                    m=old.m,
                    k=old.k,
                    quorum=quorum,
                    retention_days=14,
                    reveal_members=True,
                    updated_at=T0,
                )
            )
        connection.execute(
            insert(tables["submissions"]).values(
                id=1,
                member_id=1,
                family_kind="email",
                key_id="epoch-1",
                params_digest=bytes(32),
                content_sha256=b"\x01" * 32,
                declared_count=10,
                byte_size=5,
                set_bits=100,
                status="active",
                counted=True,
                created_at=T0,
                expires_at=T0 + timedelta(days=14),
            )
        )
        connection.execute(
            insert(tables["submission_payloads"]).values(submission_id=1, payload=b"bloom")
        )
        connection.execute(
            insert(tables["family_state"]).values(
                family_kind="email",
                key_id="epoch-1",
                params_digest=bytes(32),
                m=1024,
                members=1,
                version=1,
                derived_version=0,
                updated_at=T0,
            )
        )
        connection.execute(
            insert(tables["count_slices"]).values(family_kind="email", slice_no=0, counts=b"\x01")
        )


def _expected_kind(kind: str, capacity: int, quorum: int, max_members: int) -> KindParameters:
    return KindParameters.for_forum(
        kind=kind,
        key_id="epoch-1",
        capacity=capacity,
        forum_fpr=0.001,
        max_members=max_members,
        updated_at=T0,
        quorum=quorum,
        retention_days=14,
        reveal_members=True,
        replace_interval_seconds=3600,
    )


def _check_upgraded_rows(engine: Engine) -> None:
    with session_scope(engine) as session:
        parameters = ParameterRepository(session)
        email, phone = parameters.get_kind("email"), parameters.get_kind("phone")
        submissions = SubmissionRepository(session)
        submission = submissions.get(1)
        payload = submissions.payload(1)
    # The stated rate becomes the forum rate; filters are re-sized for 32 members.
    assert email == _expected_kind("email", 1000, 3, 32)
    assert email is not None
    sized = BloomParams.for_forum("email", "epoch-1", 1000, 0.001, 32)
    assert (email.forum_fpr, email.max_members, email.m, email.k) == (0.001, 32, sized.m, sized.k)
    assert email.replace_interval_seconds == 3600
    assert email.target_fpr == 0.001 / 31
    # Too large for 32 members: a smaller forum whose filters fit in 2^32 bits (a forum of
    # two keeps the old size), sized consistently so that the kind loads and publishes.
    with pytest.raises(ParameterError, match="more than 2\\^32"):
        BloomParams.for_forum("phone", "epoch-1", BIG_CAPACITY, 0.001, 32)
    assert phone is not None
    assert 2 <= phone.max_members < 32
    assert phone == _expected_kind("phone", BIG_CAPACITY, 2, phone.max_members)
    assert phone.m <= MAX_BITS
    # Submissions keep their rows and payloads; nobody has asked anything yet.
    assert submission is not None
    assert (submission.status, submission.tokens_asked, payload) == (
        SubmissionStatus.ACTIVE,
        0,
        b"bloom",
    )
    tables = set(inspect(engine).get_table_names())
    assert "count_slices" not in tables
    assert "query_ledgers" in tables
    assert "counted" not in _columns(engine, "submissions")
    assert "members" not in _columns(engine, "family_state")
    assert "target_fpr" not in _columns(engine, "kind_parameters")


def test_0004_carries_kinds_and_submissions_over_and_downgrades(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine, BEFORE_RESOLUTION)
    assert migrate.current_revision(empty_engine) == BEFORE_RESOLUTION
    _seed_before_resolution(empty_engine, {"email": (1000, 3), "phone": (BIG_CAPACITY, 2)})

    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    assert _schema_differences(empty_engine) == []
    _check_upgraded_rows(empty_engine)

    migrate.downgrade(empty_engine, BEFORE_RESOLUTION)
    assert migrate.current_revision(empty_engine) == BEFORE_RESOLUTION
    tables = _reflected(empty_engine)
    assert "query_ledgers" not in tables
    assert {"target_fpr", "m", "k"} <= _columns(empty_engine, "kind_parameters")
    assert not {"forum_fpr", "max_members", "replace_interval_seconds"} & _columns(
        empty_engine, "kind_parameters"
    )
    assert "tokens_asked" not in _columns(empty_engine, "submissions")
    with empty_engine.connect() as connection:
        kinds = connection.execute(
            select(tables["kind_parameters"].c.kind, tables["kind_parameters"].c.target_fpr)
        ).all()
        counted = connection.execute(select(tables["submissions"].c.counted)).scalars().all()
        families = connection.scalar(select(func.count()).select_from(tables["family_state"]))
        slices = connection.scalar(select(func.count()).select_from(tables["count_slices"]))
        payloads = connection.scalar(
            select(func.count()).select_from(tables["submission_payloads"])
        )
    assert sorted(kinds) == [("email", 0.001), ("phone", 0.001)]
    # Nothing is counted and every family starts afresh: 0003 rebuilds its count vectors.
    assert (counted, families, slices, payloads) == ([False], 0, 0, 1)
    assert "members" in _columns(empty_engine, "family_state")

    migrate.upgrade(empty_engine)
    assert _schema_differences(empty_engine) == []
    _check_upgraded_rows(empty_engine)


@pytest.mark.parametrize(
    ("capacity", "quorum"), [(BIG_CAPACITY, 3), (1000, 40)], ids=["too-large", "quorum-40"]
)
def test_0004_keeps_every_kind_loadable_whatever_its_quorum(
    empty_engine: Engine, capacity: int, quorum: int
) -> None:
    # KindParameters refuses quorum > max_members: a forum size below the kind's quorum would
    # make the kind (and every listing of kinds) fail to load after the upgrade.
    migrate.upgrade(empty_engine, BEFORE_RESOLUTION)
    _seed_before_resolution(empty_engine, {"phone": (capacity, quorum)})
    migrate.upgrade(empty_engine)
    with session_scope(empty_engine) as session:
        phone = ParameterRepository(session).get_kind("phone")
    assert phone is not None
    assert phone.quorum == quorum <= phone.max_members
    assert phone.m <= MAX_BITS


# --- 0005: rewording-robust MinHash families ----------------------------------------------------

BEFORE_REWORDING = "0004"
OLD_PROMPT_DIGEST = hashlib.sha256(
    json.dumps(
        {
            "format": "sigshare/minhash-params/v1",
            "key_id": "epoch-1",
            "num_perm": 64,
            "shingle_size": 4,
            "shingle_unit": "word",
            "text_rules": 1,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
).digest()
"""What members' signatures of ``prompt`` were made under before 0005: the digest document as
it was then, with no stopword or core-rules key."""
CLUSTER_ID = "0123456789abcdef0123456789abcdef"


def _seed_before_rewording(engine: Engine) -> None:
    """Rows as a hub at revision 0004 wrote them: MinHash family ``prompt`` (P = 64, word
    4-shingles, θ 0.6) and one member's active cluster submission under its digest."""
    tables = _reflected(engine)
    with engine.begin() as connection:
        _insert_acme(connection, tables)
        connection.execute(
            insert(tables["minhash_parameters"]).values(
                family="prompt",
                key_id="epoch-1",
                num_perm=64,
                shingle_unit="word",
                shingle_size=4,
                threshold=0.6,
                quorum=3,
                retention_days=14,
                reveal_members=True,
                updated_at=T0,
            )
        )
        connection.execute(
            insert(tables["submissions"]).values(
                id=1,
                member_id=1,
                family_kind="minhash:prompt",
                key_id="epoch-1",
                params_digest=OLD_PROMPT_DIGEST,
                content_sha256=b"\x02" * 32,
                declared_count=1,
                byte_size=7,
                status="active",
                created_at=T0,
                expires_at=T0 + timedelta(days=14),
            )
        )
        connection.execute(
            insert(tables["submission_payloads"]).values(submission_id=1, payload=b"minhash")
        )
        connection.execute(
            insert(tables["clusters"]).values(
                id=1,
                submission_id=1,
                row_index=0,
                cluster_id=CLUSTER_ID,
                volume=40,
                category="jailbreak",
                first_seen=T0 - timedelta(days=3),
                last_seen=T0,
            )
        )


def _rows(engine: Engine, table: str) -> list[dict[str, object]]:
    with engine.connect() as connection:
        found = connection.execute(select(_reflected(engine)[table])).mappings().all()
    return [dict(row) for row in found]


def _check_rewording_rows(engine: Engine) -> None:
    with session_scope(engine) as session:
        prompt = ParameterRepository(session).get_minhash_family("prompt")
        due = SubmissionRepository(session).due(
            "minhash:prompt", "epoch-1", OLD_PROMPT_DIGEST, T0 + timedelta(days=1)
        )
    assert prompt == MinHashParameters(
        family="prompt",
        key_id="epoch-1",
        num_perm=64,
        shingle_unit="word",
        shingle_size=4,
        drop_stopwords=False,
        core_rules=1,
        threshold=0.6,
        cluster_threshold=None,
        quorum=3,
        retention_days=14,
        reveal_members=True,
        updated_at=T0,
    )
    # Members' signatures stay valid: the digest is exactly the one they were made under, so
    # the family is not reset and their submission is not retired.
    assert prompt.digest() == OLD_PROMPT_DIGEST
    assert prompt.member_threshold == 0.6
    assert due == []
    clusters = _rows(engine, "clusters")
    assert [(c["cluster_id"], c["volume"], c["core_size"]) for c in clusters] == [
        (CLUSTER_ID, 40, 0)
    ]


def test_0005_keeps_old_families_digests_and_downgrades_keeping_rows(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, BEFORE_REWORDING)
    _seed_before_rewording(empty_engine)
    assert not {"drop_stopwords", "core_rules", "cluster_threshold"} & _columns(
        empty_engine, "minhash_parameters"
    )

    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    assert _schema_differences(empty_engine) == []
    _check_rewording_rows(empty_engine)
    # Sent before core sizes existed: the column holds 0 (not stated), not NULL.
    assert [row["core_size"] for row in _rows(empty_engine, "clusters")] == [0]

    migrate.downgrade(empty_engine, BEFORE_REWORDING)
    assert migrate.current_revision(empty_engine) == BEFORE_REWORDING
    assert not {"drop_stopwords", "core_rules", "cluster_threshold"} & _columns(
        empty_engine, "minhash_parameters"
    )
    assert "core_size" not in _columns(empty_engine, "clusters")
    families = _rows(empty_engine, "minhash_parameters")
    assert [(f["family"], f["num_perm"], f["shingle_size"], f["threshold"]) for f in families] == [
        ("prompt", 64, 4, 0.6)
    ]
    clusters = _rows(empty_engine, "clusters")
    assert [(c["cluster_id"], c["volume"], c["category"]) for c in clusters] == [
        (CLUSTER_ID, 40, "jailbreak")
    ]

    migrate.upgrade(empty_engine)
    assert _schema_differences(empty_engine) == []
    _check_rewording_rows(empty_engine)


# --- 0006: submissions withdrawn at revocation -------------------------------------------------

BEFORE_WITHDRAWN = "0005"


def test_0006_admits_withdrawn_submissions_and_downgrades_them_to_expired(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, BEFORE_WITHDRAWN)
    tables = _reflected(empty_engine)
    submissions = tables["submissions"]
    with empty_engine.begin() as connection:
        _insert_acme(connection, tables)
        connection.execute(
            insert(submissions).values(
                id=1,
                member_id=1,
                family_kind="email",
                key_id="epoch-1",
                params_digest=b"\x01" * 32,
                content_sha256=b"\x02" * 32,
                declared_count=1,
                byte_size=7,
                status="active",
                tokens_asked=0,
                created_at=T0,
                expires_at=T0 + timedelta(days=14),
            )
        )
    withdraw = update(submissions).where(submissions.c.id == 1).values(status="withdrawn")
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(withdraw)

    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision() == HEAD
    assert _schema_differences(empty_engine) == []
    with empty_engine.begin() as connection:
        connection.execute(withdraw)
    assert [row["status"] for row in _rows(empty_engine, "submissions")] == ["withdrawn"]
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(update(submissions).values(status="revoked"))

    migrate.downgrade(empty_engine, BEFORE_WITHDRAWN)
    assert migrate.current_revision(empty_engine) == BEFORE_WITHDRAWN
    assert [row["status"] for row in _rows(empty_engine, "submissions")] == [
        SubmissionStatus.EXPIRED.value
    ]
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(withdraw)


# --- 0007: payloads in the blob store ------------------------------------------------------------

BEFORE_BLOBS = "0006"


def test_0007_keeps_database_payloads_readable_and_refuses_to_downgrade_over_blobs(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, BEFORE_BLOBS)
    tables = _reflected(empty_engine)
    with empty_engine.begin() as connection:
        _insert_acme(connection, tables)
        for number in (1, 2):
            connection.execute(
                insert(tables["submissions"]).values(
                    id=number,
                    member_id=1,
                    family_kind=f"kind{number}",
                    key_id="epoch-1",
                    params_digest=b"\x01" * 32,
                    content_sha256=bytes([number]) * 32,
                    declared_count=1,
                    byte_size=7,
                    status="active",
                    tokens_asked=0,
                    created_at=T0,
                    expires_at=T0 + timedelta(days=14),
                )
            )
        connection.execute(
            insert(tables["submission_payloads"]).values(submission_id=1, payload=b"filter1")
        )

    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision() == HEAD
    assert _schema_differences(empty_engine) == []
    with session_scope(empty_engine) as session:
        assert SubmissionRepository(session).payload(1) == b"filter1"  # stays in the database
    payloads = _reflected(empty_engine)["submission_payloads"]
    for neither_or_both in ({}, {"payload": b"x", "blob": "a" * 64 + "-" + "b" * 16}):
        with pytest.raises(IntegrityError), empty_engine.begin() as connection:
            connection.execute(insert(payloads).values(submission_id=2, **neither_or_both))
    with empty_engine.begin() as connection:
        connection.execute(insert(payloads).values(submission_id=2, blob="a" * 64 + "-" + "b" * 16))

    with pytest.raises(RuntimeError, match="1 submission payloads live in the blob store"):
        migrate.downgrade(empty_engine, BEFORE_BLOBS)
    assert migrate.current_revision(empty_engine) == HEAD
    with empty_engine.begin() as connection:
        connection.execute(payloads.delete().where(payloads.c.submission_id == 2))
    migrate.downgrade(empty_engine, BEFORE_BLOBS)
    assert migrate.current_revision(empty_engine) == BEFORE_BLOBS
    assert [row["payload"] for row in _rows(empty_engine, "submission_payloads")] == [b"filter1"]


# --- 0008: review events say what they were ------------------------------------------------------

BEFORE_EVENT_KIND = "0007"


def test_0008_classifies_existing_review_events_and_stores_the_kind_from_then_on(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, BEFORE_EVENT_KIND)
    events = _reflected(empty_engine)["review_events"]
    steps = [  # (record, from, to, assignee after the step, note), in the order they happened
        ("a" * 32, None, None, "coord", None),  # assigned
        ("a" * 32, None, None, "coord", "asked m1 for a call"),  # a note: assignee unchanged
        ("b" * 32, None, None, None, "first look"),  # a note on an unassigned record
        ("a" * 32, "new", "triaged", "coord", None),  # a status move keeps the assignee
        ("b" * 32, None, None, "lead", "yours"),  # assigned, with a note
        ("a" * 32, None, None, None, "handed back"),  # unassigned, with a note
        ("b" * 32, None, None, "lead", None),  # assigned again to the same name: an assignment
    ]
    with empty_engine.begin() as connection:
        for number, (record, before, after, assignee, note) in enumerate(steps, start=1):
            connection.execute(
                insert(events).values(
                    id=number,
                    record_type="campaign",
                    record_id=record,
                    actor="cli:root",
                    at=T0 + timedelta(minutes=number),
                    from_status=before,
                    to_status=after,
                    assignee=assignee,
                    note=note,
                )
            )

    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == HEAD
    assert _schema_differences(empty_engine) == []
    kinds = {row["id"]: row["kind"] for row in _rows(empty_engine, "review_events")}
    assert [kinds[number] for number in range(1, len(steps) + 1)] == [
        "assign",
        "note",
        "note",
        "status",
        "assign",
        "assign",
        "assign",
    ]
    with session_scope(empty_engine) as session:
        history = ReviewRepository(session).history("a" * 32)
    assert [event.change for event in history] == [
        "assigned to coord",
        "note",
        "new → triaged",
        "unassigned",
    ]
    events = _reflected(empty_engine)["review_events"]
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(update(events).where(events.c.id == 1).values(kind="renamed"))

    migrate.downgrade(empty_engine, BEFORE_EVENT_KIND)
    assert migrate.current_revision(empty_engine) == BEFORE_EVENT_KIND
    assert "kind" not in {c.name for c in _reflected(empty_engine)["review_events"].columns}
    assert len(_rows(empty_engine, "review_events")) == len(steps)


# --- 0009: notes for members ---------------------------------------------------------------------

BEFORE_MEMBER_NOTES = "0008"


def test_0009_gives_records_and_events_a_member_note_that_existing_rows_lack(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, BEFORE_MEMBER_NOTES)
    tables = _reflected(empty_engine)
    record = "c" * 32
    with empty_engine.begin() as connection:
        connection.execute(
            insert(tables["shared_indicators"]).values(
                id=1,
                public_id=record,
                kind="email",
                key_id="epoch-1",
                token=bytes(16),
                reporters=2,
                categories="[]",
                status="confirmed",
                created_at=T0,
                updated_at=T0,
            )
        )
        connection.execute(
            insert(tables["review_events"]).values(
                id=1,
                record_type="indicator",
                record_id=record,
                actor="cli:root",
                at=T0,
                kind="status",
                from_status="triaged",
                to_status="confirmed",
            )
        )

    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == HEAD
    assert _schema_differences(empty_engine) == []
    with session_scope(empty_engine) as session:
        repository = ReviewRepository(session)
        state = repository.record(record)
        (event,) = repository.history(record)
    assert state is not None
    assert (state.status.value, state.member_note) == ("confirmed", None)
    assert (event.change, event.member_note) == ("triaged → confirmed", None)
    for table in ("shared_indicators", "campaigns", "review_events"):
        assert "member_note" in {c.name for c in _reflected(empty_engine)[table].columns}

    migrate.downgrade(empty_engine, BEFORE_MEMBER_NOTES)
    assert migrate.current_revision(empty_engine) == BEFORE_MEMBER_NOTES
    for table in ("shared_indicators", "campaigns", "review_events"):
        assert "member_note" not in {c.name for c in _reflected(empty_engine)[table].columns}
    assert len(_rows(empty_engine, "review_events")) == 1


# --- 0010: sealed distribution of the forum secret ----------------------------------------------

BEFORE_KEYRING = "0009"
KEYRING = "0010"


def _register(connection: Connection, keys: Table, number: int, **approval: object) -> None:
    connection.execute(
        insert(keys).values(
            id=number,
            principal_id=1,
            sealing_public=bytes([number]) * 1216,
            signing_public=bytes([number]) * 32,
            fingerprint=f"SHA256:{number}",
            registered_at=T0,
            **approval,
        )
    )


def test_0010_admits_custodians_and_their_keys_and_downgrades_only_without_them(
    empty_engine: Engine,
) -> None:
    """One pending and one approved registration per principal at most; envelopes know their
    size; a downgrade is refused while a custodian exists."""
    migrate.upgrade(empty_engine, BEFORE_KEYRING)
    before = _reflected(empty_engine)
    principals = before["principals"]
    custodian = insert(principals).values(
        id=2,
        name="secretariat",
        role="custodian",
        credential_id="c" * 16,
        credential_hash=bytes(32),
        created_at=T0,
    )
    with empty_engine.begin() as connection:
        _insert_acme(connection, before)
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(custodian)

    migrate.upgrade(empty_engine, KEYRING)
    assert migrate.current_revision(empty_engine) == KEYRING
    tables = _reflected(empty_engine)
    keys = tables["member_keys"]
    with empty_engine.begin() as connection:
        connection.execute(custodian)
        _register(connection, keys, 1, approved_at=T0, approved_by="cli:alice")
        _register(connection, keys, 2)  # pending beside the approved one
        _register(connection, keys, 3, approved_at=T0, approved_by="cli:alice", retired_at=T0)
    for refused in (
        {"approved_at": T0, "approved_by": "cli:alice"},  # a second approved registration
        {},  # a second pending one
        {"approved_at": T0},  # approved by nobody
    ):
        with pytest.raises(IntegrityError), empty_engine.begin() as connection:
            _register(connection, keys, 4, **refused)
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(update(keys).where(keys.c.id == 2).values(signing_public=b"short"))
    rotation = {"key_id": "epoch-2", "custodian_id": 2, "created_at": T0, "total_bytes": 0}
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(insert(tables["key_rotations"]).values(recipients=0, **rotation))
    with empty_engine.begin() as connection:
        connection.execute(insert(tables["key_rotations"]).values(recipients=1, **rotation))
    envelope = {"key_id": "epoch-2", "recipient_id": 1, "member_key_id": 1, "created_at": T0}
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(
            insert(tables["key_envelopes"]).values(envelope=b"SGEV", byte_size=5, **envelope)
        )
    with empty_engine.begin() as connection:
        connection.execute(
            insert(tables["key_envelopes"]).values(envelope=b"SGEV", byte_size=4, **envelope)
        )
        connection.execute(
            insert(tables["rotation_requests"]).values(
                reason="member zed revoked",
                requested_by="cli:alice",
                requested_at=T0,
                satisfied_by="epoch-2",
            )
        )

    with pytest.raises(RuntimeError, match="1 custodian principals exist"):
        migrate.downgrade(empty_engine, BEFORE_KEYRING)
    assert migrate.current_revision(empty_engine) == KEYRING
    with empty_engine.begin() as connection:
        for table in ("rotation_requests", "key_envelopes", "key_rotations"):
            connection.execute(tables[table].delete())
        connection.execute(principals.delete().where(principals.c.id == 2))
    migrate.downgrade(empty_engine, BEFORE_KEYRING)
    assert migrate.current_revision(empty_engine) == BEFORE_KEYRING
    assert not {"member_keys", "key_rotations", "key_envelopes", "rotation_requests"} & set(
        inspect(empty_engine).get_table_names()
    )
    assert [row["name"] for row in _rows(empty_engine, "principals")] == ["acme"]
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(custodian)

    migrate.upgrade(empty_engine)
    assert _schema_differences(empty_engine) == []


def test_0010_admits_pending_submissions_and_downgrades_them_to_expired_without_payloads(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, BEFORE_KEYRING)
    tables = _reflected(empty_engine)
    submissions = tables["submissions"]
    row = {
        "member_id": 1,
        "family_kind": "email",
        "params_digest": b"\x01" * 32,
        "declared_count": 1,
        "byte_size": 7,
        "tokens_asked": 0,
        "created_at": T0,
        "expires_at": T0 + timedelta(days=14),
    }
    with empty_engine.begin() as connection:
        _insert_acme(connection, tables)
        connection.execute(
            insert(submissions).values(
                id=1, key_id="epoch-1", content_sha256=b"\x02" * 32, status="active", **row
            )
        )
    pending = insert(submissions).values(
        id=2, key_id="epoch-2", content_sha256=b"\x03" * 32, status="pending", **row
    )
    with pytest.raises(IntegrityError), empty_engine.begin() as connection:
        connection.execute(pending)

    migrate.upgrade(empty_engine, KEYRING)
    tables = _reflected(empty_engine)
    with empty_engine.begin() as connection:
        connection.execute(pending)  # beside the active one: the one-active index ignores it
        for number in (1, 2):
            connection.execute(
                insert(tables["submission_payloads"]).values(
                    submission_id=number, payload=b"payload"
                )
            )
    migrate.downgrade(empty_engine, BEFORE_KEYRING)
    assert [(r["id"], r["status"]) for r in _rows(empty_engine, "submissions")] == [
        (1, "active"),
        (2, "expired"),
    ]
    assert [r["submission_id"] for r in _rows(empty_engine, "submission_payloads")] == [1]
    migrate.upgrade(empty_engine)
    assert _schema_differences(empty_engine) == []
