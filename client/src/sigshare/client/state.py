"""The member's local state: what was sketched and submitted, and what came back.

One SQLite file (stdlib ``sqlite3``; the member distribution carries no ORM) in the state
directory, readable only by its owner (directory 0700, file 0600). It holds the member's own raw
data — the token → value map that resolution needs and the prompts behind each shared cluster —
so it never leaves the member's machine, and nothing here is ever sent to the hub.

Every phase of a sync writes its result in one transaction, so a crash leaves either the old
state or the new one, and the next run resumes from the last finished phase:

- ``indicators`` / ``prompts`` + ``clusters``: the member's current data per kind or family;
- ``sketches``: the encoded sketch built from it, with the digest of its inputs (an unchanged
  input reuses the identical bytes, so re-running is a no-op at the hub) and, once accepted,
  the hub's submission id;
- ``resolved`` / ``campaign_matches``: what the last pull learned, and in ``meta`` when it ran;
- ``forum_reviews``: the forum's review of the shared records this member reported (status and
  the coordinators' note for members), as the last pull brought it;
- ``runs``: the commands run on this state, with their outcomes;
- ``installed_epochs`` / ``refused_envelopes``: the forum secrets installed from sealed
  envelopes (which envelope, from which custodian, when it activates, which file) and the
  envelopes refused, with why.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sigshare.sketch.codec import SketchFormat

STATE_FILE = "state.db"
SCHEMA_VERSION = 3
_BATCH = 10_000

_RESOLUTIONS_TABLE = """CREATE TABLE IF NOT EXISTS resolutions (
    kind TEXT PRIMARY KEY,
    members INTEGER NOT NULL,
    quorum INTEGER NOT NULL,
    answered INTEGER NOT NULL,
    over_budget INTEGER NOT NULL,
    computed_at TEXT NOT NULL
)"""
"""Per kind: the last resolution's figures."""

_KEY_EPOCH_TABLES = (
    """CREATE TABLE IF NOT EXISTS installed_epochs (
    key_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    activate_at TEXT,
    custodian TEXT NOT NULL,
    installed_at TEXT NOT NULL,
    path TEXT NOT NULL,
    envelope_sha256 BLOB,
    published_seen_at TEXT
)""",
    """CREATE TABLE IF NOT EXISTS refused_envelopes (
    envelope_sha256 BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    custodian TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS sealed_recipients (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    first_sealed_at TEXT NOT NULL,
    last_sealed_at TEXT NOT NULL
)""",
)
"""Forum secrets installed from sealed envelopes (``envelope_sha256`` is ``NULL`` for one a
custodian generated here), envelopes refused, once each, and — for a custodian — the key
registration each member's envelopes were last sealed to (schema 3)."""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS indicators (
    kind TEXT NOT NULL,
    canonical TEXT NOT NULL,
    value TEXT NOT NULL,
    token BLOB NOT NULL,
    category TEXT NOT NULL,
    first_seen TEXT,
    last_seen TEXT,
    PRIMARY KEY (kind, canonical)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sketches (
    name TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    key_id TEXT NOT NULL,
    params_digest BLOB NOT NULL,
    input_digest BLOB NOT NULL,
    payload BLOB NOT NULL,
    declared_count INTEGER NOT NULL,
    built_at TEXT NOT NULL,
    submission_id INTEGER,
    submitted_at TEXT
);
CREATE TABLE IF NOT EXISTS prompts (
    family TEXT NOT NULL,
    id INTEGER NOT NULL,
    text TEXT NOT NULL,
    category TEXT NOT NULL,
    account TEXT,
    ts TEXT,
    cluster_id TEXT,
    PRIMARY KEY (family, id)
);
CREATE INDEX IF NOT EXISTS ix_prompts_cluster ON prompts (family, cluster_id);
CREATE TABLE IF NOT EXISTS clusters (
    family TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    row_index INTEGER NOT NULL,
    volume INTEGER NOT NULL,
    category TEXT NOT NULL,
    first_seen TEXT,
    last_seen TEXT,
    PRIMARY KEY (family, cluster_id)
);
CREATE TABLE IF NOT EXISTS resolved (
    kind TEXT NOT NULL,
    canonical TEXT NOT NULL,
    others INTEGER NOT NULL,
    names TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, canonical)
) WITHOUT ROWID;
"""
    + _RESOLUTIONS_TABLE
    + """;
CREATE TABLE IF NOT EXISTS campaign_matches (
    family TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    similarity REAL NOT NULL,
    other_members INTEGER NOT NULL,
    other_member_names TEXT NOT NULL,
    PRIMARY KEY (family, cluster_id)
);
CREATE TABLE IF NOT EXISTS forum_reviews (
    record_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    token BLOB,
    status TEXT NOT NULL,
    note TEXT,
    PRIMARY KEY (record_type, record_id)
);
CREATE INDEX IF NOT EXISTS ix_forum_reviews_token ON forum_reviews (kind, token);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    command TEXT NOT NULL,
    outcome TEXT,
    summary TEXT
);
"""
    + "".join(f"{table};\n" for table in _KEY_EPOCH_TABLES)
)


class StateError(Exception):
    """The state directory or file is unusable (permissions, corruption, newer schema)."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


IndicatorRow = tuple[str, str, bytes, str, datetime | None, datetime | None]
"""``(canonical, value, token, category, first_seen, last_seen)``: ``value`` is the first raw
spelling seen — what the member's own engineers recognise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SketchRecord:
    name: str
    """An indicator kind, or ``minhash:<family>``."""
    format: SketchFormat
    key_id: str
    params_digest: bytes
    input_digest: bytes
    payload: bytes
    declared_count: int
    built_at: datetime
    submission_id: int | None = None
    submitted_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SketchSummary:
    """The last sketch of a kind or family as the state records it, without its bytes: what
    ``status`` shows when the hub cannot be asked."""

    name: str
    """An indicator kind, or ``minhash:<family>``."""
    declared_count: int
    byte_size: int
    built_at: datetime
    submission_id: int | None
    """The hub's id once it accepted the sketch; ``None`` if it never did."""
    submitted_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptRecord:
    text: str
    category: str
    account: str | None
    ts: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterRecord:
    cluster_id: str
    volume: int
    category: str
    first_seen: datetime | None
    last_seen: datetime | None
    prompt_ids: Sequence[int]
    """Indices into the family's prompts (as passed to :meth:`LocalState.replace_prompts`)."""


@dataclass(frozen=True, slots=True)
class ForumVerdict:
    """The forum's review of a shared indicator or campaign, as the last pull brought it."""

    status: str
    """``new``, ``triaged``, ``confirmed`` or ``dismissed``."""
    note: str | None = None
    """The coordinators' note for members; ``None``: none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedIndicator:
    kind: str
    value: str
    canonical: str
    category: str
    others: int
    token: bytes
    first_seen: datetime | None
    last_seen: datetime | None
    other_names: tuple[str, ...] = ()
    """The other holders' names, where the forum's policy reveals them."""
    forum: ForumVerdict | None = None
    """The forum's review, where the item is a shared indicator this member reported."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignMatchRecord:
    family: str
    cluster_id: str
    campaign_id: str
    similarity: float
    other_members: int
    other_member_names: tuple[str, ...]
    prompts: tuple[str, ...]
    forum: ForumVerdict | None = None
    """The forum's review of the campaign (``None`` from a hub that does not say)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledEpoch:
    """A forum secret installed here from a sealed envelope, or generated here by a custodian."""

    key_id: str
    created_at: datetime
    """When the custodian sealed (or generated) it."""
    activate_at: datetime | None
    """When the custodian said members start using it; ``None``: at once."""
    custodian: str
    installed_at: datetime
    path: Path
    envelope_sha256: bytes | None
    """SHA-256 of the envelope it came in; ``None`` for a secret a custodian generated here."""
    published_seen_at: datetime | None = None
    """When this member first saw the hub publish parameters under this epoch: from then on
    an older epoch published again is a rollback, never a rotation still in progress."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusedEnvelope:
    """A sealed envelope this member would not install, and why."""

    envelope_sha256: bytes
    key_id: str
    """The key epoch the hub said the envelope is for."""
    custodian: str
    reason: str
    """A stable code: ``signature``, ``address``, ``seal``, ``format``, ``conflict``, ``replay``."""
    message: str
    at: datetime


def _upgrade(connection: sqlite3.Connection, version: int) -> None:
    """Bring a state file of an older client up to :data:`SCHEMA_VERSION`, in one transaction."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have upgraded the file since we read its version.
        current = connection.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()
        version = int(current[0])
        if version < 2:
            # Resolution moved from downloaded count vectors to answers per token; the old
            # summary table had nothing a newer client reads.
            connection.execute("ALTER TABLE resolved ADD COLUMN names TEXT NOT NULL DEFAULT ''")
            connection.execute("DROP TABLE resolutions")
            connection.execute(_RESOLUTIONS_TABLE)
        if version < 3:
            # Sealed key distribution: two new tables and nothing else changes.
            for table in _KEY_EPOCH_TABLES:
                connection.execute(table)
        connection.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _ensure_private_directory(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise StateError(
            f"state directory {path} is accessible to others (mode {mode:o}): "
            f"run `chmod 700 {path}`"
        )


class LocalState:
    """The state database of one state directory. Use as a context manager."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, state_dir: Path) -> LocalState:
        _ensure_private_directory(state_dir)
        path = state_dir / STATE_FILE
        if not path.exists():
            # Created empty with the final mode before SQLite writes a byte into it.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise StateError(
                f"state file {path} is readable by others (mode {mode:o}): run `chmod 600 {path}`"
            )
        try:
            connection = sqlite3.connect(path, isolation_level=None, timeout=30)
            connection.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a power cut may lose the newest commit, never consistency; every
            # phase of a sync is redone from its inputs, so nothing depends on that commit.
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.executescript(_SCHEMA)
            version = connection.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            if version is None:
                connection.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(version[0]) > SCHEMA_VERSION:
                raise StateError(
                    f"state file {path} was written by a newer sigshare (schema {version[0]})"
                )
            elif int(version[0]) < SCHEMA_VERSION:
                _upgrade(connection, int(version[0]))
        except sqlite3.DatabaseError as error:
            raise StateError(f"state file {path} is unusable: {error}") from None
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.chmod(0o600)
        return cls(connection, path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LocalState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic step: everything inside commits together or not at all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- indicators -------------------------------------------------------------------------

    def replace_indicators(
        self, kind: str, rows: Iterable[IndicatorRow], *, digest: bytes | None = None
    ) -> int:
        """The member's current indicators of ``kind`` (replacing the previous set).

        ``rows`` are ``(canonical, value, token, category, first_seen, last_seen)``. With a
        ``digest`` of their content, an unchanged set is left as it is (``-1`` is returned).
        """
        key = f"indicators-digest:{kind}"
        if digest is not None:
            stored = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if stored is not None and stored[0] == digest.hex():
                return -1
        count = 0
        stamps: dict[datetime, str] = {}

        def stamp(moment: datetime | None) -> str | None:
            if moment is None:
                return None
            text = stamps.get(moment)
            if text is None:
                text = stamps[moment] = moment.astimezone(UTC).isoformat()
            return text

        with self.transaction() as db:
            db.execute("DELETE FROM indicators WHERE kind = ?", (kind,))
            db.execute("DELETE FROM meta WHERE key = ?", (key,))
            batch: list[tuple[object, ...]] = []
            for canonical, value, token, category, first_seen, last_seen in rows:
                batch.append(
                    (kind, canonical, value, token, category, stamp(first_seen), stamp(last_seen))
                )
                if len(batch) >= _BATCH:
                    db.executemany("INSERT INTO indicators VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
                    count += len(batch)
                    batch.clear()
            db.executemany("INSERT INTO indicators VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
            count += len(batch)
            if digest is not None:
                db.execute("INSERT INTO meta VALUES (?, ?)", (key, digest.hex()))
        return count

    def indicator_kinds(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT kind FROM indicators")]

    def indicator_tokens(self, kind: str) -> tuple[list[str], list[bytes]]:
        """Canonical values and their tokens, in canonical order."""
        rows = self._db.execute(
            "SELECT canonical, token FROM indicators WHERE kind = ? ORDER BY canonical", (kind,)
        ).fetchall()
        return [row[0] for row in rows], [row[1] for row in rows]

    # -- sketches ---------------------------------------------------------------------------

    def sketch(self, name: str) -> SketchRecord | None:
        row = self._db.execute(
            "SELECT name, format, key_id, params_digest, input_digest, payload, declared_count, "
            "built_at, submission_id, submitted_at FROM sketches WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        return SketchRecord(
            name=row[0],
            format=SketchFormat(row[1]),
            key_id=row[2],
            params_digest=bytes(row[3]),
            input_digest=bytes(row[4]),
            payload=bytes(row[5]),
            declared_count=row[6],
            built_at=datetime.fromisoformat(row[7]),
            submission_id=row[8],
            submitted_at=_moment(row[9]),
        )

    def sketch_names(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM sketches ORDER BY name")]

    def sketch_summaries(self) -> list[SketchSummary]:
        """Every stored sketch without its payload, by name."""
        return [
            SketchSummary(
                name=row[0],
                declared_count=row[1],
                byte_size=row[2],
                built_at=datetime.fromisoformat(row[3]),
                submission_id=row[4],
                submitted_at=_moment(row[5]),
            )
            for row in self._db.execute(
                "SELECT name, declared_count, length(payload), built_at, submission_id, "
                "submitted_at FROM sketches ORDER BY name"
            )
        ]

    def put_sketch(self, record: SketchRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO sketches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.name,
                    record.format,
                    record.key_id,
                    record.params_digest,
                    record.input_digest,
                    record.payload,
                    record.declared_count,
                    _iso(record.built_at),
                    record.submission_id,
                    _iso(record.submitted_at),
                ),
            )

    def drop_sketch(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sketches WHERE name = ?", (name,))

    def mark_submitted(self, name: str, submission_id: int, at: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE sketches SET submission_id = ?, submitted_at = ? WHERE name = ?",
                (submission_id, _iso(at), name),
            )

    # -- prompts and clusters ---------------------------------------------------------------

    def replace_prompts(
        self, family: str, prompts: Sequence[PromptRecord], clusters: Sequence[ClusterRecord]
    ) -> None:
        """The family's current prompts and the clusters shared for them, in one step."""
        cluster_of: dict[int, str] = {}
        for cluster in clusters:
            for prompt_id in cluster.prompt_ids:
                cluster_of[int(prompt_id)] = cluster.cluster_id
        with self.transaction() as db:
            db.execute("DELETE FROM prompts WHERE family = ?", (family,))
            db.execute("DELETE FROM clusters WHERE family = ?", (family,))
            db.executemany(
                "INSERT INTO prompts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (family, i, p.text, p.category, p.account, _iso(p.ts), cluster_of.get(i))
                    for i, p in enumerate(prompts)
                ),
            )
            db.executemany(
                "INSERT INTO clusters VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        family,
                        c.cluster_id,
                        index,
                        c.volume,
                        c.category,
                        _iso(c.first_seen),
                        _iso(c.last_seen),
                    )
                    for index, c in enumerate(clusters)
                ),
            )

    def cluster_ids(self, family: str) -> list[str]:
        return [
            row[0]
            for row in self._db.execute(
                "SELECT cluster_id FROM clusters WHERE family = ? ORDER BY row_index", (family,)
            )
        ]

    def prompt_clusters(self, family: str) -> dict[str, str]:
        """Prompt text → the cluster it was shared in, for prompts that were in one."""
        return {
            row[0]: row[1]
            for row in self._db.execute(
                "SELECT text, cluster_id FROM prompts WHERE family = ? AND cluster_id IS NOT NULL",
                (family,),
            )
        }

    def prompt_families(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT family FROM clusters")]

    # -- what pulls learned -----------------------------------------------------------------

    def replace_resolved(
        self,
        kind: str,
        *,
        members: int,
        quorum: int,
        others: Iterable[tuple[str, int, tuple[str, ...]]],
        unanswered: Iterable[str] = (),
        at: datetime,
    ) -> int:
        """Store ``(canonical, other holders, their names)`` for this kind's items held by ≥ 1
        other member; items in ``unanswered`` (over the hub's query budget) keep what an earlier
        pull learned about them. Returns the number of shared items stored."""
        kept = set(unanswered)
        with self.transaction() as db:
            previous = [
                row
                for row in db.execute(
                    "SELECT kind, canonical, others, names FROM resolved WHERE kind = ?", (kind,)
                )
                if row[1] in kept
            ]
            db.execute("DELETE FROM resolved WHERE kind = ?", (kind,))
            rows = [
                (kind, canonical, count, json.dumps(list(names)) if names else "")
                for canonical, count, names in others
                if count > 0 and canonical not in kept
            ]
            db.executemany("INSERT INTO resolved VALUES (?, ?, ?, ?)", rows + previous)
            db.execute(
                "INSERT OR REPLACE INTO resolutions VALUES (?, ?, ?, ?, ?, ?)",
                (kind, members, quorum, len(rows), len(kept), _iso(at)),
            )
        return len(rows) + len(previous)

    def resolved(self, kind: str | None = None) -> list[ResolvedIndicator]:
        query = (
            "SELECT i.kind, i.value, i.canonical, i.category, r.others, i.token, i.first_seen, "
            "i.last_seen, r.names, f.status, f.note FROM resolved r JOIN indicators i "
            "ON i.kind = r.kind AND i.canonical = r.canonical "
            "LEFT JOIN forum_reviews f ON f.record_type = 'indicator' AND f.kind = i.kind "
            "AND f.token = i.token"
        )
        parameters: tuple[str, ...] = ()
        if kind:
            query += " WHERE r.kind = ?"
            parameters = (kind,)
        query += " ORDER BY i.kind, i.canonical"
        return [
            ResolvedIndicator(
                kind=row[0],
                value=row[1],
                canonical=row[2],
                category=row[3],
                others=row[4],
                token=bytes(row[5]),
                first_seen=_moment(row[6]),
                last_seen=_moment(row[7]),
                other_names=tuple(json.loads(row[8])) if row[8] else (),
                forum=None if row[9] is None else ForumVerdict(row[9], row[10]),
            )
            for row in self._db.execute(query, parameters)
        ]

    def replace_campaign_matches(
        self, family: str, matches: Iterable[tuple[str, str, float, int, tuple[str, ...]]]
    ) -> None:
        """``(cluster_id, campaign_id, similarity, other_members, names)`` for this family."""
        with self.transaction() as db:
            db.execute("DELETE FROM campaign_matches WHERE family = ?", (family,))
            db.executemany(
                "INSERT INTO campaign_matches VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (family, cluster, campaign, similarity, others, "\n".join(names))
                    for cluster, campaign, similarity, others, names in matches
                ),
            )

    def campaign_matches(self) -> list[CampaignMatchRecord]:
        out = []
        for family, cluster, campaign, similarity, others, names, status, note in self._db.execute(
            "SELECT m.family, m.cluster_id, m.campaign_id, m.similarity, m.other_members, "
            "m.other_member_names, f.status, f.note FROM campaign_matches m "
            "LEFT JOIN forum_reviews f ON f.record_type = 'campaign' "
            "AND f.record_id = m.campaign_id ORDER BY m.campaign_id, m.cluster_id"
        ).fetchall():
            prompts = tuple(
                row[0]
                for row in self._db.execute(
                    "SELECT text FROM prompts WHERE family = ? AND cluster_id = ? ORDER BY id",
                    (family, cluster),
                )
            )
            out.append(
                CampaignMatchRecord(
                    family=family,
                    cluster_id=cluster,
                    campaign_id=campaign,
                    similarity=similarity,
                    other_members=others,
                    other_member_names=tuple(n for n in names.split("\n") if n),
                    prompts=prompts,
                    forum=None if status is None else ForumVerdict(status, note),
                )
            )
        return out

    def replace_forum_reviews(
        self,
        indicators: Iterable[tuple[str, str, bytes, ForumVerdict]],
        campaigns: Iterable[tuple[str, ForumVerdict]],
    ) -> None:
        """The forum's review of every shared record this member reported, replacing what an
        earlier pull brought: ``(indicator id, kind, token, verdict)`` per shared indicator and
        ``(campaign id, verdict)`` per campaign. Indicators show beside the member's own values
        by their token."""
        with self.transaction() as db:
            db.execute("DELETE FROM forum_reviews")
            db.executemany(
                "INSERT OR REPLACE INTO forum_reviews VALUES ('indicator', ?, ?, ?, ?, ?)",
                (
                    (record_id, kind, token, verdict.status, verdict.note)
                    for record_id, kind, token, verdict in indicators
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO forum_reviews VALUES ('campaign', ?, '', NULL, ?, ?)",
                ((record_id, verdict.status, verdict.note) for record_id, verdict in campaigns),
            )

    def record_pull(self, at: datetime) -> None:
        """A pull finished at ``at``."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_pull_at', ?)", (_iso(at),))

    def has_pulled(self) -> bool:
        """Whether any pull has stored its answers here (a state of an older client that did
        not record its pulls counts what they stored)."""
        row = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'last_pull_at') "
            "OR EXISTS (SELECT 1 FROM resolutions) OR EXISTS (SELECT 1 FROM resolved) "
            "OR EXISTS (SELECT 1 FROM campaign_matches)"
        ).fetchone()
        return bool(row[0])

    # -- sealed key distribution ------------------------------------------------------------

    def record_installed_epoch(self, epoch: InstalledEpoch) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO installed_epochs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    epoch.key_id,
                    _iso(epoch.created_at),
                    _iso(epoch.activate_at),
                    epoch.custodian,
                    _iso(epoch.installed_at),
                    str(epoch.path),
                    epoch.envelope_sha256,
                    _iso(epoch.published_seen_at),
                ),
            )

    def mark_epoch_published(self, key_id: str, at: datetime) -> None:
        """Record that the hub published parameters under installed epoch ``key_id`` (the
        first time only)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE installed_epochs SET published_seen_at = ? "
                "WHERE key_id = ? AND published_seen_at IS NULL",
                (_iso(at), key_id),
            )

    def installed_epochs(self) -> list[InstalledEpoch]:
        """Every recorded installation, oldest envelope first."""
        return [
            InstalledEpoch(
                key_id=row[0],
                created_at=datetime.fromisoformat(row[1]),
                activate_at=_moment(row[2]),
                custodian=row[3],
                installed_at=datetime.fromisoformat(row[4]),
                path=Path(row[5]),
                envelope_sha256=None if row[6] is None else bytes(row[6]),
                published_seen_at=_moment(row[7]),
            )
            for row in self._db.execute(
                "SELECT key_id, created_at, activate_at, custodian, installed_at, path, "
                "envelope_sha256, published_seen_at FROM installed_epochs "
                "ORDER BY created_at, key_id"
            )
        ]

    def record_refused_envelope(self, refusal: RefusedEnvelope) -> bool:
        """Record a refusal; ``False`` when this envelope was refused before for this reason
        (the first record stays)."""
        with self.transaction() as db:
            previous = db.execute(
                "SELECT reason FROM refused_envelopes WHERE envelope_sha256 = ?",
                (refusal.envelope_sha256,),
            ).fetchone()
            if previous is not None and previous[0] == refusal.reason:
                return False
            db.execute(
                "INSERT OR REPLACE INTO refused_envelopes VALUES (?, ?, ?, ?, ?, ?)",
                (
                    refusal.envelope_sha256,
                    refusal.key_id,
                    refusal.custodian,
                    refusal.reason,
                    refusal.message,
                    _iso(refusal.at),
                ),
            )
        return True

    def refused_envelopes(self) -> list[RefusedEnvelope]:
        """Every refused envelope, oldest refusal first."""
        return [
            RefusedEnvelope(
                envelope_sha256=bytes(row[0]),
                key_id=row[1],
                custodian=row[2],
                reason=row[3],
                message=row[4],
                at=datetime.fromisoformat(row[5]),
            )
            for row in self._db.execute(
                "SELECT envelope_sha256, key_id, custodian, reason, message, at "
                "FROM refused_envelopes ORDER BY at, key_id"
            )
        ]

    def sealed_recipients(self) -> dict[str, str]:
        """Custodians: each member's registration fingerprint its last envelope was sealed to."""
        return {
            row[0]: row[1]
            for row in self._db.execute("SELECT name, fingerprint FROM sealed_recipients")
        }

    def record_sealed_recipients(self, fingerprints: dict[str, str], at: datetime) -> None:
        with self.transaction() as db:
            for name, fingerprint in fingerprints.items():
                db.execute(
                    "INSERT INTO sealed_recipients VALUES (?, ?, ?, ?) ON CONFLICT (name) DO "
                    "UPDATE SET fingerprint = excluded.fingerprint, "
                    "last_sealed_at = excluded.last_sealed_at",
                    (name, fingerprint, _iso(at), _iso(at)),
                )

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, command: str, at: datetime) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at, command) VALUES (?, ?)", (_iso(at), command)
            )
            return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, outcome: str, summary: str, at: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?",
                (_iso(at), outcome, summary, run_id),
            )

    def last_runs(self, limit: int = 5) -> list[tuple[str, str | None, str, str | None]]:
        """``(started_at, finished_at, command, outcome)``, newest first."""
        return [
            (row[0], row[1], row[2], row[3])
            for row in self._db.execute(
                "SELECT started_at, finished_at, command, outcome FROM runs ORDER BY id DESC "
                "LIMIT ?",
                (limit,),
            )
        ]
