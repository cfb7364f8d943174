"""The bit-sliced membership index against an exact oracle: each member's own filter, tested
token by token with ``BloomFilter.contains_tokens``."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigshare.hub.engine.membership import (
    IndexCache,
    MembershipIndex,
    has_slot,
    holder_counts,
    mask_bytes_for,
    select_slots,
    without_slot,
)
from sigshare.sketch.bloom import BloomFilter, BloomParams
from sigshare.sketch.prf import TokenArray


def _tokens(rng: np.random.Generator, n: int) -> TokenArray:
    tokens: TokenArray = rng.integers(0, 2**64, size=(n, 2), dtype=np.uint64)
    return tokens


def _forum(
    members: int, items: int, seed: int, *, m_words: int = 64, k: int = 5
) -> tuple[list[BloomFilter], TokenArray]:
    """``members`` filters of ``items`` random tokens each, and probe tokens: every member's own
    tokens plus as many fresh ones."""
    rng = np.random.default_rng(seed)
    params = BloomParams(
        kind="email", key_id="k1", m=64 * m_words, k=k, capacity=max(items, 1), target_fpr=0.01
    )
    filters, owned = [], []
    for _ in range(members):
        tokens = _tokens(rng, items)
        bloom = BloomFilter(params)
        bloom.add_tokens(tokens)
        filters.append(bloom)
        owned.append(tokens)
    probes = np.concatenate([*owned, _tokens(rng, items * members)])
    return filters, probes


def _oracle(filters: list[BloomFilter], probes: TokenArray) -> np.ndarray:
    return np.stack([bloom.contains_tokens(probes) for bloom in filters], axis=1)


@pytest.mark.parametrize("members", [1, 3, 8, 9, 16, 17, 33, 64, 65, 130])
def test_holders_equal_each_members_own_filter(members: int) -> None:
    # Half-full filters (fill ≈ 0.5) so that both answers occur often for fresh probes.
    filters, probes = _forum(members, items=400, seed=members, m_words=64, k=5)
    index = MembershipIndex.build(
        filters[0].params.m, filters[0].params.k, [(100 + i, f.bits) for i, f in enumerate(filters)]
    )
    masks = index.holders(probes)
    assert masks.shape == (len(probes), mask_bytes_for(members))
    expected = _oracle(filters, probes)
    got = np.unpackbits(masks, axis=1, bitorder="little")[:, :members].astype(bool)
    assert np.array_equal(got, expected)
    # Bits beyond the last slot are never set.
    assert not np.unpackbits(masks, axis=1, bitorder="little")[:, members:].any()
    assert np.array_equal(holder_counts(masks), expected.sum(axis=1))
    assert index.slots == tuple(100 + i for i in range(members))
    assert index.slot_of(100 + members - 1) == members - 1
    assert index.slot_of(7) is None


@settings(max_examples=40, deadline=None)
@given(
    members=st.integers(1, 20),
    m_words=st.integers(1, 40),
    k=st.integers(1, 12),
    items=st.integers(0, 120),
    seed=st.integers(0, 2**32 - 1),
)
def test_holders_match_the_oracle_for_any_parameters(
    members: int, m_words: int, k: int, items: int, seed: int
) -> None:
    filters, probes = _forum(members, items, seed, m_words=m_words, k=k)
    if not len(probes):
        probes = _tokens(np.random.default_rng(seed), 5)
    index = MembershipIndex.build(
        64 * m_words, k, [(i, bloom.bits) for i, bloom in enumerate(filters)]
    )
    got = np.unpackbits(index.holders(probes), axis=1, bitorder="little")[:, :members]
    assert np.array_equal(got.astype(bool), _oracle(filters, probes))


def test_a_member_always_holds_its_own_tokens_and_slot_helpers_agree() -> None:
    filters, probes = _forum(10, items=300, seed=3)
    index = MembershipIndex.build(
        filters[0].params.m, 5, [(i, f.bits) for i, f in enumerate(filters)]
    )
    masks = index.holders(probes)
    for slot in range(10):
        own = probes[300 * slot : 300 * (slot + 1)]
        assert has_slot(index.holders(own), slot).all()  # no false negatives, ever
    cleared = without_slot(masks, 4)
    assert not has_slot(cleared, 4).any()
    assert np.array_equal(holder_counts(cleared), holder_counts(masks) - has_slot(masks, 4))
    assert np.array_equal(has_slot(masks, 4), _oracle(filters, probes)[:, 4])
    picked = select_slots(masks, [7, 2])
    assert np.array_equal(has_slot(picked, 0), has_slot(masks, 7))
    assert np.array_equal(has_slot(picked, 1), has_slot(masks, 2))
    assert select_slots(masks, []).shape == (len(masks), 0)


def test_index_words_are_read_only_and_filters_must_match_m() -> None:
    filters, _ = _forum(2, items=10, seed=1)
    index = MembershipIndex.build(filters[0].params.m, 5, [(1, filters[0].bits)])
    with pytest.raises(ValueError, match="read-only"):
        index.words[0, 0] = 1
    with pytest.raises(ValueError, match="not 512 packed bytes"):
        MembershipIndex.build(filters[0].params.m, 5, [(1, filters[0].bits[:-8])])


def test_empty_index_holds_nothing() -> None:
    index = MembershipIndex.build(640, 3, [])
    masks = index.holders(_tokens(np.random.default_rng(0), 20))
    assert masks.shape == (20, 1)
    assert not masks.any()


def _index(size_bytes: int, tag: int) -> MembershipIndex:
    words = np.full((size_bytes, 1), tag, dtype=np.uint8)
    words.setflags(write=False)
    return MembershipIndex(m=size_bytes, k=1, slots=(tag,), words=words)


def test_cache_returns_what_it_built_and_evicts_least_recently_used() -> None:
    cache = IndexCache(max_bytes=3000)
    first = cache.get("a", lambda: _index(1000, 1))
    assert cache.get("a", lambda: pytest.fail("rebuilt a cached index")) is first
    cache.get("b", lambda: _index(1000, 2))
    cache.get("a", lambda: pytest.fail("rebuilt a cached index"))  # a is now the newest
    cache.get("c", lambda: _index(1500, 3))  # 3500 bytes: b, the least recently used, goes
    assert cache.nbytes == 2500
    rebuilt = cache.get("b", lambda: _index(1000, 4))
    assert rebuilt.slots == (4,)
    assert cache.builds == 4


def test_cache_keeps_nothing_larger_than_itself_and_zero_disables_it() -> None:
    cache = IndexCache(max_bytes=100)
    cache.get("big", lambda: _index(1000, 1))
    assert cache.nbytes == 0
    cache.get("big", lambda: _index(1000, 1))
    assert cache.builds == 2
    with pytest.raises(ValueError, match="negative"):
        IndexCache(max_bytes=-1)


def test_concurrent_requests_for_a_missing_index_build_it_once() -> None:
    cache = IndexCache()
    started = threading.Event()

    def slow_build() -> MembershipIndex:
        started.set()
        time.sleep(0.2)
        return _index(100, 9)

    results: list[MembershipIndex] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("k", slow_build)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 4
    assert all(result is results[0] for result in results)
    assert cache.builds == 1
