"""The bit-sliced membership index against an exact oracle: each member's own filter, tested
token by token with ``BloomFilter.contains_tokens``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigshare.hub.matching.membership import (
    FREE,
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


def _no_base(index: MembershipIndex) -> Callable[[MembershipIndex | None], MembershipIndex]:
    def build(base: MembershipIndex | None) -> MembershipIndex:
        return index

    return build


def test_cache_returns_what_it_built_and_evicts_least_recently_used() -> None:
    cache = IndexCache(max_bytes=3000)
    first = cache.get("email", "a", _no_base(_index(1000, 1)))
    assert cache.get("email", "a", lambda base: pytest.fail("rebuilt a cached index")) is first
    cache.get("email", "b", _no_base(_index(1000, 2)))
    cache.get("email", "a", lambda base: pytest.fail("rebuilt a cached index"))  # a is newest
    cache.get("email", "c", _no_base(_index(1500, 3)))  # 3500 bytes: b, least recently used, goes
    assert cache.nbytes == 2500
    rebuilt = cache.get("email", "b", _no_base(_index(1000, 4)))
    assert rebuilt.slots == (4,)
    assert cache.builds == 4


def test_a_build_gets_the_most_recent_index_of_its_family_as_base() -> None:
    cache = IndexCache()
    older = cache.get("email", "v1", _no_base(_index(10, 1)))
    newer = cache.get("email", "v2", _no_base(_index(10, 2)))
    other = cache.get("phone", "v1", _no_base(_index(10, 3)))
    bases: list[MembershipIndex | None] = []

    def build(base: MembershipIndex | None) -> MembershipIndex:
        bases.append(base)
        return _index(10, 4)

    cache.get("email", "v3", build)
    cache.get("ip", "v1", build)
    assert bases == [newer, None]
    assert older is not newer is not other


def test_cache_keeps_the_two_newest_versions_of_a_family() -> None:
    cache = IndexCache()
    for version in range(5):
        cache.get("email", version, _no_base(_index(10, version)))
    cache.get("phone", 0, _no_base(_index(10, 9)))
    assert cache.nbytes == 3 * 10
    cache.get("email", 4, lambda base: pytest.fail("the newest version was dropped"))
    cache.get("email", 3, lambda base: pytest.fail("the previous version was dropped"))
    rebuilt = cache.get("email", 0, _no_base(_index(10, 7)))
    assert rebuilt.slots == (7,)


def test_cache_keeps_nothing_larger_than_itself_and_zero_disables_it() -> None:
    cache = IndexCache(max_bytes=100)
    cache.get("email", "big", _no_base(_index(1000, 1)))
    assert cache.nbytes == 0
    cache.get("email", "big", _no_base(_index(1000, 1)))
    assert cache.builds == 2
    with pytest.raises(ValueError, match="negative"):
        IndexCache(max_bytes=-1)


def test_concurrent_requests_for_a_missing_index_build_it_once() -> None:
    cache = IndexCache()

    def slow_build(base: MembershipIndex | None) -> MembershipIndex:
        time.sleep(0.2)
        return _index(100, 9)

    results: list[MembershipIndex] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("email", "k", slow_build)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 4
    assert all(result is results[0] for result in results)
    assert cache.builds == 1


# ------------------------------------------------------------------------------ patching


def _masks_by_member(index: MembershipIndex, probes: TokenArray) -> dict[int, np.ndarray]:
    bits = np.unpackbits(index.holders(probes), axis=1, bitorder="little")
    return {member: bits[:, slot] for slot, member in enumerate(index.slots) if member != FREE}


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(1, 20),
    gone=st.integers(0, 5),
    changed=st.integers(0, 5),
    added=st.integers(0, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_patched_index_answers_exactly_like_a_full_build(
    start: int, gone: int, changed: int, added: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    params = BloomParams(kind="email", key_id="k1", m=64 * 32, k=4, capacity=50, target_fpr=0.01)

    def bloom(n: int) -> BloomFilter:
        made = BloomFilter(params)
        made.add_tokens(_tokens(rng, n))
        return made

    filters = {member: bloom(60) for member in range(start)}
    sources = [(member, ("v1", member)) for member in filters]
    base = MembershipIndex.build(
        params.m, params.k, [(m, f.bits) for m, f in filters.items()], sources
    )
    gone_ids = list(filters)[: min(gone, start)]
    changed_ids = list(filters)[len(gone_ids) : len(gone_ids) + changed]
    added_ids = list(range(100, 100 + added))
    for member in gone_ids:
        del filters[member]
    for member in [*changed_ids, *added_ids]:
        filters[member] = bloom(60)
    new_sources = [
        (m, ("v2", m) if m in changed_ids or m in added_ids else ("v1", m)) for m in filters
    ]
    loaded: list[int] = []

    def load(member: int) -> np.ndarray:
        loaded.append(member)
        return filters[member].bits

    patched = base.patched(new_sources, load)
    full = MembershipIndex.build(
        params.m, params.k, [(m, f.bits) for m, f in filters.items()], new_sources
    )
    probes = _tokens(rng, 400)
    if patched is None:
        # Refused only when most members changed or a newcomer has no free slot.
        free = 8 * base.mask_bytes - start + len(gone_ids)
        assert 2 * (len(gone_ids) + len(changed_ids) + len(added_ids)) > max(len(filters), 1) or (
            len(added_ids) > free
        )
        return
    assert sorted(loaded) == sorted([*changed_ids, *added_ids])  # only what changed is read
    assert patched.sources == full.sources
    assert _masks_by_member(patched, probes).keys() == _masks_by_member(full, probes).keys()
    for member, column in _masks_by_member(full, probes).items():
        assert np.array_equal(_masks_by_member(patched, probes)[member], column), member
    assert not base.words.flags.writeable
    assert not patched.words.flags.writeable
    for member in gone_ids:
        assert patched.slot_of(member) is None


def test_one_members_new_filter_is_patched_in_and_a_newcomer_takes_a_free_slot() -> None:
    filters, probes = _forum(9, items=200, seed=5)
    sources = [(i, ("v1", i)) for i in range(9)]
    base = MembershipIndex.build(
        filters[0].params.m, 5, [(i, f.bits) for i, f in enumerate(filters)], sources
    )
    assert base.mask_bytes == 2
    replacement, _ = _forum(1, items=200, seed=6)
    # Member 3 sends a new filter, member 8 leaves, member 42 joins in the slot 8 left.
    after = {**{i: f for i, f in enumerate(filters) if i != 8}, 3: replacement[0], 42: filters[8]}
    new_sources = [(i, ("v2", i) if i in (3, 42) else ("v1", i)) for i in after]
    loaded: list[int] = []
    patched = base.patched(new_sources, lambda member: loaded.append(member) or after[member].bits)
    assert patched is not None
    assert sorted(loaded) == [3, 42]
    assert patched.slot_of(42) == 8
    assert patched.slot_of(8) is None
    got = np.unpackbits(patched.holders(probes), axis=1, bitorder="little")
    for member, bloom in after.items():
        slot = patched.slot_of(member)
        assert slot is not None
        assert np.array_equal(got[:, slot].astype(bool), bloom.contains_tokens(probes)), member
    # Most members changed: a full build is the better deal.
    everyone = [(i, ("v3", i)) for i in range(9)]
    assert base.patched(everyone, lambda member: filters[member].bits) is None
