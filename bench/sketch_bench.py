"""Sketch-core benchmarks: ours vs rbloom, pybloom-live and datasketch on the same data.

Every timing is the best of a few repetitions on data generated once, outside the timed region.
Peers get the most favourable honest setup: rbloom gets a keyed BLAKE2b hash (the natural keyed
choice in Python; without a key rbloom's built-in hash is not comparable, as the hub could
recompute it), datasketch gets pre-split shingles for its ``bulk`` figure and plain
``str.split`` shingling (no canonicalisation) for its text-to-signature figure.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from sigshare.sketch.bloom import BloomParams, KeyedBloomFilter, and_popcount
from sigshare.sketch.lsh import candidate_pairs, optimal_banding
from sigshare.sketch.minhash import MinHashParams, SaltedMinHasher
from sigshare.sketch.prf import KeyedPRF

KEY = bytes(range(32))
TARGET_FPR = 1e-3


def _best(function: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def _emails(count: int, offset: int = 0) -> list[str]:
    return [f"user{i:08d}@mail{i % 997}.example.com" for i in range(offset, offset + count)]


def bench_bloom(*, quick: bool) -> dict[str, Any]:
    from pybloom_live import BloomFilter as PyBloom
    from rbloom import Bloom

    count = 200_000 if quick else 1_000_000
    pybloom_count = 50_000 if quick else 200_000  # pure Python: a smaller sample, rate per item
    members, strangers = _emails(count), _emails(count, offset=10 * count)
    params = BloomParams.for_capacity("email", "bench", count, TARGET_FPR)
    prf = KeyedPRF(KEY)

    def ours_build() -> KeyedBloomFilter:
        bloom = KeyedBloomFilter(params, prf)
        bloom.add(members)
        return bloom

    ours_build_s, bloom = _best(ours_build, 3)
    ours_query_s, hits = _best(lambda: bloom.contains(members), 3)
    assert bool(np.all(hits)), "false negative in our filter"
    ours_fpr = float(bloom.contains(strangers).mean())

    def keyed_hash(value: str) -> int:
        digest = hashlib.blake2b(value.encode(), key=KEY, digest_size=16).digest()
        return int.from_bytes(digest, "little", signed=True)

    def rbloom_build() -> Any:
        peer = Bloom(count, TARGET_FPR, hash_func=keyed_hash)
        peer.update(members)
        return peer

    rbloom_build_s, peer = _best(rbloom_build, 2)
    rbloom_query_s, peer_hits = _best(lambda: sum(map(peer.__contains__, members)), 2)
    assert peer_hits == count
    rbloom_fpr = sum(map(peer.__contains__, strangers[: count // 5])) / (count // 5)

    sample = members[:pybloom_count]

    def pybloom_build() -> Any:
        peer = PyBloom(capacity=count, error_rate=TARGET_FPR)
        for value in sample:
            peer.add(value)
        return peer

    pybloom_build_s, py_peer = _best(pybloom_build, 1)
    pybloom_query_s, _ = _best(lambda: sum(map(py_peer.__contains__, sample)), 1)
    rate = count / ours_build_s
    return {
        "items": count,
        "m_bits": params.m,
        "k": params.k,
        "ours_build_items_per_s": rate,
        "ours_query_items_per_s": count / ours_query_s,
        "ours_fpr": ours_fpr,
        "ours_fpr_over_target": ours_fpr / TARGET_FPR,
        "rbloom_keyed_build_items_per_s": count / rbloom_build_s,
        "rbloom_keyed_query_items_per_s": count / rbloom_query_s,
        "rbloom_keyed_fpr": rbloom_fpr,
        "pybloom_live_build_items_per_s": pybloom_count / pybloom_build_s,
        "pybloom_live_query_items_per_s": pybloom_count / pybloom_query_s,
        "build_ratio_vs_rbloom_keyed": rbloom_build_s / ours_build_s,
        "query_ratio_vs_rbloom_keyed": rbloom_query_s / ours_query_s,
        "build_ratio_vs_pybloom_live": rate / (pybloom_count / pybloom_build_s),
        "query_ratio_vs_pybloom_live": (count / ours_query_s) / (pybloom_count / pybloom_query_s),
    }


def _documents(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocabulary = [f"w{index}" for index in range(20_000)]
    return [" ".join(rng.choices(vocabulary, k=202)) for _ in range(count)]


def _datasketch_shingles(text: str) -> list[bytes]:
    words = text.split()
    return [" ".join(words[i : i + 3]).encode() for i in range(len(words) - 2)]


def bench_minhash(*, quick: bool) -> dict[str, Any]:
    from datasketch import MinHash

    count = 4_000 if quick else 20_000
    texts = _documents(count, seed=1)
    hasher = SaltedMinHasher(MinHashParams("bench"), KEY)
    hasher.signatures(texts[:100])  # warm caches and allocator
    ours_s, signatures = _best(lambda: hasher.signatures(texts), 3)
    flat, offsets = hasher.shingles(texts)
    shingles_per_doc = float(np.diff(offsets).mean())
    ours_from_shingles_s, _ = _best(lambda: hasher.signatures_from_shingles(flat, offsets), 3)

    peer_shingle_s, peer_shingles = _best(lambda: [_datasketch_shingles(t) for t in texts], 2)
    peer_bulk_s, _ = _best(lambda: MinHash.bulk(peer_shingles, num_perm=128), 2)
    assert signatures.shape == (count, 128)
    return {
        "documents": count,
        "shingles_per_document": shingles_per_doc,
        "ours_text_to_signature_docs_per_s": count / ours_s,
        "ours_shingles_to_signature_docs_per_s": count / ours_from_shingles_s,
        "datasketch_bulk_docs_per_s": count / peer_bulk_s,
        "datasketch_text_to_signature_docs_per_s": count / (peer_shingle_s + peer_bulk_s),
        "ratio_vs_datasketch_bulk": peer_bulk_s / ours_s,
        "ratio_text_to_signature": (peer_shingle_s + peer_bulk_s) / ours_s,
    }


def _planted_signatures(hasher: SaltedMinHasher, count: int, seed: int) -> npt.NDArray[np.uint32]:
    """Signatures of shingle sets where a fifth of the sets come in near-duplicate groups of 5."""
    rng = np.random.default_rng(seed)
    sets: list[npt.NDArray[np.uint32]] = []
    while len(sets) < count:
        base = rng.integers(0, 2**32, size=200, dtype=np.uint32)
        if rng.random() < 0.2:
            for _ in range(5):
                kept = base[rng.random(200) < 0.85]
                extra = rng.integers(0, 2**32, size=200 - kept.size, dtype=np.uint32)
                sets.append(np.concatenate((kept, extra)))
        else:
            sets.append(base)
    sets = sets[:count]
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum([s.size for s in sets], out=offsets[1:])
    return hasher.signatures_from_shingles(np.concatenate(sets), offsets)


def bench_lsh(*, quick: bool) -> dict[str, Any]:
    from datasketch import MinHash, MinHashLSH

    count = 20_000 if quick else 100_000
    threshold = 0.5
    hasher = SaltedMinHasher(MinHashParams("bench"), KEY)
    signatures = _planted_signatures(hasher, count, seed=2)
    banding = optimal_banding(threshold, 128)
    ours_s, pairs = _best(lambda: candidate_pairs(signatures, banding), 3)

    sketches = [MinHash(hashvalues=row, scheme="affine32") for row in signatures]

    def peer() -> set[tuple[int, int]]:
        index = MinHashLSH(threshold=threshold, num_perm=128, params=(banding.bands, banding.rows))
        for key, sketch in enumerate(sketches):
            index.insert(key, sketch)
        found: set[tuple[int, int]] = set()
        for key, sketch in enumerate(sketches):
            for other in index.query(sketch):
                if other != key:
                    found.add((min(key, other), max(key, other)))
        return found

    peer_s, peer_pairs = _best(peer, 1)
    ours_set = set(map(tuple, pairs.tolist()))
    return {
        "signatures": count,
        "bands": banding.bands,
        "rows": banding.rows,
        "candidate_pairs": len(ours_set),
        "identical_to_datasketch": ours_set == peer_pairs,
        "ours_seconds": ours_s,
        "datasketch_insert_query_seconds": peer_s,
        "ratio_vs_datasketch": peer_s / ours_s,
    }


def bench_popcount(*, quick: bool) -> dict[str, Any]:
    size = 12_000_000
    rng = np.random.default_rng(3)
    first = rng.integers(0, 256, size=size, dtype=np.uint8)
    second = rng.integers(0, 256, size=size, dtype=np.uint8)
    repeat = 10 if quick else 30
    ours_s, ours = _best(lambda: and_popcount(first, second), repeat)
    naive_s, naive = _best(
        lambda: int(np.bitwise_count(np.bitwise_and(first, second)).sum()), repeat
    )
    assert ours == naive
    return {
        "bytes_per_filter": size,
        "ours_gb_per_s": 2 * size / ours_s / 1e9,
        "numpy_naive_gb_per_s": 2 * size / naive_s / 1e9,
        "ratio_vs_numpy_naive": naive_s / ours_s,
        "definition": "bytes of both input filters read per second",
    }


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "bloom": bench_bloom,
    "minhash": bench_minhash,
    "lsh": bench_lsh,
    "popcount": bench_popcount,
}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, each with the measured figure and whether it is met."""
    rows: list[tuple[str, str, str, float, float]] = [
        ("bloom", "build_ratio_vs_rbloom_keyed", "keyed Bloom build vs rbloom+keyed hash", 4.0, 1),
        ("bloom", "query_ratio_vs_rbloom_keyed", "keyed Bloom query vs rbloom+keyed hash", 4.0, 1),
        ("bloom", "ours_fpr_over_target", "measured FPR / target", 1.2, -1),
        ("minhash", "ratio_vs_datasketch_bulk", "keyed MinHash vs datasketch bulk", 5.0, 1),
        ("lsh", "ratio_vs_datasketch", "LSH all-pairs vs datasketch insert+query", 20.0, 1),
        ("popcount", "ours_gb_per_s", "AND+popcount GB/s", 3.0, 1),
    ]
    out = []
    for bench, key, label, target, direction in rows:
        if bench not in results:
            continue
        value = float(results[bench][key])
        met = value >= target if direction > 0 else value <= target
        goal = f"{'≥' if direction > 0 else '≤'} {target:g}"
        out.append({"goal": label, "measured": value, "target": goal, "met": met})
    return out


def print_table(document: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    results = document["results"]
    table = Table(title=f"sigshare sketch benchmarks ({document['mode']})", title_justify="left")
    for column in ("benchmark", "ours", "peer", "ratio"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    if "bloom" in results:
        r = results["bloom"]
        items = f"{r['items']:,} items, FPR {TARGET_FPR:g}"
        table.add_row(
            f"Bloom build ({items}) vs rbloom+keyed",
            f"{r['ours_build_items_per_s']:,.0f}/s",
            f"{r['rbloom_keyed_build_items_per_s']:,.0f}/s",
            f"{r['build_ratio_vs_rbloom_keyed']:.1f}x",
        )
        table.add_row(
            "Bloom query vs rbloom+keyed",
            f"{r['ours_query_items_per_s']:,.0f}/s",
            f"{r['rbloom_keyed_query_items_per_s']:,.0f}/s",
            f"{r['query_ratio_vs_rbloom_keyed']:.1f}x",
        )
        table.add_row(
            "Bloom build vs pybloom-live",
            f"{r['ours_build_items_per_s']:,.0f}/s",
            f"{r['pybloom_live_build_items_per_s']:,.0f}/s",
            f"{r['build_ratio_vs_pybloom_live']:.1f}x",
        )
        table.add_row(
            "Bloom query vs pybloom-live",
            f"{r['ours_query_items_per_s']:,.0f}/s",
            f"{r['pybloom_live_query_items_per_s']:,.0f}/s",
            f"{r['query_ratio_vs_pybloom_live']:.1f}x",
        )
        table.add_row(
            "Bloom measured FPR (target 1e-3)",
            f"{r['ours_fpr']:.2e}",
            f"{r['rbloom_keyed_fpr']:.2e}",
            f"{r['ours_fpr_over_target']:.2f}x target",
        )
    if "minhash" in results:
        r = results["minhash"]
        table.add_row(
            f"MinHash P=128 ({r['shingles_per_document']:.0f} shingles/doc) vs datasketch bulk",
            f"{r['ours_text_to_signature_docs_per_s']:,.0f} docs/s",
            f"{r['datasketch_bulk_docs_per_s']:,.0f} docs/s",
            f"{r['ratio_vs_datasketch_bulk']:.1f}x",
        )
        table.add_row(
            "MinHash text→signature (peer: split+bulk)",
            f"{r['ours_text_to_signature_docs_per_s']:,.0f} docs/s",
            f"{r['datasketch_text_to_signature_docs_per_s']:,.0f} docs/s",
            f"{r['ratio_text_to_signature']:.1f}x",
        )
    if "lsh" in results:
        r = results["lsh"]
        same = "identical pairs" if r["identical_to_datasketch"] else "PAIRS DIFFER"
        table.add_row(
            f"LSH all pairs, {r['signatures']:,} sigs, b={r['bands']} r={r['rows']} ({same})",
            f"{r['ours_seconds']:.2f} s",
            f"{r['datasketch_insert_query_seconds']:.2f} s",
            f"{r['ratio_vs_datasketch']:.1f}x",
        )
    if "popcount" in results:
        r = results["popcount"]
        table.add_row(
            "AND+popcount, two 12 MB filters (vs naive numpy)",
            f"{r['ours_gb_per_s']:.2f} GB/s",
            f"{r['numpy_naive_gb_per_s']:.2f} GB/s",
            f"{r['ratio_vs_numpy_naive']:.1f}x",
        )
    console.print(table)


def print_goals(document: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    goal_table = Table(title="goals", title_justify="left")
    for column in ("goal", "measured", "target", "met"):
        goal_table.add_column(column)
    for goal in document["goals"]:
        goal_table.add_row(
            goal["goal"], f"{goal['measured']:.2f}", goal["target"], "yes" if goal["met"] else "NO"
        )
    console.print(goal_table)
    console.print(f"total {document['seconds']} s")
