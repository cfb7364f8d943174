"""Hub benchmarks over real loopback gRPC: upload and cross-member LSH (resolution:
``bench.resolution_bench``).

Each benchmark starts a hub on 127.0.0.1 with a fresh database (an SQLite file, and PostgreSQL
when ``--pg URL`` or ``SIGSHARE_BENCH_PG`` names a server), drives it with the member SDK, and
times what a member or coordinator waits for. Data is generated before the timed regions. Bits
come from random tokens (the hub never sees values, so hashing real values would only add
client time).

The transport ceiling is measured in the same run: the same chunked stream sent to a servicer
that only counts bytes, so the upload ratio says how much of gRPC's own throughput the hub's
verification and storage keep.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from sigshare.client.hub_client import HubClient, HubConnection
from sigshare.hub.domain import Role
from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.server import parse_listen
from sigshare.hub.services import parameters, principals
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.blobs import BLOB_DIR_ENV
from sigshare.sketch.bloom import BloomFilter, BloomParams
from sigshare.sketch.cluster import ClusterInfo, new_cluster_id
from sigshare.sketch.codec import SignatureSet, SketchFormat, encode_bloom
from sigshare.sketch.lsh import candidate_pairs
from sigshare.sketch.wire import encode_cluster_set
from sigshare.v1 import hub_pb2 as pb
from sigshare.v1 import hub_pb2_grpc as pb_grpc
from tests.support.databases import fresh_postgres_database
from tests.support.processes import serve_replicas

KEY_ID = "bench-1"
FPR = 1e-3
MAX_MEMBERS = 32
PG_ENV = "SIGSHARE_BENCH_PG"


@dataclass
class Hub:
    port: int
    credentials: dict[str, str]
    stop: Any

    def client(self, name: str) -> HubClient:
        return HubClient(
            HubConnection(
                target=f"127.0.0.1:{self.port}", credential=self.credentials[name], insecure=True
            )
        )


@contextmanager
def bench_database(backend: str) -> Iterator[str]:
    """The URL of an empty, throwaway database of ``backend``: ``sqlite`` in a temporary
    directory, ``postgresql`` on the server :data:`PG_ENV` names; removed on exit."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sigshare-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'hub.db'}"
        return
    with fresh_postgres_database(make_url(os.environ[PG_ENV]), "sigshare_bench") as url:
        yield url.render_as_string(hide_password=False)


def provision(engine: Engine, members: int, setup: Any) -> dict[str, str]:
    """Migrate, register members ``m00``… and a coordinator ``coord``, run ``setup(session,
    now)`` (publishing parameters) in the same transaction; the credentials by name."""
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    credentials = {}
    roles = [(f"m{index:02d}", Role.MEMBER) for index in range(members)]
    with session_scope(engine) as session:
        for name, role in [*roles, ("coord", Role.COORDINATOR)]:
            _, credential = principals.add_principal(
                session, actor="bench", name=name, role=role, now=now
            )
            credentials[name] = credential.token
        setup(session, now)
    return credentials


@contextmanager
def _hub(backend: str, members: int, setup: Any) -> Iterator[Hub]:
    """A hub in this process on a fresh database of ``backend``, payloads in a blob directory
    (SQLite's default beside the file; a temporary one for PostgreSQL, as replicas share one)."""
    with (
        bench_database(backend) as url,
        tempfile.TemporaryDirectory(prefix="sigshare-blobs-") as blobs,
    ):
        engine = make_engine(url, blob_dir=None if backend == "sqlite" else Path(blobs))
        credentials = provision(engine, members, setup)
        server = build_hub(engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
        server.server.start()
        try:
            yield Hub(server.port, credentials, server.stop)
        finally:
            server.stop(1)
            engine.dispose()


def _random_filter(params: BloomParams, count: int, seed: int) -> BloomFilter:
    rng = np.random.default_rng(seed)
    bloom = BloomFilter(params)
    step = 1 << 22
    for start in range(0, count, step):
        size = min(step, count - start)
        bloom.add_tokens(rng.integers(0, 2**63, size=(size, 2), dtype=np.uint64))
    bloom.count = count
    return bloom


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]


# --- upload ------------------------------------------------------------------------------------


def _count_bytes(request_iterator: Iterator[pb.SubmitChunk], context: Any) -> pb.SubmitResponse:
    """The transport ceiling: a Submit that only counts the bytes it receives."""
    received = sum(len(chunk.data) for chunk in request_iterator)
    return pb.SubmitResponse(submission_id=received)


def _raw_grpc_seconds(payload: bytes, chunk: int) -> float:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        options=[("grpc.max_receive_message_length", 4 * chunk)],
    )
    handler = grpc.stream_unary_rpc_method_handler(
        _count_bytes,
        request_deserializer=pb.SubmitChunk.FromString,
        response_serializer=pb.SubmitResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("sigshare.v1.MemberService", {"Submit": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 4 * chunk)]
    )
    stub = pb_grpc.MemberServiceStub(channel)
    view = memoryview(payload)

    def chunks() -> Iterator[pb.SubmitChunk]:
        yield pb.SubmitChunk(header=pb.SubmitHeader(content_length=len(payload)))
        for start in range(0, len(view), chunk):
            yield pb.SubmitChunk(data=bytes(view[start : start + chunk]))

    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        assert stub.Submit(chunks()).submission_id == len(payload)
        best = min(best, time.perf_counter() - started)
    channel.close()
    server.stop(0)
    return best


def capacity_for(target_bytes: int) -> int:
    """The capacity whose forum filter is closest to ``target_bytes`` (m scales with it)."""
    capacity = int(target_bytes * 8 / 14.4)
    for _ in range(3):
        size = BloomParams.for_forum("email", KEY_ID, capacity, FPR, MAX_MEMBERS).m // 8
        capacity = int(capacity * target_bytes / size)
    return capacity


@contextmanager
def _served_hub(backend: str, setup: Any, *, payloads_in_database: bool) -> Iterator[Hub]:
    """One member and a ``sigshare-hub serve`` process, as members reach a hub: the upload's
    client and server do not share an interpreter. Payloads as :func:`_hub` places them."""
    with (
        bench_database(backend) as url,
        tempfile.TemporaryDirectory(prefix="sigshare-blobs-") as blobs,
        tempfile.TemporaryDirectory(prefix="sigshare-serve-") as run,
    ):
        blob_dir = None if backend == "sqlite" or payloads_in_database else Path(blobs)
        engine = make_engine(url, blob_dir=blob_dir)
        try:
            credentials = provision(engine, 1, setup)
        finally:
            engine.dispose()
        env = {k: v for k, v in os.environ.items() if k != BLOB_DIR_ENV}
        if blob_dir is not None:
            env[BLOB_DIR_ENV] = str(blob_dir)
        with serve_replicas(url, Path(run), 1, env=env) as (replica,):
            yield Hub(replica.port, credentials, None)


def replaceable_email(capacity: int) -> Callable[[Session, datetime], None]:
    """A :func:`provision` setup publishing ``email`` at ``capacity`` (forum FPR and members of
    these benchmarks), which one member may replace upload after upload (interval 0)."""

    def setup(session: Session, now: datetime) -> None:
        parameters.set_kind_parameters(
            session,
            actor="bench",
            kind="email",
            key_id=KEY_ID,
            capacity=capacity,
            forum_fpr=FPR,
            max_members=MAX_MEMBERS,
            replace_interval_seconds=0,
            now=now,
        )

    return setup


def bench_upload(*, quick: bool) -> dict[str, Any]:
    """One member uploads a filter of 64 MiB (8 MiB quick) to a ``sigshare-hub serve`` process:
    one upload to warm the process up (a hub serves upload after upload), then three distinct
    filters, each timed from the first byte sent to the hub's answer (received, verified,
    stored durably); the best and the median.

    SQLite with its default blob directory, PostgreSQL with a blob directory (how replicas
    run) and, for comparison, with payloads in the database."""
    target_bytes = (8 if quick else 64) << 20
    capacity = capacity_for(target_bytes)
    params = BloomParams.for_forum("email", KEY_ID, capacity, FPR, MAX_MEMBERS)
    count = int(capacity * 0.95)
    payloads = [encode_bloom(_random_filter(params, count, seed)) for seed in range(4)]
    size = len(payloads[0])
    out: dict[str, Any] = {"filter_bytes": size, "m": params.m, "items": count}

    setup = replaceable_email(capacity)
    runs = [(backend, backend, False) for backend in _backends()]
    if "postgresql" in _backends():
        runs.append(("postgresql_in_database", "postgresql", True))
    for label, backend, in_database in runs:
        with (
            _served_hub(backend, setup, payloads_in_database=in_database) as hub,
            hub.client("m00") as client,
        ):
            published = client.get_parameters().bloom["email"]
            times = []
            for number, payload in enumerate(payloads):
                started = time.perf_counter()
                result = client.submit(
                    sketch_format=SketchFormat.BLOOM_V1,
                    kind="email",
                    key_id=KEY_ID,
                    params_digest=published.digest,
                    declared_count=count,
                    payload=payload,
                )
                if number > 0:  # the first warms the process up
                    times.append(time.perf_counter() - started)
                assert not result.duplicate
        out[f"{label}_seconds"] = min(times)
        out[f"{label}_mb_per_s"] = size / min(times) / 1e6
        out[f"{label}_median_mb_per_s"] = size / sorted(times)[len(times) // 2] / 1e6
    raw = _raw_grpc_seconds(payloads[0], 1 << 20)
    out["raw_grpc_mb_per_s"] = size / raw / 1e6
    out["sqlite_fraction_of_raw_grpc"] = out["sqlite_mb_per_s"] / out["raw_grpc_mb_per_s"]
    return out


# --- cross-member LSH --------------------------------------------------------------------------


def _cluster_signatures(
    members: int, per_member: int, shared: int, num_perm: int, seed: int
) -> tuple[list[npt.NDArray[np.uint32]], int]:
    """Random signatures per member, plus ``shared`` planted campaigns each held by 2-5
    members as near-copies (about 80 % equal minima, Jaccard ≈ 0.8)."""
    rng = np.random.default_rng(seed)
    blocks = [
        rng.integers(0, 2**32 - 1, size=(per_member, num_perm), dtype=np.uint32)
        for _ in range(members)
    ]
    for campaign in range(shared):
        base = rng.integers(0, 2**32 - 1, size=num_perm, dtype=np.uint32)
        holders = rng.choice(members, size=int(rng.integers(2, 6)), replace=False)
        for holder in holders:
            copy = base.copy()
            changed = rng.random(num_perm) < 0.2
            copy[changed] = rng.integers(0, 2**32 - 1, size=int(changed.sum()), dtype=np.uint32)
            blocks[holder][campaign] = copy
    return blocks, shared


CORE_SIZE = 24
"""Distinct shingles stated for every generated cluster core (a distillation template's)."""


def bench_campaigns(*, quick: bool) -> dict[str, Any]:
    """1M cluster signatures from 20 members (quick: 100k); time the coordinator's first
    campaign listing, which matches every member's clusters against every other member's."""
    members, total = 20, (100_000 if quick else 1_000_000)
    per_member, planted = total // members, 2_000
    threshold = 0.5  # the planted campaigns' similarity is set for it
    blocks, _ = _cluster_signatures(members, per_member, planted, 128, seed=7)
    payloads = []
    for block in blocks:
        clusters = [
            ClusterInfo(
                cluster_id=new_cluster_id(),
                volume=10,
                category="distillation",
                first_seen=None,
                last_seen=None,
                core_size=CORE_SIZE,
            )
            for _ in range(len(block))
        ]
        signatures = SignatureSet(key_id=KEY_ID, shingle_unit="word", shingle_size=1, values=block)
        payloads.append(encode_cluster_set(signatures, clusters))
    out: dict[str, Any] = {"members": members, "signatures": total, "planted_campaigns": planted}

    def setup(session: Any, now: datetime) -> None:
        parameters.set_minhash_parameters(
            session, actor="bench", family="prompt", key_id=KEY_ID, threshold=threshold, now=now
        )

    all_signatures = np.concatenate(blocks)
    groups = np.repeat(np.arange(members), per_member)
    for backend in _backends():
        with _hub(backend, members, setup) as hub:
            published = hub.client("m00").get_parameters().minhash["prompt"]
            started = time.perf_counter()
            for index, payload in enumerate(payloads):
                with hub.client(f"m{index:02d}") as client:
                    client.submit(
                        sketch_format=SketchFormat.CLUSTERS_V1,
                        kind="prompt",
                        key_id=KEY_ID,
                        params_digest=published.digest,
                        declared_count=per_member,
                        payload=payload,
                    )
            out[f"{backend}_submit_all_seconds"] = time.perf_counter() - started
            channel = grpc.insecure_channel(f"127.0.0.1:{hub.port}")
            review = pb_grpc.ReviewServiceStub(channel)
            metadata = (("authorization", f"Bearer {hub.credentials['coord']}"),)
            started = time.perf_counter()
            listing = review.ListCampaigns(
                pb.ListCampaignsRequest(page=pb.PageRequest(page_size=1000)),
                metadata=metadata,
                timeout=600,
            )
            out[f"{backend}_match_seconds"] = time.perf_counter() - started
            found = len(listing.campaigns)
            while listing.next_page_token:
                listing = review.ListCampaigns(
                    pb.ListCampaignsRequest(
                        page=pb.PageRequest(page_size=1000, page_token=listing.next_page_token)
                    ),
                    metadata=metadata,
                )
                found += len(listing.campaigns)
            out[f"{backend}_campaigns_found"] = found
            channel.close()
            banding = (published.bands, published.rows)
    # The matching step alone, in process, for the breakdown.
    from sigshare.sketch.lsh import Banding

    started = time.perf_counter()
    pairs = candidate_pairs(all_signatures, Banding(*banding), groups=groups)
    out["engine_candidate_pairs_seconds"] = time.perf_counter() - started
    out["engine_candidate_pairs"] = len(pairs)
    return out


BENCHMARKS = {
    "hub_upload": bench_upload,
    "hub_campaigns": bench_campaigns,
}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        ("hub_upload", "sqlite_mb_per_s", "upload MB/s over loopback (SQLite)", 200.0, 1),
        ("hub_upload", "postgresql_mb_per_s", "upload MB/s over loopback (PostgreSQL)", 200.0, 1),
        (
            "hub_campaigns",
            "sqlite_match_seconds",
            "LSH 1M signatures, 20 members (SQLite) s",
            60.0,
            -1,
        ),
        (
            "hub_campaigns",
            "postgresql_match_seconds",
            "LSH 1M signatures, 20 members (PostgreSQL) s",
            60.0,
            -1,
        ),
    ]
    out = []
    for bench, key, label, target, direction in rows:
        if bench not in results or key not in results[bench]:
            continue
        value = float(results[bench][key])
        met = value >= target if direction > 0 else value <= target
        out.append(
            {
                "goal": label,
                "measured": value,
                "target": f"{'≥' if direction > 0 else '≤'} {target:g}",
                "met": met,
            }
        )
    return out


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sigshare hub benchmarks (loopback gRPC)", title_justify="left")
    for column in ("benchmark", "backend", "figure"):
        table.add_column(column, justify="left" if column != "figure" else "right")
    if "hub_upload" in results:
        r = results["hub_upload"]
        label = f"upload one {r['filter_bytes'] / 2**20:.0f} MiB filter"
        for backend, name in (
            ("sqlite", "sqlite (blob dir)"),
            ("postgresql", "postgresql (blob dir)"),
            ("postgresql_in_database", "postgresql (bytea)"),
        ):
            if f"{backend}_mb_per_s" in r:
                table.add_row(
                    label,
                    name,
                    f"{r[f'{backend}_mb_per_s']:,.0f} MB/s "
                    f"(median {r[f'{backend}_median_mb_per_s']:,.0f})",
                )
        table.add_row(
            "same stream to a byte-counting servicer",
            "raw gRPC",
            f"{r['raw_grpc_mb_per_s']:,.0f} MB/s",
        )
    if "hub_campaigns" in results:
        r = results["hub_campaigns"]
        label = f"LSH campaigns, {r['signatures']:,} signatures / {r['members']} members"
        for backend in ("sqlite", "postgresql"):
            if f"{backend}_match_seconds" in r:
                table.add_row(
                    f"{label}: submit all", backend, f"{r[f'{backend}_submit_all_seconds']:.1f} s"
                )
                table.add_row(
                    f"{label}: match ({r[f'{backend}_campaigns_found']:,} campaigns)",
                    backend,
                    f"{r[f'{backend}_match_seconds']:.1f} s",
                )
        table.add_row(
            "candidate pairs alone (engine)",
            "in process",
            f"{r['engine_candidate_pairs_seconds']:.1f} s",
        )
    Console().print(table)
