"""A forum with sealed key distribution, for the tests of the member's ``sigshare keys`` commands,
of the pickup in its nightly job and of whole key rotations.

A real hub (the real servicers and authentication, plaintext on a loopback port) serves in this
process over SQLite or PostgreSQL. :func:`provision` sets its database up as a :class:`ForumPlan`
says: ``email`` (and, if planned, a MinHash family) published under key epoch :data:`KEY_ID`,
the planned members and the custodian :data:`CUSTODIAN`. SQLite tests copy one provisioned
template file per session (:func:`provision_template`, :func:`sealed_forum`); any database URL
serves through :func:`serving_forum`. Each principal has its own directory (credential, forum
secret, configuration, state) and runs the ``sigshare`` command in this process through click's
test runner, so a test reads exit codes and exact output. The forum's admin works through
``sigshare-hub`` likewise, and a test that plays a hostile hub writes the hub's envelope table
directly. Every command's output is checked for secrets (:class:`~tests.support.e2e.SecretWatch`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from sigshare.client.cli import cli
from sigshare.hub.cli import cli as hub_cli_group
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.models import (
    KeyEnvelopeRow,
    KeyRotationRow,
    MemberKeyRow,
    PrincipalRow,
)
from sigshare.keyring import MemberKeys, load_member_keys
from sigshare.sketch.keys import ForumSecret, load_secret_file, write_secret_file
from tests.support.e2e import SecretWatch, hub_cli, write_config, write_private
from tests.support.hub import RunningHub, running_hub

KEY_ID = "k1"
CUSTODIAN = "keeper"
MEMBERS = ("alpha", "beta")
FIRST_SECRET = ForumSecret(KEY_ID, bytes(range(32)))
"""The forum secret every member was set up with, by hand."""
CLI_ENV: dict[str, str | None] = {"COLUMNS": "200", "NO_COLOR": "1", "SIGSHARE_CONFIG": None}


@dataclass(frozen=True)
class ForumPlan:
    """Who the hub knows and what it publishes before a test's first step."""

    members: tuple[str, ...] = MEMBERS
    email_capacity: int = 100
    email_fpr: float = 0.001
    """The forum-level false-shared rate of ``email`` (``params set --fpr``)."""
    email_quorum: int = 2
    prompt_family: str | None = None
    """A MinHash family for prompts, published with the recommended profile (none: prompts
    are not shared)."""
    prompt_quorum: int = 2


DEFAULT_PLAN = ForumPlan()
"""Members :data:`MEMBERS` and ``email`` alone: the forum of the ``sigshare keys`` tests."""


def provision(url: str, plan: ForumPlan = DEFAULT_PLAN) -> dict[str, str]:
    """Migrate the empty database at ``url``, publish what ``plan`` says and add its principals
    through ``sigshare-hub``; their credentials by name (the custodian's last)."""
    migrate.upgrade(url)
    hub_cli(
        url,
        *("params", "set", "email", "--key-id", KEY_ID),
        *("--capacity", str(plan.email_capacity), "--fpr", str(plan.email_fpr)),
        *("--quorum", str(plan.email_quorum)),
    )
    if plan.prompt_family is not None:
        hub_cli(
            url,
            *("params", "set-minhash", plan.prompt_family, "--key-id", KEY_ID),
            *("--quorum", str(plan.prompt_quorum)),
        )
    credentials = {name: hub_cli(url, "member", "add", name).strip() for name in plan.members}
    credentials[CUSTODIAN] = hub_cli(url, "member", "add", CUSTODIAN, "--role", "custodian").strip()
    return credentials


def provision_template(path: Path, plan: ForumPlan = DEFAULT_PLAN) -> dict[str, str]:
    """:func:`provision` an SQLite hub at ``path`` (copied for each test by
    :func:`sealed_forum`); the principals' credentials by name."""
    return provision(f"sqlite:///{path}", plan)


@dataclass
class Person:
    """A member's or the custodian's files, and its ``sigshare`` command."""

    name: str
    forum: SealedForum
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "config.toml"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def secret_file(self) -> Path:
        return self.directory / "forum.secret"

    def installed(self, key_id: str) -> Path:
        """Where this person's secret of ``key_id`` is installed."""
        return self.directory / f"forum.{key_id}.secret"

    def keys(self) -> MemberKeys:
        return load_member_keys(self.keys_dir)

    def run(self, *args: str) -> Result:
        """``sigshare ARGS --config CONFIG``, run to completion; never prints a secret."""
        result = CliRunner().invoke(cli, [*args, "--config", str(self.config)], env=CLI_ENV)
        self.forum.watch.check(result.stdout, f"sigshare {' '.join(args)} stdout")
        self.forum.watch.check(result.stderr, f"sigshare {' '.join(args)} stderr")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        """The document ``sigshare ARGS --json`` prints, once it exited with ``code``."""
        result = self.run(*args, "--json")
        assert result.exit_code == code, f"exit {result.exit_code}: {result.output}"
        return json.loads(result.stdout)

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
        return result


@dataclass
class SealedForum:
    directory: Path
    url: str
    engine: Engine
    hub: RunningHub
    watch: SecretWatch
    people: dict[str, Person]

    def admin_run(self, *args: str) -> Result:
        """``sigshare-hub ARGS`` on this forum's database, run to completion; never prints a
        secret."""
        result = CliRunner().invoke(hub_cli_group, ["--db", self.url, *args], env=CLI_ENV)
        self.watch.check(result.stdout, f"sigshare-hub {' '.join(args)} stdout")
        self.watch.check(result.stderr, f"sigshare-hub {' '.join(args)} stderr")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def admin(self, *args: str) -> str:
        """``sigshare-hub ARGS`` on this forum's database; its stdout (exit 0 asserted)."""
        result = self.admin_run(*args)
        assert result.exit_code == 0, f"sigshare-hub {' '.join(args)}: {result.output}"
        return result.stdout

    def admin_json(self, *args: str) -> Any:
        """The document ``sigshare-hub ARGS --json`` prints (exit 0 asserted)."""
        return json.loads(self.admin(*args, "--json"))

    def approve(self, name: str) -> None:
        self.admin("member", "approve-keys", name, self.people[name].keys().fingerprint)

    def set_up_custodian(self) -> Person:
        """The custodian's keys registered and approved."""
        keeper = self.people[CUSTODIAN]
        keeper.ok("keys", "register")
        self.approve(CUSTODIAN)
        return keeper

    def set_up_member(self, name: str) -> Person:
        """``name``'s keys registered and approved, and the custodian pinned (the custodian
        must be set up first)."""
        member = self.people[name]
        member.ok("keys", "register")
        self.approve(name)
        member.ok("keys", "trust", self.people[CUSTODIAN].keys().signing_fingerprint)
        return member

    def rotate(self, key_id: str, *args: str) -> Any:
        """The custodian's rotation to ``key_id`` (``sigshare keys rotate ARGS --json``); from
        now on no command may print its secret (nor may the rotation have). The document it
        printed."""
        keeper = self.people[CUSTODIAN]
        result = keeper.ok("keys", "rotate", "--key-id", key_id, *args, "--json")
        self.watch.add_forum_secret(load_secret_file(keeper.installed(key_id)))
        self.watch.check(result.output, f"sigshare keys rotate --key-id {key_id}")
        return json.loads(result.stdout)

    # -- the hub's envelope table, as a hostile hub would write it -------------------------

    def _principal_id(self, session: Any, name: str) -> int:
        found: int = session.scalars(select(PrincipalRow.id).where(PrincipalRow.name == name)).one()
        return found

    def envelope(self, key_id: str, recipient: str) -> bytes:
        with session_scope(self.engine) as session:
            row = session.scalars(
                select(KeyEnvelopeRow).where(
                    KeyEnvelopeRow.key_id == key_id,
                    KeyEnvelopeRow.recipient_id == self._principal_id(session, recipient),
                )
            ).one()
            return bytes(row.envelope)

    def envelopes(self, key_id: str) -> dict[str, bytes]:
        """Every envelope the hub holds for the rotation to ``key_id``, by recipient."""
        with session_scope(self.engine) as session:
            rows = session.execute(
                select(PrincipalRow.name, KeyEnvelopeRow.envelope)
                .join(PrincipalRow, PrincipalRow.id == KeyEnvelopeRow.recipient_id)
                .where(KeyEnvelopeRow.key_id == key_id)
            ).all()
            return {name: bytes(envelope) for name, envelope in rows}

    def replace_envelope(self, key_id: str, recipient: str, data: bytes) -> None:
        """Substitute ``data`` for ``recipient``'s envelope of ``key_id``."""
        with session_scope(self.engine) as session:
            row = session.scalars(
                select(KeyEnvelopeRow).where(
                    KeyEnvelopeRow.key_id == key_id,
                    KeyEnvelopeRow.recipient_id == self._principal_id(session, recipient),
                )
            ).one()
            row.envelope = data
            row.byte_size = len(data)

    def inject_envelope(self, key_id: str, recipient: str, data: bytes, at: datetime) -> None:
        """Serve ``data`` to ``recipient`` as the envelope of a rotation to ``key_id`` the hub
        says happened ``at`` (a rotation the custodian never uploaded now)."""
        with session_scope(self.engine) as session:
            custodian_id = self._principal_id(session, CUSTODIAN)
            recipient_id = self._principal_id(session, recipient)
            member_key_id = session.scalars(
                select(MemberKeyRow.id).where(
                    MemberKeyRow.principal_id == recipient_id,
                    MemberKeyRow.approved_at.is_not(None),
                    MemberKeyRow.retired_at.is_(None),
                )
            ).one()
            session.add(
                KeyRotationRow(
                    key_id=key_id,
                    custodian_id=custodian_id,
                    created_at=at,
                    activate_at=None,
                    recipients=1,
                    total_bytes=len(data),
                )
            )
            session.flush()
            session.add(
                KeyEnvelopeRow(
                    key_id=key_id,
                    recipient_id=recipient_id,
                    member_key_id=member_key_id,
                    envelope=data,
                    byte_size=len(data),
                    created_at=at,
                )
            )


@contextmanager
def serving_forum(
    directory: Path, url: str, credentials: Mapping[str, str]
) -> Iterator[SealedForum]:
    """A hub over the provisioned database at ``url`` (:func:`provision`), started, and every
    principal's files under ``directory``: members with :data:`FIRST_SECRET`, the custodian
    with no forum secret yet."""
    engine = make_engine(url)
    watch = SecretWatch()
    watch.add_forum_secret(FIRST_SECRET)
    for name, credential in credentials.items():
        watch.add_credential(name, credential)
    try:
        with running_hub(engine, credentials) as hub:
            forum = SealedForum(directory, url, engine, hub, watch, {})
            for name, credential in credentials.items():
                home = directory / name
                home.mkdir(mode=0o700)
                person = Person(name, forum, home)
                if name != CUSTODIAN:
                    write_secret_file(person.secret_file, FIRST_SECRET)
                write_config(
                    person.config,
                    hub=hub.target,
                    credential_file=write_private(home / "credential", credential + "\n"),
                    secret_file=person.secret_file,
                    state_dir=person.state_dir,
                    retries=0,
                )
                forum.people[name] = person
            yield forum
    finally:
        engine.dispose()


@contextmanager
def sealed_forum(
    directory: Path, template: bytes, credentials: Mapping[str, str]
) -> Iterator[SealedForum]:
    """:func:`serving_forum` over a copy of the SQLite ``template`` database
    (:func:`provision_template`)."""
    path = directory / "hub.db"
    path.write_bytes(template)
    path.chmod(0o600)
    with serving_forum(directory, f"sqlite:///{path}", credentials) as forum:
        yield forum
