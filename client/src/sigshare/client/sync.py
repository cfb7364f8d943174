"""The member's sync job: push sketches of local data, pull what the hub learned, resolve locally.

``push`` reads the pipelines' export files, canonicalises and sketches them with the forum's
published parameters and uploads the sketches; ``pull`` asks the hub which of the member's own
values other members hold (by their tokens) and fetches its campaign matches, and maps both back
to the member's own values and prompts. Raw
values and prompts never leave this process: only keyed Bloom filters and salted MinHash
signatures of cluster template cores do.

Safe to run from cron: every phase commits its result to the local state (:mod:`.state`) before
the next begins, so a crash or network failure resumes where it stopped; unchanged inputs reuse
the exact sketch bytes already built, which the hub recognises as a duplicate, so re-running
changes nothing; one run at a time per state directory (:class:`RunLock`).

A kind or MinHash family the hub does not publish, that exceeds the hub's capacity, or whose
sketch or resolution the hub refuses is :class:`Skipped` — recorded in the report with the reason
— and the run goes on with the rest. Problems that are not about one kind (authentication, the
network, configuration, a forum secret of another key epoch) still end the run.

The job holds the member's forum secrets by key epoch (:class:`~.secret_ring.SecretRing`) and
sketches each kind with the one of the epoch the hub publishes for it, so a run after the forum
moved to a new epoch resubmits under it once its secret is installed. While the hub announces
the epoch the forum is rotating to and the member holds its secret, each kind and family is sent
under it too, ahead of the switch (the hub keeps those pending until the switch makes them
active). It refuses a rollback: an epoch older than an installed one the hub has already
published to this member.
"""

from __future__ import annotations

import codecs
import dataclasses
import fcntl
import gzip
import hashlib
import io
import json
import os
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from sigshare.client.errors import HubRejectedError
from sigshare.client.hub_client import HubClient
from sigshare.client.hub_types import (
    ConfirmedToken,
    ConfirmResult,
    HubParameters,
    PublishedBloom,
    PublishedMinHash,
    TokenStatus,
)
from sigshare.client.inputs import (
    IndicatorRow,
    InputRejectReason,
    PromptRow,
    RejectSink,
    read_indicators,
    read_prompts,
)

# KeyEpochError is re-exported: the CLI and the checks import it from here.
from sigshare.client.secret_ring import KeyEpochError as KeyEpochError  # noqa: PLC0414
from sigshare.client.secret_ring import SecretRing
from sigshare.client.state import (
    ClusterRecord,
    ForumVerdict,
    LocalState,
    PromptRecord,
    ResolvedIndicator,
    SketchRecord,
)
from sigshare.sketch.bloom import KeyedBloomFilter
from sigshare.sketch.cluster import ClusterInfo, cluster_prompts, new_cluster_id
from sigshare.sketch.codec import SignatureSet, SketchFormat, encode_bloom
from sigshare.sketch.keys import ForumSecret, KeyPurpose
from sigshare.sketch.minhash import MinHashParams, SaltedMinHasher
from sigshare.sketch.prf import KeyedPRF, tokens_to_bytes
from sigshare.sketch.wire import encode_cluster_set

LOCK_FILE = "sync.lock"
_CLASSIFY_LINES = 100
MINHASH_PREFIX = "minhash:"
AHEAD_SEPARATOR = "@"
"""Between a sketch's name and the key epoch it was sent ahead under (``email@k2027b``): kind
and family names never contain it."""


class SyncError(Exception):
    """A problem the member must fix (their data, their settings) before the job can go on."""


class NothingAcceptedError(SyncError):
    """Every kind and family a push was given was skipped: nothing reached the hub."""

    def __init__(self, skipped: Sequence[Skipped]) -> None:
        super().__init__(
            "nothing was pushed: "
            + "; ".join(f"{s.subject} {s.name}: {s.message}" for s in skipped)
        )
        self.skipped = tuple(skipped)


class ValuesNotFoundError(SyncError):
    """Values chosen to confirm that are none of the member's resolved items (a typo, or a
    value no other member holds)."""

    def __init__(
        self, values: Sequence[str], *, kind: str | None = None, category: str | None = None
    ) -> None:
        narrowed = [f"kind {kind}"] if kind else []
        narrowed += [f"category {category!r}"] if category is not None else []
        among = f" ({', '.join(narrowed)})" if narrowed else ""
        shown = ", ".join(json.dumps(value, ensure_ascii=False) for value in values)
        super().__init__(
            f"not among your resolved matches{among}: {shown}; nothing was confirmed "
            "(`sigshare matches` lists them)"
        )
        self.values = tuple(values)


class LockedError(Exception):
    """Another sync holds the state directory."""


class RunLock(AbstractContextManager["RunLock"]):
    """An exclusive ``flock`` on the state directory's lock file, released on exit or death."""

    def __init__(self, state_dir: Path, *, wait: bool = False) -> None:
        self._path = state_dir / LOCK_FILE
        self._wait = wait
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self._wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"another sigshare run (pid {holder}) holds {self._path}; try again later"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Progress(Protocol):
    def __call__(self, description: str, total: int) -> AbstractContextManager[Callable[..., Any]]:
        """A context manager yielding ``advance(n=1)``."""


@contextmanager
def _no_progress(description: str, total: int) -> Iterator[Callable[..., Any]]:
    yield lambda advance=1: None


@dataclass
class PhaseTimer:
    """Seconds per phase (read, canonicalise, sketch, upload, resolve), for summaries and bench."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


class SkipReason(StrEnum):
    """Why a kind or family was left out of a run. Stable strings: they appear in ``--json``."""

    NOT_PUBLISHED = "not_published"
    """The hub publishes no parameters for it (rows of such a kind go to the rejects file)."""
    OVER_CAPACITY = "over_capacity"
    """More distinct values of the kind than the hub's capacity per member."""
    REFUSED = "refused"
    """The hub refused the kind's sketch or resolution; the message is the hub's."""
    STALE = "stale"
    """The hub's parameters (or key epoch) changed since the kind was last pushed: nothing can
    be asked about it until the next push rebuilds its sketch."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A kind or MinHash family one run left out while the rest went on, and why."""

    subject: Literal["kind", "family"]
    """``kind`` for an indicator kind, ``family`` for the prompts' MinHash family."""
    name: str
    reason: SkipReason
    message: str
    """For the member: what was not done and what to do about it."""

    @classmethod
    def refused(
        cls, subject: Literal["kind", "family"], name: str, error: HubRejectedError
    ) -> Skipped:
        """The hub refused ``name``: its message, less the name it may begin with."""
        return cls(subject, name, SkipReason.REFUSED, error.message.removeprefix(f"{name}: "))


@dataclass
class KindPush:
    name: str
    items: int
    submission_id: int | None
    duplicate: bool
    reused_sketch: bool
    bytes: int


@dataclass
class PushReport:
    kinds: list[KindPush] = field(default_factory=list)
    ahead: list[KindPush] = field(default_factory=list)
    """Sketches sent under the key epoch the forum is rotating to (``ahead_key_id``), which the
    hub keeps pending until it switches."""
    ahead_key_id: str | None = None
    rejects: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    """Kinds and families of the input that were not sent; the others were."""

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


@dataclass
class PullReport:
    shared_indicators: dict[str, int] = field(default_factory=dict)
    """Per kind: own items held by at least one other member (quorum applied by the hub)."""
    campaign_clusters: int = 0
    campaigns: int = 0
    over_budget: dict[str, int] = field(default_factory=dict)
    """Per kind: own items the hub did not answer because a query budget was spent (their
    earlier answers are kept; the next pull asks again)."""
    budget_frees_at: dict[str, datetime | None] = field(default_factory=dict)
    not_held: dict[str, int] = field(default_factory=dict)
    """Per kind: own items the hub's copy of this member's filter does not hold."""
    skipped: list[Skipped] = field(default_factory=list)
    """Kinds whose resolution the hub refused; the other kinds and the campaigns were pulled."""


def classify_inputs(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Split files into indicator and prompt files: CSV is indicators; JSONL by its first records
    (``text`` → prompts, else indicators), read as UTF-16 after a UTF-16 byte order mark."""
    indicators: list[Path] = []
    prompts: list[Path] = []
    for path in paths:
        name = path.name.lower().removesuffix(".gz")
        if name.endswith(".csv"):
            indicators.append(path)
        elif _first_record_has_text(path):
            prompts.append(path)
        else:
            indicators.append(path)
    return indicators, prompts


def _first_record_has_text(path: Path) -> bool:
    try:
        with path.open("rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"  # gzip magic, whatever the file is called
        opener: Any = gzip.open if compressed else open
        votes = Counter[bool]()
        with opener(path, "rb") as handle:
            utf16 = handle.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
            lines = (
                io.TextIOWrapper(handle, encoding="utf-16", errors="replace") if utf16 else handle
            )
            for _ in range(_CLASSIFY_LINES):
                line = lines.readline(1 << 20)
                if not line:
                    break
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and ("text" in record) != ("value" in record):
                    votes["text" in record] += 1
    except (OSError, EOFError, zlib.error):
        return False  # the reader reports the file properly
    # The majority of the first records decides: one malformed row does not change a file's type.
    return votes[True] > votes[False]


def _digest(*parts: bytes) -> bytes:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.digest()


@dataclass
class _KindRows:
    values: dict[str, tuple[str, str, datetime | None, datetime | None]] = field(
        default_factory=dict
    )
    rows: int = 0

    def add(self, row: IndicatorRow) -> None:
        self.rows += 1
        current = self.values.get(row.canonical)
        if current is None:
            self.values[row.canonical] = (row.value, row.category, row.first_seen, row.last_seen)
            return
        value, category, first, last = current
        self.values[row.canonical] = (
            value,
            category or row.category,
            _earliest(first, row.first_seen),
            _latest(last, row.last_seen),
        )


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _stale(subject: Literal["kind", "family"], name: str, pushed: str, published: str) -> Skipped:
    """``name`` was last pushed under other parameters than the hub's: nothing to ask about."""
    change = (
        f"the forum moved from key epoch {pushed} to {published}"
        if pushed != published
        else "the hub's parameters changed"
    )
    return Skipped(
        subject,
        name,
        SkipReason.STALE,
        f"{change} since {name} was last pushed: nothing was asked about it; the next "
        "`sigshare sync` with your files resubmits it and asks again",
    )


class SyncJob:
    """One member's push and pull against one hub, over one local state."""

    def __init__(
        self,
        *,
        client: HubClient,
        state: LocalState,
        secret: SecretRing | ForumSecret,
        progress: Progress = _no_progress,
        prompt_family: str = "prompt",
        min_cluster_volume: int = 3,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.state = state
        self.ring = secret if isinstance(secret, SecretRing) else SecretRing.single(secret)
        """The member's forum secrets; ``secret`` may be one alone (held in memory)."""
        self.progress = progress
        self.prompt_family = prompt_family
        self.min_cluster_volume = min_cluster_volume
        self.now = now
        self.timer = PhaseTimer()
        self._parameters: HubParameters | None = None

    def parameters(self) -> HubParameters:
        if self._parameters is None:
            self._parameters = self.client.get_parameters()
        return self._parameters

    # -- push -------------------------------------------------------------------------------

    def push(
        self,
        indicator_files: Sequence[Path],
        prompt_files: Sequence[Path],
        *,
        rejects: RejectSink,
        default_kind: str | None = None,
    ) -> PushReport:
        """Sketch and submit each kind of ``indicator_files`` and the clusters of
        ``prompt_files``; a kind or family that cannot be sent is skipped (see
        :class:`SkipReason`) and the others are still sent."""
        report = PushReport()
        published = self.parameters()
        if indicator_files:
            by_kind = self._read_indicators(indicator_files, default_kind, rejects, report)
            for kind in sorted(by_kind):
                rows = by_kind[kind]
                bloom = published.bloom.get(kind)
                if bloom is None:
                    detail = f"the hub does not enable kind {kind!r}; its rows were not sent"
                    rejects.reject_rows(
                        InputRejectReason.KIND_NOT_ENABLED,
                        rows.rows,
                        source=f"kind {kind}",
                        detail=detail,
                    )
                    report.skipped.append(Skipped("kind", kind, SkipReason.NOT_PUBLISHED, detail))
                    continue
                params = bloom.bloom_params()
                secret = self._require_epoch(params.key_id, kind)
                if len(rows.values) > params.capacity:
                    message = (
                        f"{len(rows.values)} distinct {kind} values exceed the hub's capacity of "
                        f"{params.capacity} per member; send the most relevant ones or ask the "
                        "forum to raise the capacity"
                    )
                    report.skipped.append(Skipped("kind", kind, SkipReason.OVER_CAPACITY, message))
                    continue
                try:
                    report.kinds.append(self._push_kind(kind, rows, bloom, secret))
                except HubRejectedError as error:
                    report.skipped.append(Skipped.refused("kind", kind, error))
                    continue
                self._send_kind_ahead(kind, rows, bloom, published.next_key_id, report)
        if prompt_files:
            family = published.minhash.get(self.prompt_family)
            if family is None:
                report.skipped.append(
                    Skipped(
                        "family",
                        self.prompt_family,
                        SkipReason.NOT_PUBLISHED,
                        f"the hub has no MinHash family {self.prompt_family!r} for prompts; "
                        "the prompts were not sent",
                    )
                )
            else:
                prompts = self._read_prompts(prompt_files, rejects, report)
                if prompts:
                    try:
                        report.kinds.append(self._push_prompts(prompts, family))
                    except HubRejectedError as error:
                        report.skipped.append(Skipped.refused("family", family.family, error))
                    else:
                        self._send_prompts_ahead(prompts, family, published.next_key_id, report)
        report.rejects.update(rejects.counts)
        return report

    def _read_indicators(
        self,
        files: Sequence[Path],
        default_kind: str | None,
        rejects: RejectSink,
        report: PushReport,
    ) -> dict[str, _KindRows]:
        by_kind: dict[str, _KindRows] = {}
        total = sum(path.stat().st_size for path in files if path.exists())
        with self.timer.phase("read"), self.progress("reading indicators", total) as advance:
            for row in read_indicators(
                files, default_kind=default_kind, rejects=rejects, on_bytes=advance
            ):
                by_kind.setdefault(row.kind, _KindRows()).add(row)
                report.rows += 1
        return by_kind

    def _require_epoch(self, key_id: str, what: str) -> ForumSecret:
        """The secret of epoch ``key_id``, which the hub publishes for ``what`` (a kind or
        family); :class:`KeyEpochError` if none is installed, or if the hub has published a
        newer installed epoch to this member before (a rollback to an epoch a departed member
        may know)."""
        installed = self.state.installed_epochs()
        if key_id in self.ring.key_ids:
            own = next((epoch for epoch in installed if epoch.key_id == key_id), None)
            # A secret installed from no envelope (the configured file) predates them all.
            newer = [
                epoch
                for epoch in installed
                if epoch.published_seen_at is not None
                and epoch.key_id != key_id
                and (own is None or own.created_at < epoch.created_at)
            ]
            if newer:
                latest, seen = newer[-1], newer[-1].published_seen_at
                assert seen is not None  # selected for it
                raise KeyEpochError(
                    f"{what}: the hub publishes key epoch {key_id}, but it published "
                    f"{latest.key_id} (sealed {latest.created_at.isoformat()}) to this member "
                    f"on {seen.isoformat()}; refusing to go back to a replaced epoch: ask the "
                    "forum's operator why the hub moved back"
                )
            if own is not None:
                self.state.mark_epoch_published(key_id, self.now())
        return self.ring.for_key_id(key_id, what)

    def _push_kind(
        self, kind: str, rows: _KindRows, published: PublishedBloom, secret: ForumSecret
    ) -> KindPush:
        """Sketch and submit one kind whose key epoch (``secret``'s) and capacity :meth:`push`
        checked."""
        params = published.bloom_params()
        canonicals = sorted(rows.values)
        input_digest = _digest(published.digest, "\n".join(canonicals).encode())
        stored = self.state.sketch(kind)
        with self.timer.phase("sketch"):
            prf = KeyedPRF(secret.derive(KeyPurpose.BLOOM_TOKEN, kind))
            tokens = prf.tokens(canonicals)
            token_bytes = tokens_to_bytes(tokens)
            details = hashlib.sha256()
            for canonical in canonicals:
                value, category, first, last = rows.values[canonical]
                details.update(
                    f"{canonical}\x1f{value}\x1f{category}\x1f{first}\x1f{last}\n".encode()
                )
            self.state.replace_indicators(
                kind,
                (
                    (canonical, *rows.values[canonical][:1], token, *rows.values[canonical][1:])
                    for canonical, token in zip(canonicals, token_bytes, strict=True)
                ),
                digest=_digest(input_digest, details.digest()),
            )
            reused = stored is not None and stored.input_digest == input_digest
            if stored is not None and reused:
                record = stored
            else:
                bloom = KeyedBloomFilter(params, prf)
                bloom.add_tokens(tokens)
                bloom.count = len(canonicals)
                record = SketchRecord(
                    name=kind,
                    format=SketchFormat.BLOOM_V1,
                    key_id=params.key_id,
                    params_digest=published.digest,
                    input_digest=input_digest,
                    payload=encode_bloom(bloom),
                    declared_count=len(canonicals),
                    built_at=self.now(),
                )
                self.state.put_sketch(record)
        return self._upload(record, kind, reused)

    def _upload(self, record: SketchRecord, kind: str, reused: bool) -> KindPush:
        with (
            self.timer.phase("upload"),
            self.progress(f"uploading {record.name}", len(record.payload)) as advance,
        ):
            result = self.client.submit(
                sketch_format=record.format,
                kind=kind,
                key_id=record.key_id,
                params_digest=record.params_digest,
                declared_count=record.declared_count,
                payload=record.payload,
                on_progress=advance,
            )
        self.state.mark_submitted(record.name, result.submission_id, self.now())
        return KindPush(
            name=record.name,
            items=record.declared_count,
            submission_id=result.submission_id,
            duplicate=result.duplicate,
            reused_sketch=reused,
            bytes=len(record.payload),
        )

    def _read_prompts(
        self, files: Sequence[Path], rejects: RejectSink, report: PushReport
    ) -> list[PromptRow]:
        total = sum(path.stat().st_size for path in files if path.exists())
        with self.timer.phase("read"), self.progress("reading prompts", total) as advance:
            prompts = list(read_prompts(files, rejects=rejects, on_bytes=advance))
        report.rows += len(prompts)
        return prompts

    def _push_prompts(self, prompts: list[PromptRow], published: PublishedMinHash) -> KindPush:
        name = MINHASH_PREFIX + published.family
        secret = self._require_epoch(published.key_id, published.family)
        input_digest = _digest(
            published.digest,
            f"{self.min_cluster_volume}/{published.member_threshold!r}".encode(),
            *(f"{p.category}\x1f{p.text}".encode() for p in prompts),
        )
        stored = self.state.sketch(name)
        reused = stored is not None and stored.input_digest == input_digest
        if stored is not None and reused:
            return self._upload(stored, published.family, reused=True)
        with self.timer.phase("sketch"):
            params = published.minhash_params()
            payload, infos, records = self._cluster_set(prompts, published, params, secret)
            self.state.replace_prompts(
                published.family,
                [
                    PromptRecord(text=p.text, category=p.category, account=p.account, ts=p.ts)
                    for p in prompts
                ],
                records,
            )
            record = SketchRecord(
                name=name,
                format=SketchFormat.CLUSTERS_V1,
                key_id=params.key_id,
                params_digest=published.digest,
                input_digest=input_digest,
                payload=payload,
                declared_count=len(infos),
                built_at=self.now(),
            )
            self.state.put_sketch(record)
        return self._upload(record, published.family, reused=False)

    def _cluster_set(
        self,
        prompts: list[PromptRow],
        published: PublishedMinHash,
        params: MinHashParams,
        secret: ForumSecret,
    ) -> tuple[bytes, list[ClusterInfo], list[ClusterRecord]]:
        """Cluster ``prompts`` under ``secret`` and ``params``: the encoded cluster set, what it
        says of each cluster, and each cluster's prompts. Cluster ids carry over from the
        family's clusters of earlier runs."""
        hasher = SaltedMinHasher.from_secret(secret, params, published.family)
        clustering = cluster_prompts(
            hasher,
            [p.text for p in prompts],
            published.member_threshold,
            min_volume=self.min_cluster_volume,
        )
        ids = self._stable_cluster_ids(published.family, prompts, clustering.clusters)
        records = []
        infos = []
        for cluster, cluster_id in zip(clustering.clusters, ids, strict=True):
            members = [prompts[int(i)] for i in cluster.prompts]
            stamps = [p.ts for p in members if p.ts is not None]
            category = Counter(p.category for p in members if p.category).most_common(1)
            info = ClusterInfo(
                cluster_id=cluster_id,
                volume=cluster.volume,
                category=category[0][0] if category else "",
                first_seen=min(stamps) if stamps else None,
                last_seen=max(stamps) if stamps else None,
                core_size=len(cluster.core),
            )
            infos.append(info)
            records.append(
                ClusterRecord(
                    cluster_id=cluster_id,
                    volume=info.volume,
                    category=info.category,
                    first_seen=info.first_seen,
                    last_seen=info.last_seen,
                    prompt_ids=[int(i) for i in cluster.prompts],
                )
            )
        # No cluster left is sent too: an empty set withdraws the earlier clusters.
        values = (
            np.stack([c.signature for c in clustering.clusters])
            if clustering.clusters
            else np.zeros((0, params.num_perm), dtype=np.uint32)
        )
        signatures = SignatureSet(
            key_id=params.key_id,
            shingle_unit=params.shingle_unit,
            shingle_size=params.shingle_size,
            values=values,
        )
        return encode_cluster_set(signatures, infos), infos, records

    # -- ahead of a key-epoch switch -------------------------------------------------------------

    def _ahead_secret(self, name: str, current: str, upcoming: str | None) -> ForumSecret | None:
        """The secret to send ``name`` (a sketch) ahead with: the next epoch's, when the hub
        announces one this member holds. Sketches sent ahead under any other epoch are dropped
        here: the hub switched to it (the sketch is the current one now) or moved past it."""
        secret = None if upcoming in (None, current) else self.ring.get(upcoming)
        keep = f"{name}{AHEAD_SEPARATOR}{upcoming}" if secret is not None else None
        for stale in self.state.sketch_names():
            if stale.startswith(f"{name}{AHEAD_SEPARATOR}") and stale != keep:
                self.state.drop_sketch(stale)
        return secret

    def _send_ahead(
        self,
        record: SketchRecord,
        kind: str,
        subject: Literal["kind", "family"],
        stored: bool,
        report: PushReport,
    ) -> None:
        if not stored:
            self.state.put_sketch(record)
        try:
            report.ahead.append(self._upload(record, kind, reused=stored))
        except HubRejectedError as error:
            report.skipped.append(Skipped.refused(subject, record.name, error))
        report.ahead_key_id = record.key_id

    def _send_kind_ahead(
        self,
        kind: str,
        rows: _KindRows,
        published: PublishedBloom,
        upcoming: str | None,
        report: PushReport,
    ) -> None:
        """Send ``kind`` under the next key epoch too, when the hub announces one and this
        member holds its secret: the hub keeps it pending and makes it active at the switch."""
        secret = self._ahead_secret(kind, published.key_id, upcoming)
        if secret is None:
            return
        params = dataclasses.replace(published.bloom_params(), key_id=secret.key_id)
        canonicals = sorted(rows.values)
        input_digest = _digest(params.digest(), "\n".join(canonicals).encode())
        name = f"{kind}{AHEAD_SEPARATOR}{secret.key_id}"
        stored = self.state.sketch(name)
        if stored is not None and stored.input_digest == input_digest:
            self._send_ahead(stored, kind, "kind", True, report)
            return
        with self.timer.phase("sketch"):
            prf = KeyedPRF(secret.derive(KeyPurpose.BLOOM_TOKEN, kind))
            bloom = KeyedBloomFilter(params, prf)
            bloom.add_tokens(prf.tokens(canonicals))
            bloom.count = len(canonicals)
            record = SketchRecord(
                name=name,
                format=SketchFormat.BLOOM_V1,
                key_id=params.key_id,
                params_digest=params.digest(),
                input_digest=input_digest,
                payload=encode_bloom(bloom),
                declared_count=len(canonicals),
                built_at=self.now(),
            )
        self._send_ahead(record, kind, "kind", False, report)

    def _send_prompts_ahead(
        self,
        prompts: list[PromptRow],
        published: PublishedMinHash,
        upcoming: str | None,
        report: PushReport,
    ) -> None:
        """The prompt clusters under the next key epoch (see :meth:`_send_kind_ahead`)."""
        family_name = MINHASH_PREFIX + published.family
        secret = self._ahead_secret(family_name, published.key_id, upcoming)
        if secret is None:
            return
        params = dataclasses.replace(published.minhash_params(), key_id=secret.key_id)
        input_digest = _digest(
            params.digest(),
            f"{self.min_cluster_volume}/{published.member_threshold!r}".encode(),
            *(f"{p.category}\x1f{p.text}".encode() for p in prompts),
        )
        name = f"{family_name}{AHEAD_SEPARATOR}{secret.key_id}"
        stored = self.state.sketch(name)
        if stored is not None and stored.input_digest == input_digest:
            self._send_ahead(stored, published.family, "family", True, report)
            return
        with self.timer.phase("sketch"):
            payload, infos, _ = self._cluster_set(prompts, published, params, secret)
            record = SketchRecord(
                name=name,
                format=SketchFormat.CLUSTERS_V1,
                key_id=params.key_id,
                params_digest=params.digest(),
                input_digest=input_digest,
                payload=payload,
                declared_count=len(infos),
                built_at=self.now(),
            )
        self._send_ahead(record, published.family, "family", False, report)

    def _stable_cluster_ids(
        self, family: str, prompts: list[PromptRow], clusters: Sequence[Any]
    ) -> list[str]:
        """Keep a cluster's id when most of its prompts were in one earlier cluster.

        Ids stay random (never derived from content); reusing them lets the hub keep campaign
        ids and review decisions across nights.
        """
        previous = self.state.prompt_clusters(family)
        ids: list[str] = []
        taken: set[str] = set()
        for cluster in clusters:
            votes = Counter(
                previous[prompts[int(i)].text]
                for i in cluster.prompts
                if prompts[int(i)].text in previous
            )
            choice = next(
                (
                    cluster_id
                    for cluster_id, count in votes.most_common()
                    if cluster_id not in taken and 2 * count > len(cluster.prompts)
                ),
                None,
            )
            chosen = choice or new_cluster_id()
            taken.add(chosen)
            ids.append(chosen)
        return ids

    # -- pull -------------------------------------------------------------------------------

    def pull(self) -> PullReport:
        report = PullReport()
        published = self.parameters()
        with self.timer.phase("resolve"):
            for name in self.state.sketch_names():
                record = self.state.sketch(name)
                if (
                    record is None
                    or record.format is not SketchFormat.BLOOM_V1
                    or record.submission_id is None
                ):
                    continue
                bloom = published.bloom.get(name)
                if bloom is None:
                    continue  # no longer published (or a sketch sent ahead under the next epoch)
                if bloom.digest != record.params_digest:
                    report.skipped.append(_stale("kind", name, record.key_id, bloom.key_id))
                    continue
                try:
                    report.shared_indicators[name] = self._resolve(name, bloom, report)
                except HubRejectedError as error:
                    report.skipped.append(Skipped.refused("kind", name, error))
            matches = self.client.list_matches()
            by_family: dict[str, list[tuple[str, str, float, int, tuple[str, ...]]]] = {}
            families = [
                name.removeprefix(MINHASH_PREFIX)
                for name in self.state.sketch_names()
                if name.startswith(MINHASH_PREFIX)
            ]
            for family in families:
                known = set(self.state.cluster_ids(family))
                by_family[family] = [
                    (
                        m.cluster_id,
                        m.campaign_id,
                        m.similarity,
                        m.other_members,
                        m.other_member_names,
                    )
                    for m in matches.campaigns
                    if m.cluster_id in known
                ]
            for family, rows in by_family.items():
                self.state.replace_campaign_matches(family, rows)
                report.campaign_clusters += len(rows)
                report.campaigns += len({row[1] for row in rows})
            # The forum's verdicts on what this member reported: shown beside its own values
            # (matched by token) and prompt clusters; a hub that sends no status has none.
            self.state.replace_forum_reviews(
                (
                    (i.id, i.kind, i.token, ForumVerdict(i.status, i.member_note))
                    for i in matches.indicators
                    if i.status
                ),
                {
                    m.campaign_id: ForumVerdict(m.status, m.member_note)
                    for m in matches.campaigns
                    if m.status
                }.items(),
            )
            self.state.record_pull(self.now())
        return report

    def _resolve(self, kind: str, published: PublishedBloom, report: PullReport) -> int:
        """Ask the hub about this member's own values of ``kind``; store what others hold."""
        params = published.bloom_params()
        canonicals, tokens = self.state.indicator_tokens(kind)
        if not tokens:
            return self.state.replace_resolved(
                kind, members=0, quorum=published.quorum, others=(), at=self.now()
            )
        with self.progress(f"resolving {kind}", len(tokens)) as advance:
            result = self.client.resolve(kind, params.key_id, b"".join(tokens), on_progress=advance)
        unanswered = [
            canonical
            for canonical, status in zip(canonicals, result.status.tolist(), strict=True)
            if status == TokenStatus.OVER_BUDGET
        ]
        if unanswered:
            report.over_budget[kind] = len(unanswered)
            report.budget_frees_at[kind] = result.budget_frees_at
        not_held = result.count(TokenStatus.NOT_HELD)
        if not_held:
            # Every token was in the filter this member pushed: the hub holds another filter
            # (a push from elsewhere with the same credential) or the state is out of step.
            report.not_held[kind] = not_held
        counts = result.others.tolist()
        return self.state.replace_resolved(
            kind,
            members=result.members,
            quorum=result.quorum,
            others=(
                (canonical, count, result.names_of(index) if count else ())
                for index, (canonical, count) in enumerate(zip(canonicals, counts, strict=True))
            ),
            unanswered=unanswered,
            at=self.now(),
        )

    # -- confirm ----------------------------------------------------------------------------

    def choose(
        self, *, kind: str | None, category: str | None, values: Sequence[str]
    ) -> list[ResolvedIndicator]:
        """The resolved items of ``kind`` and ``category`` (all when ``None``) whose raw
        spelling or canonical form is one of ``values`` (any, when empty).

        Raises :class:`ValuesNotFoundError` naming the ``values`` no such item has.
        """
        chosen = [
            item
            for item in self.state.resolved(kind)
            if (category is None or item.category == category)
            and (not values or item.value in values or item.canonical in values)
        ]
        found = {item.value for item in chosen} | {item.canonical for item in chosen}
        missing = [value for value in dict.fromkeys(values) if value not in found]
        if missing:
            raise ValuesNotFoundError(missing, kind=kind, category=category)
        return chosen

    def confirm(self, chosen: Sequence[ResolvedIndicator]) -> dict[str, ConfirmResult]:
        """Offer the tokens of chosen resolved items; the hub's answer per kind."""
        results: dict[str, ConfirmResult] = {}
        published = self.parameters()
        for kind in sorted({item.kind for item in chosen}):
            bloom = published.bloom.get(kind)
            if bloom is None:
                continue
            tokens = [
                ConfirmedToken(
                    token=item.token,
                    category=item.category,
                    first_seen=item.first_seen,
                    last_seen=item.last_seen,
                )
                for item in chosen
                if item.kind == kind
            ]
            results[kind] = self.client.confirm(kind, bloom.key_id, tokens)
        return results
