"""Which members' filters hold a token: a bit-sliced index over one kind's active filters.

For every bit position ``p`` the index keeps one word of member bits — bit ``j`` is set when
member slot ``j``'s filter sets bit ``p`` — so the members whose *own* filter holds a token
are the AND of the words at its ``k`` positions: one gather per position whatever the number
of members. This is the per-member membership test of resolution: a token counts for member
``j`` only if ``j``'s own filter holds all ``k`` of its positions, so the false-shared rate is
about ``(members − 1) ×`` the per-filter false-positive rate. (Thresholding a per-position count
vector instead lets different members cover different positions: ``(union fill)^k``.)

Words are 1, 2, 4 or 8 bytes wide (up to 8, 16, 32 or 64 members) and ``lanes`` words per
position beyond 64 members. A mask of member bits is handed out as bytes, little-endian: bit
``j`` is bit ``j & 7`` of byte ``j >> 3``.

:class:`IndexCache` keeps recently built indexes per process, keyed by exactly the submissions
they were built from, so a replica never answers from an index of another set of filters; it is
a cache only — any replica rebuilds what it lacks from the database. When the filters change by
a few members, the previous index is patched (:meth:`MembershipIndex.patched`): only the changed
filters are read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sigshare.sketch.bloom import bit_positions
from sigshare.sketch.prf import TokenArray

Bits = npt.NDArray[np.uint8]
Masks = npt.NDArray[np.uint8]
Source = tuple[int, Hashable]
"""``(member id, identity of the filter)`` — e.g. its submission id and content digest."""
FREE = -1
"""Shape ``(n, mask_bytes)``: per token, the member slots holding it."""

_SLICE_BYTES = 1 << 19  # packed filter bytes per build step: 4 Mi positions, temporaries in L2/L3
_TOKEN_CHUNK = 1 << 14  # tokens per gather step: the (k, chunk, lanes) gather stays in cache
_WORD_TYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _check_bits(member_id: int, bits: Bits, nbytes: int) -> None:
    if bits.dtype != np.uint8 or bits.shape != (nbytes,):
        raise ValueError(f"filter of member {member_id} is not {nbytes} packed bytes")


def _clear_slot(words: npt.NDArray[np.uint8], slot: int) -> None:
    column = words[:, slot >> 3]
    np.bitwise_and(column, np.uint8(0xFF ^ (1 << (slot & 7))), out=column)


def _set_slot(words: npt.NDArray[np.uint8], slot: int, bits: Bits) -> None:
    """OR one filter's bits into slot ``slot`` of every position's word (a build writes eight
    slots at a time instead: one pass over the column per byte of members)."""
    nbytes = len(bits)
    for start in range(0, nbytes, _SLICE_BYTES):
        stop = min(start + _SLICE_BYTES, nbytes)
        column = words[8 * start : 8 * stop, slot >> 3]
        unpacked = np.unpackbits(bits[start:stop], bitorder="little")
        np.left_shift(unpacked, slot & 7, out=unpacked)
        np.bitwise_or(column, unpacked, out=column)


def mask_bytes_for(members: int) -> int:
    """Bytes of one position's word for ``members`` slots: 1, 2, 4, or a multiple of 8."""
    need = max(1, -(-members // 8))
    for width in (1, 2, 4):
        if need <= width:
            return width
    return -(-need // 8) * 8


@dataclass(frozen=True, slots=True)
class MembershipIndex:
    """Member bits per position of one kind's active filters (all with the same ``m``, ``k``)."""

    m: int
    k: int
    slots: tuple[int, ...]
    """Member ids in slot order: bit ``j`` of a word belongs to ``slots[j]``; :data:`FREE`
    marks a slot no member uses (left by a member that is gone)."""
    words: npt.NDArray[np.uint8]
    """Shape ``(m, mask_bytes)``."""
    sources: tuple[Source, ...] = ()
    """What each member's bits were built from (for :meth:`patched`), by member id."""

    @classmethod
    def build(
        cls,
        m: int,
        k: int,
        filters: Sequence[tuple[int, Bits]],
        sources: Sequence[Source] = (),
    ) -> MembershipIndex:
        """Transpose ``(member id, packed bits)`` filters into per-position member words."""
        width = mask_bytes_for(len(filters))
        words = np.zeros((m, width), dtype=np.uint8)
        nbytes = m // 8
        for member_id, bits in filters:
            _check_bits(member_id, bits, nbytes)
        plane = np.empty(8 * min(_SLICE_BYTES, nbytes), dtype=np.uint8)
        unpacked = np.empty_like(plane)
        for start in range(0, nbytes, _SLICE_BYTES):
            stop = min(start + _SLICE_BYTES, nbytes)
            span = 8 * (stop - start)
            for group in range(-(-len(filters) // 8)):
                plane[:span] = 0
                for bit, (_, bits) in enumerate(filters[8 * group : 8 * group + 8]):
                    unpacked[:span] = np.unpackbits(bits[start:stop], bitorder="little")
                    if bit:
                        np.left_shift(unpacked[:span], bit, out=unpacked[:span])
                    np.bitwise_or(plane[:span], unpacked[:span], out=plane[:span])
                words[8 * start : 8 * stop, group] = plane[:span]
        words.setflags(write=False)
        return cls(
            m=m,
            k=k,
            slots=tuple(member for member, _ in filters),
            words=words,
            sources=tuple(sorted(sources)),
        )

    def patched(
        self,
        sources: Sequence[Source],
        load: Callable[[int], Bits],
    ) -> MembershipIndex | None:
        """This index brought to ``sources``: members gone are cleared, new or changed members'
        filters (``load(member id)``) written into their slot — or ``None`` when a full build is
        the better deal (most members changed, or no free slot for a newcomer).

        Only the changed filters are read, so after one member's nightly submission the next
        answer costs one filter and a copy of the words instead of every filter.
        """
        before = dict(self.sources)
        after = dict(sources)
        gone = [member for member in before if member not in after]
        changed = [member for member, source in after.items() if before.get(member) != source]
        if 2 * (len(gone) + len(changed)) > max(len(after), 1):
            return None
        slots = [FREE if member in gone else member for member in self.slots]
        slots += [FREE] * (8 * self.mask_bytes - len(slots))
        for member in changed:
            if member not in before:
                if FREE not in slots:
                    return None
                slots[slots.index(FREE)] = member
        words = self.words.copy()
        nbytes = self.m // 8
        for member in gone:
            _clear_slot(words, self.slots.index(member))
        for member in changed:
            slot = slots.index(member)
            bits = load(member)
            _check_bits(member, bits, nbytes)
            _clear_slot(words, slot)
            _set_slot(words, slot, bits)
        words.setflags(write=False)
        while slots and slots[-1] == FREE:
            slots.pop()
        return MembershipIndex(
            m=self.m, k=self.k, slots=tuple(slots), words=words, sources=tuple(sorted(sources))
        )

    @property
    def mask_bytes(self) -> int:
        return int(self.words.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes)

    def slot_of(self, member_id: int) -> int | None:
        if member_id == FREE:
            return None
        try:
            return self.slots.index(member_id)
        except ValueError:
            return None

    def _typed(self) -> npt.NDArray[np.unsignedinteger]:
        """The words as one unsigned integer per position, or ``lanes`` uint64 per position."""
        width = self.mask_bytes
        if width in _WORD_TYPES:
            typed: npt.NDArray[np.unsignedinteger] = self.words.view(_WORD_TYPES[width])
            return typed
        lanes: npt.NDArray[np.unsignedinteger] = self.words.view(np.uint64)
        return lanes

    def holders(self, tokens: TokenArray) -> Masks:
        """Per token, the slots whose filter holds all ``k`` of its positions."""
        n = len(tokens)
        typed = self._typed()
        lanes = typed.shape[1]
        out = np.empty((n, lanes), dtype=typed.dtype)
        for start in range(0, n, _TOKEN_CHUNK):
            chunk = tokens[start : start + _TOKEN_CHUNK]
            positions = bit_positions(chunk, self.m, self.k)
            np.bitwise_and.reduce(typed[positions], axis=0, out=out[start : start + len(chunk)])
        masks: Masks = out.view(np.uint8).reshape(n, self.mask_bytes)
        return masks


def holder_counts(masks: Masks) -> npt.NDArray[np.int64]:
    """Number of slots set in each mask."""
    counts: npt.NDArray[np.int64] = (
        np.bitwise_count(masks).sum(axis=1, dtype=np.int64)
        if masks.size
        else np.zeros(len(masks), dtype=np.int64)
    )
    return counts


def has_slot(masks: Masks, slot: int) -> npt.NDArray[np.bool_]:
    """Whether slot ``slot`` is set in each mask."""
    return ((masks[:, slot >> 3] >> (slot & 7)) & 1).astype(np.bool_)


def without_slot(masks: Masks, slot: int) -> Masks:
    """The masks with slot ``slot`` cleared (a copy)."""
    cleared = masks.copy()
    cleared[:, slot >> 3] &= np.uint8(0xFF ^ (1 << (slot & 7)))
    return cleared


def select_slots(masks: Masks, slots: Sequence[int]) -> Masks:
    """Masks re-packed to cover only ``slots``, in that order (bit ``i`` ↔ ``slots[i]``)."""
    if not slots:
        return np.zeros((len(masks), 0), dtype=np.uint8)
    unpacked = np.unpackbits(masks, axis=1, bitorder="little")[:, list(slots)]
    selected: Masks = np.packbits(unpacked, axis=1, bitorder="little")
    return selected


class IndexCache:
    """Recently built indexes, least recently used dropped first once ``max_bytes`` is exceeded.

    ``get(family, key, build)`` returns the cached index for ``(family, key)`` or builds it with
    ``build(base)``, ``base`` being the most recently used index of the same family (to patch)
    or ``None``; concurrent callers asking for the same missing key wait for one build instead
    of building it twice. An index larger than the whole cache is returned without being kept.
    """

    VERSIONS_KEPT = 2

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        if max_bytes < 0:
            raise ValueError("cache size cannot be negative")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Hashable, Hashable], MembershipIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple[Hashable, Hashable], threading.Lock] = {}
        self.builds = 0
        """Indexes built (or patched) so far (for tests and benchmarks)."""

    def get(
        self,
        family: Hashable,
        key: Hashable,
        build: Callable[[MembershipIndex | None], MembershipIndex],
    ) -> MembershipIndex:
        full = (family, key)
        with self._lock:
            found = self._entries.get(full)
            if found is not None:
                self._entries.move_to_end(full)
                return found
            gate = self._building.setdefault(full, threading.Lock())
        with gate:
            with self._lock:
                found = self._entries.get(full)
                if found is not None:
                    self._entries.move_to_end(full)
                    return found
                base = next(
                    (index for (fam, _), index in reversed(self._entries.items()) if fam == family),
                    None,
                )
            index = build(base)
            with self._lock:
                self.builds += 1
                self._building.pop(full, None)
                if index.nbytes <= self.max_bytes:
                    self._entries[full] = index
                    self._drop_older_versions(family)
                    self._evict()
        return index

    def _drop_older_versions(self, family: Hashable) -> None:
        """Keep the newest :data:`VERSIONS_KEPT` indexes of a family: an older set of filters
        is asked about only by a request that read the database just before it changed."""
        of_family = [key for key in self._entries if key[0] == family]
        for key in of_family[: -self.VERSIONS_KEPT]:
            del self._entries[key]

    def _evict(self) -> None:
        total = sum(entry.nbytes for entry in self._entries.values())
        while total > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())
