"""Backups restore to the same answers: an SQLite database (and its payload blobs) copied
online with ``sigshare-hub db backup`` while the hub serves, a PostgreSQL database with
``pg_dump`` / ``pg_restore`` and its blob directory copied after the dump (docs/operator-guide.md,
section 7). After the backup the live forum changes;
the restored database answers every member's resolution exactly as the forum did when it was
backed up, and those answers agree with the exact oracle."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import URL, make_url

from sigshare.client.exit_codes import ExitCode
from sigshare.hub.storage import migrate
from sigshare.hub.storage.database import make_engine
from tests.support.cli import invoke_hub
from tests.support.databases import fresh_postgres_database
from tests.support.hub import (
    MEMBERS,
    EmailForum,
    email_forum,
    provision,
    resolve_email,
    resolved_counts,
    running_hub,
    submit_email,
)

QUORUM = 2
Answers = dict[str, list[int]]


def answers(
    url: str, credentials: dict[str, str], forum: EmailForum, blob_dir: Path | None = None
) -> Answers:
    """Every member's resolution of its own values, as counts of other holders."""
    engine = make_engine(url, blob_dir=blob_dir)
    try:
        with running_hub(engine, credentials) as running:
            return {
                member: resolve_email(running.client(member), forum, member).others.tolist()
                for member in MEMBERS
            }
    finally:
        engine.dispose()


def libpq(url: URL) -> str:
    """The URL as pg_dump and pg_restore read it (no SQLAlchemy driver name)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def run_tool(*command: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert completed.returncode == 0, completed.stderr


def test_restored_backup_answers_as_the_forum_did_when_backed_up(
    empty_database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = empty_database_url
    migrate.upgrade(url)
    # PostgreSQL replicas share a blob directory the operator names; SQLite's is beside it.
    blob_dir = None if url.startswith("sqlite") else tmp_path / "blobs"
    engine = make_engine(url, blob_dir=blob_dir)
    credentials = provision(engine)
    forum = email_forum()
    backup = tmp_path / "hub-backup.db"
    try:
        with running_hub(engine, credentials) as running:
            for member in MEMBERS:
                submit_email(running.client(member), forum, member)
            before = {}
            for member in MEMBERS:
                result = resolve_email(running.client(member), forum, member)
                resolved_counts(forum, member, result, QUORUM)  # the exact oracle
                before[member] = result.others.tolist()

            if url.startswith("sqlite"):
                made = invoke_hub(
                    url, "db", "backup", "--out", str(backup), "--json"
                )  # while serving
                assert made.exit_code == 0, made.output
                document = json.loads(made.stdout)
                assert document["backup"] == str(backup)
                assert document["bytes"] == backup.stat().st_size
                assert document["revision"] == migrate.head_revision()
                assert stat.S_IMODE(backup.stat().st_mode) == 0o600
                assert document["blob_dir"] == f"{backup}.blobs"
                assert document["blobs"] == len(MEMBERS)  # one filter per member
                assert document["blob_bytes"] > 0
            else:
                dump = shutil.which("pg_dump")
                assert dump is not None, "pg_dump is not installed"
                run_tool(
                    dump, "--format=custom", f"--file={backup}", f"--dbname={libpq(make_url(url))}"
                )
                assert blob_dir is not None
                shutil.copytree(blob_dir, tmp_path / "blobs-backup")  # the runbook: after the dump

            # The live forum moves on: m2 replaces its filter with values nobody else holds.
            changed = {**forum.sets, "m2": frozenset(f"new{i}@m2.example" for i in range(50))}
            live_forum = EmailForum(sets=changed, prf=forum.prf)
            submit_email(running.client("m2"), live_forum, "m2")
            live_m1 = resolve_email(running.client("m1"), forum, "m1").others.tolist()
            assert live_m1 != before["m1"]
    finally:
        engine.dispose()

    if url.startswith("sqlite"):
        restored_path = tmp_path / "restored" / "sigshare-hub.db"
        restored_path.parent.mkdir()
        shutil.copyfile(backup, restored_path)  # the runbook: `install -m 0600 BACKUP DB`
        restored_path.chmod(0o600)
        shutil.copytree(f"{backup}.blobs", f"{restored_path}.blobs")
        restored = f"sqlite:///{restored_path}"
        assert invoke_hub(restored, "db", "upgrade").exit_code == 0
        assert answers(restored, credentials, forum) == before
        return
    server = request.getfixturevalue("postgres_server")
    with fresh_postgres_database(server) as target:
        restore = shutil.which("pg_restore")
        assert restore is not None, "pg_restore is not installed"
        run_tool(restore, "--no-owner", "--exit-on-error", f"--dbname={libpq(target)}", str(backup))
        restored = target.render_as_string(hide_password=False)
        assert invoke_hub(restored, "db", "upgrade").exit_code == 0
        restored_blobs = tmp_path / "blobs-backup"
        checked = invoke_hub(restored, "--blob-dir", str(restored_blobs), "db", "blobs", "--json")
        assert checked.exit_code == 0, checked.output
        assert json.loads(checked.stdout)["missing"] == []
        assert answers(restored, credentials, forum, restored_blobs) == before


def test_backup_refuses_without_changing_anything(
    tmp_path: Path, migrated_postgres_url: str
) -> None:
    database = tmp_path / "hub.db"
    url = f"sqlite:///{database}"
    assert invoke_hub(url, "db", "upgrade").exit_code == 0

    existing = tmp_path / "existing.db"
    existing.write_bytes(b"keep me")
    refused = invoke_hub(url, "db", "backup", "--out", str(existing))
    assert refused.exit_code == ExitCode.INPUT
    assert f"{existing} already exists" in refused.stderr
    assert existing.read_bytes() == b"keep me"

    missing = tmp_path / "missing.db"
    refused = invoke_hub(f"sqlite:///{missing}", "db", "backup", "--out", str(tmp_path / "b1.db"))
    assert refused.exit_code == ExitCode.CONFIG
    assert "no such database file" in refused.stderr
    assert not missing.exists()
    assert not (tmp_path / "b1.db").exists()

    not_a_database = tmp_path / "garbage.db"
    not_a_database.write_bytes(b"not an sqlite file" * 100)
    refused = invoke_hub(
        f"sqlite:///{not_a_database}", "db", "backup", "--out", str(tmp_path / "b2.db")
    )
    assert refused.exit_code == ExitCode.INPUT
    assert "cannot back up" in refused.stderr
    assert not (tmp_path / "b2.db").exists()

    refused = invoke_hub(migrated_postgres_url, "db", "backup", "--out", str(tmp_path / "b3.db"))
    assert refused.exit_code == ExitCode.INPUT
    assert "back it up with pg_dump" in refused.stderr
    assert not (tmp_path / "b3.db").exists()
