"""Salted MinHash signatures of texts, computed in batches.

Pipeline for a batch of texts (word shingles, the default):

1. canonical words of each text (:mod:`sigshare.sketch.text`);
2. each *distinct* word in the batch gets a 64-bit keyed hash from the salt key (one PRF call per
   distinct word, see :mod:`sigshare.sketch.prf`);
3. each word n-gram's hash is ``fmix64(Σ_t w_{j+t}·M_t)`` over its words' keyed hashes (odd
   multipliers ``M_t`` make it order-sensitive), computed for the whole batch with numpy; its top
   32 bits are the shingle value ``x``;
4. permutation ``i`` maps ``x`` to ``(a_i·x + b_i) mod 2³²`` (``a_i`` odd, so a bijection) and the
   signature keeps the minimum over the text's shingles.

Every coefficient (``M_t``, ``a_i``, ``b_i``) comes from the salt key too, so without the forum
secret the hub can neither compute the signature of a chosen text nor relate two signatures
beyond comparing them. Because shingle values are keyed PRF outputs, the cheap multiply-add
family only has to order uniformly random 32-bit values, which it does like a random
permutation; the tests check the Jaccard error against the exact set oracle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from sigshare.sketch.errors import ParameterError
from sigshare.sketch.keys import KEY_ID_RULE, ForumSecret, KeyPurpose, is_valid_key_id
from sigshare.sketch.prf import KeyedPRF
from sigshare.sketch.text import (
    STOPWORDS,
    STOPWORDS_VERSION,
    TEXT_RULES_VERSION,
    WordBlocks,
    canonical_text,
    word_block,
    word_blocks,
)

EMPTY = np.uint32(0xFFFFFFFF)
"""Signature value of a text without shingles (every position)."""
MAX_SHINGLE_SIZE = 16
CORE_RULES = frozenset({1, 2})
_CHUNK_TEXTS = 512  # texts per batch: the batch temporaries stay in cache
_CHUNK_SHINGLES = 4096  # shingles per permutation step: (P × 4096) uint32 stays in L2
_FMIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_2 = np.uint64(0xC4CEB9FE1A85EC53)

Signatures = npt.NDArray[np.uint32]
ShingleValues = npt.NDArray[np.uint32]
Offsets = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class MinHashParams:
    """Parameters shared by the whole forum for one fingerprint family."""

    key_id: str
    num_perm: int = 128
    shingle_unit: Literal["word", "char"] = "word"
    shingle_size: int = 3
    drop_stopwords: bool = False
    """Drop English function words (:data:`~sigshare.sketch.text.STOPWORDS`) before shingling."""
    core_rules: int = 1
    """How a member sketches a cluster (:mod:`sigshare.sketch.cluster`): 1 — the shingles in a
    strict majority of its prompts; 2 — the same, less the shingles the member's other clusters
    share (its front-end's boilerplate)."""

    def __post_init__(self) -> None:
        if not is_valid_key_id(self.key_id):
            raise ParameterError(KEY_ID_RULE)
        if not 8 <= self.num_perm <= 1024:
            raise ParameterError(f"num_perm must be between 8 and 1024, got {self.num_perm}")
        if self.shingle_unit not in ("word", "char"):
            raise ParameterError(
                f"shingle unit must be 'word' or 'char', got {self.shingle_unit!r}"
            )
        if not 1 <= self.shingle_size <= MAX_SHINGLE_SIZE:
            raise ParameterError(f"shingle size must be between 1 and {MAX_SHINGLE_SIZE}")
        if self.drop_stopwords and self.shingle_unit != "word":
            raise ParameterError("stopwords can only be dropped from word shingles")
        if type(self.core_rules) is not int or self.core_rules not in CORE_RULES:
            raise ParameterError(
                f"core rules must be one of {sorted(CORE_RULES)}, got {self.core_rules}"
            )

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON of the parameters (includes the text rules version)."""
        document: dict[str, object] = {
            "format": "sigshare/minhash-params/v1",
            "key_id": self.key_id,
            "num_perm": self.num_perm,
            "shingle_size": self.shingle_size,
            "shingle_unit": self.shingle_unit,
            "text_rules": TEXT_RULES_VERSION,
        }
        # Added only when set, so the digests of families published before they existed stand.
        if self.drop_stopwords:
            document["stopwords"] = STOPWORDS_VERSION
        if self.core_rules != 1:
            document["core_rules"] = self.core_rules
        return hashlib.sha256(
            json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        ).digest()


def _fmix64(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """MurmurHash3's 64-bit finaliser, in place: a bijection with full avalanche."""
    values ^= values >> np.uint64(33)
    values *= _FMIX_1
    values ^= values >> np.uint64(33)
    values *= _FMIX_2
    values ^= values >> np.uint64(33)
    return values


def _key_words(prf: KeyedPRF, label: str, count: int) -> npt.NDArray[np.uint64]:
    """``count`` pseudo-random 64-bit words derived from the key for coefficient ``label``."""
    return prf.tokens([f"sigshare/v1/coefficient/{label}/{i}" for i in range(count)])[:, 0].copy()


class SaltedMinHasher:
    """Computes keyed MinHash signatures; the same key and parameters give the same signatures."""

    __slots__ = ("_a", "_b", "_multipliers", "_prf", "_salt_key", "_stopword_hashes", "params")

    def __init__(self, params: MinHashParams, salt_key: bytes) -> None:
        self.params = params
        self._salt_key = bytes(salt_key)
        self._prf = KeyedPRF(salt_key)
        self._multipliers = _key_words(self._prf, "shingle", params.shingle_size) | np.uint64(1)
        self._a = (_key_words(self._prf, "perm-a", params.num_perm) >> np.uint64(32)).astype(
            np.uint32
        ) | np.uint32(1)
        self._b = (_key_words(self._prf, "perm-b", params.num_perm) >> np.uint64(32)).astype(
            np.uint32
        )
        self._stopword_hashes = np.zeros(0, dtype=np.uint64)
        if params.drop_stopwords:
            blocks = b"".join(word_block(word) for word in sorted(STOPWORDS))
            self._stopword_hashes = np.sort(
                self._prf.encrypt_blocks(np.frombuffer(blocks, dtype=np.uint8).reshape(-1, 16))[
                    :, 0
                ]
            )

    @classmethod
    def from_secret(
        cls, secret: ForumSecret, params: MinHashParams, family: str = "prompt"
    ) -> SaltedMinHasher:
        """The hasher for fingerprint ``family`` in the secret's key epoch."""
        if secret.key_id != params.key_id:
            raise ParameterError(
                f"parameters are for key id {params.key_id!r}, the secret is {secret.key_id!r}"
            )
        return cls(params, secret.derive(KeyPurpose.MINHASH_SALT, family))

    def __repr__(self) -> str:
        return f"SaltedMinHasher({self.params!r}, <key hidden>)"

    def sibling(self, params: MinHashParams) -> SaltedMinHasher:
        """A hasher with the same salt key and other parameters (for a member's own use, such
        as grouping its prompts: its signatures are never compared with another member's)."""
        return SaltedMinHasher(params, self._salt_key)

    # -- shingles ---------------------------------------------------------------------------

    def shingles(self, texts: Sequence[str]) -> tuple[ShingleValues, Offsets]:
        """Shingle values of every text: ``flat[offsets[d]:offsets[d + 1]]`` belong to text ``d``.

        Values may repeat within a text (a repeated phrase); MinHash ignores repeats.
        """
        if self.params.shingle_unit == "char":
            return self._char_shingles(texts)
        return self._word_shingles(word_blocks(texts))

    def _word_shingles(self, batch: WordBlocks) -> tuple[ShingleValues, Offsets]:
        n = self.params.shingle_size
        word_hashes = self._prf.encrypt_blocks(batch.blocks)[:, 0]
        offsets_in = batch.offsets
        if self._stopword_hashes.size and word_hashes.size:
            keep = ~np.isin(word_hashes, self._stopword_hashes)
            owner = np.repeat(np.arange(len(offsets_in) - 1), np.diff(offsets_in))
            offsets_in = np.zeros_like(offsets_in)
            np.cumsum(np.bincount(owner[keep], minlength=len(offsets_in) - 1), out=offsets_in[1:])
            word_hashes = word_hashes[keep]
        starts, ends = offsets_in[:-1], offsets_in[1:]
        lengths = ends - starts
        total_words = len(word_hashes)

        counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])

        values = np.zeros(0, dtype=np.uint32)
        if total_words >= n:
            combined = word_hashes[: total_words - n + 1] * self._multipliers[0]
            for t in range(1, n):
                combined += word_hashes[t : total_words - n + 1 + t] * self._multipliers[t]
            _fmix64(combined)
            # An n-gram starting in the last n-1 words of a text would run into the next one.
            crosses = np.zeros(len(combined), dtype=np.bool_)
            for back in range(1, n):
                position = ends - back
                inside = (position >= starts) & (position < len(combined))
                crosses[position[inside]] = True
            values = (combined[~crosses] >> np.uint64(32)).astype(np.uint32)
        short = np.flatnonzero((lengths > 0) & (lengths < n))
        if not short.size:
            return values, offsets
        # A text shorter than one shingle is one shingle of all its words.
        out = np.empty(int(offsets[-1]), dtype=np.uint32)
        regular = np.ones(len(out), dtype=np.bool_)
        regular[offsets[short]] = False
        out[regular] = values
        for doc in short:
            start, length = int(starts[doc]), int(lengths[doc])
            value = (word_hashes[start : start + length] * self._multipliers[:length]).sum(
                dtype=np.uint64
            )
            out[offsets[doc]] = (_fmix64(np.array([value], dtype=np.uint64)) >> np.uint64(32))[0]
        return out, offsets

    def _char_shingles(self, texts: Sequence[str]) -> tuple[ShingleValues, Offsets]:
        n = self.params.shingle_size
        grams: list[list[str]] = []
        for text in texts:
            canonical = canonical_text(text)
            if 0 < len(canonical) < n:
                grams.append([canonical])
            else:
                grams.append([canonical[i : i + n] for i in range(len(canonical) - n + 1)])
        counts = np.fromiter(map(len, grams), dtype=np.int64, count=len(grams))
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        raw = b"".join(word_block(gram) for gram_list in grams for gram in gram_list)
        blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16)
        hashes = self._prf.encrypt_blocks(blocks)[:, 0] >> np.uint64(32)
        return hashes.astype(np.uint32), offsets

    # -- signatures -------------------------------------------------------------------------

    def signatures(self, texts: Sequence[str]) -> Signatures:
        """``(len(texts), P)`` signatures; a text without words gets the all-``EMPTY`` row."""
        out = np.empty((len(texts), self.params.num_perm), dtype=np.uint32)
        for start in range(0, len(texts), _CHUNK_TEXTS):
            chunk = texts[start : start + _CHUNK_TEXTS]
            flat, offsets = self.shingles(chunk)
            out[start : start + len(chunk)] = self.signatures_from_shingles(flat, offsets)
        return out

    def signatures_from_shingles(self, flat: ShingleValues, offsets: Offsets) -> Signatures:
        """Signatures of the shingle sets ``flat[offsets[d]:offsets[d + 1]]``."""
        docs = len(offsets) - 1
        perms = self.params.num_perm
        out = np.full((docs, perms), EMPTY, dtype=np.uint32)
        nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
        if not nonempty.size:
            return out
        a, b = self._a[:, None], self._b[:, None]
        buffer = np.empty((perms, _CHUNK_SHINGLES), dtype=np.uint32)
        first = 0
        while first < nonempty.size:
            # Take whole documents until the chunk is full (at least one, however long).
            start = int(offsets[nonempty[first]])
            last = first + 1
            limit = start + _CHUNK_SHINGLES
            while last < nonempty.size and offsets[nonempty[last] + 1] <= limit:
                last += 1
            chunk_docs = nonempty[first:last]
            stop = int(offsets[chunk_docs[-1] + 1])
            values = flat[start:stop]
            width = stop - start
            work = (
                buffer[:, :width]
                if width <= _CHUNK_SHINGLES
                else np.empty((perms, width), np.uint32)
            )
            np.multiply(a, values[None, :], out=work)
            work += b
            minima = np.minimum.reduceat(work, offsets[chunk_docs] - start, axis=1)
            out[chunk_docs] = minima.T
            first = last
        return out

    def signature_of_set(self, shingle_values: ShingleValues) -> Signatures:
        """The signature of one set of shingle values, shape ``(P,)``."""
        offsets = np.array([0, len(shingle_values)], dtype=np.int64)
        signature: Signatures = self.signatures_from_shingles(shingle_values, offsets)[0]
        return signature


def estimate_jaccard(first: Signatures, second: Signatures) -> float:
    """Fraction of equal minima: an unbiased estimate of the Jaccard similarity."""
    if first.shape != second.shape:
        raise ParameterError("signatures have different lengths")
    return float(np.count_nonzero(first == second)) / int(first.shape[-1])


def jaccard_stderr(jaccard: float, num_perm: int) -> float:
    """Standard error of :func:`estimate_jaccard`: sqrt(J·(1 − J)/P)."""
    return float(np.sqrt(jaccard * (1.0 - jaccard) / num_perm))
