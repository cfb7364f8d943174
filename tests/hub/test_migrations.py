"""The migrations are code under test: they build every test database and must match the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from sigshare.hub.errors import DatabaseNotMigratedError
from sigshare.hub.storage import make_engine, migrate
from sigshare.hub.storage.models import metadata

TABLES = {
    "principals",
    "kind_parameters",
    "minhash_parameters",
    "submissions",
    "submission_payloads",
    "audit_log",
    "family_state",
    "count_slices",
    "confirmations",
    "shared_indicators",
    "clusters",
    "campaigns",
    "campaign_clusters",
    "review_events",
    "web_sessions",
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
    assert engine.pool.checkedin() == 1  # the very connection the migration used
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
    assert migrate.head_revision() == "0003"
    assert (migrate.MIGRATIONS_DIR / "env.py").is_file()
    assert (migrate.MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()
