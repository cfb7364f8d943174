"""Canonical words of prompt texts, one at a time (reference) and in batches (fast path).

Two prompts built from one template should canonicalise to nearly the same word sequence, and
the parts that carry an end user's content — numbers, URLs, e-mail addresses — should not survive
into the fingerprint. The rules, in order:

1. Unicode NFKC, then case folding;
2. e-mail addresses become the word ``_email_``, then URLs become ``_url_``;
3. words are the maximal runs of word characters (``\\w``); everything else separates them;
4. a word made only of decimal digits is a number, and each run of consecutive numbers becomes
   one ``_num_`` (so ``3.14``, ``1,000,000`` and ``10:30`` are each one placeholder).

Changing a rule changes every signature, so the rules are versioned (``TEXT_RULES_VERSION``) and
the version is part of the MinHash parameter digest. :func:`canonical_words` states the rules
plainly; :func:`tokenize_batch` computes the same words for many texts at once (ASCII texts take a
bytes fast path) and is tested against it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import mmh3
import numpy as np
import numpy.typing as npt

TEXT_RULES_VERSION = 1
URL_PLACEHOLDER = "_url_"
EMAIL_PLACEHOLDER = "_email_"
NUMBER_PLACEHOLDER = "_num_"

# Possessive quantifiers and look-behinds keep both patterns linear in the text length.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)++")
_URL = re.compile(r"(?:(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*+://|(?<![\w.])www\.)\S++")
_WORD = re.compile(r"\w+")
_ASCII_WORD_BYTES = bytes(
    byte if (chr(byte).isalnum() or byte == ord("_")) and byte < 0x80 else 0 for byte in range(256)
)


def _mask(folded: str) -> str:
    # The containment tests are only a shortcut: a text without them has nothing to mask.
    if "@" in folded:
        folded = _EMAIL.sub(f" {EMAIL_PLACEHOLDER} ", folded)
    if "://" in folded or "www." in folded:
        folded = _URL.sub(f" {URL_PLACEHOLDER} ", folded)
    return folded


def canonical_words(text: str) -> list[str]:
    """The canonical words of ``text`` (rules in the module docstring)."""
    out: list[str] = []
    previous_was_number = False
    for word in _WORD.findall(_mask(unicodedata.normalize("NFKC", text).casefold())):
        is_number = word.isdecimal()
        if not (is_number and previous_was_number):
            out.append(NUMBER_PLACEHOLDER if is_number else word)
        previous_was_number = is_number
    return out


def canonical_text(text: str) -> str:
    """The canonical words joined by single spaces."""
    return " ".join(canonical_words(text))


STOPWORDS_VERSION = 1
_STOPWORD_TEXT = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either else
    ever every few for from further had has have having he her here hers herself him himself his
    how i if in into is it its itself just me might more most must my myself neither no nor not
    now of off on once only or other ought our ours ourselves out over own same shall she should
    so some such than that the their theirs them themselves then there these they this those
    through to too under until up upon us very was we were what when where whether which while
    who whom whose why will with within without would yet you your yours yourself yourselves
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())
"""English function words. Families that drop them (``MinHashParams.drop_stopwords``) sketch a
text by the words that carry its meaning: two different instructions of one genre share mostly
function words, and a reworded template keeps most of its content words. The list is part of the
signature definition (``STOPWORDS_VERSION``)."""

BLOCK_BYTES = 16
_SHORT_WORD_BYTES = BLOCK_BYTES - 1
_LONG_WORD_MARK = 0xFF


def word_block(word: str | bytes) -> bytes:
    """The 16-byte block that stands for ``word`` before keyed hashing.

    A word of up to 15 UTF-8 bytes is its bytes, zero-padded, then its length (injective: a word
    never contains a zero byte). A longer word is the first 15 bytes of its MurmurHash3 x64-128
    digest, then 0xFF (distinct from every short block; long words collide with odds 2⁻¹²⁰).
    """
    raw = word.encode("utf-8") if isinstance(word, str) else word
    if len(raw) <= _SHORT_WORD_BYTES:
        return raw.ljust(_SHORT_WORD_BYTES, b"\0") + bytes([len(raw)])
    return mmh3.hash_bytes(raw)[:_SHORT_WORD_BYTES] + bytes([_LONG_WORD_MARK])


_NUMBER_BLOCK = np.frombuffer(word_block(NUMBER_PLACEHOLDER), dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class WordBlocks:
    """Canonical words of many texts as 16-byte blocks (see :func:`word_block`).

    ``blocks[offsets[d]:offsets[d + 1]]`` are the words of text ``d``, in order.
    """

    blocks: npt.NDArray[np.uint8]
    """Shape ``(words, 16)``."""
    offsets: npt.NDArray[np.int64]


def word_blocks(texts: Sequence[str]) -> WordBlocks:
    """Blocks of the canonical words of every text: the same words as :func:`canonical_words`.

    ASCII texts (nearly all prompts) are cut into words with numpy over one joined buffer, with
    no Python object per word; other texts go through :func:`canonical_words`.
    """
    ascii_docs = [i for i, text in enumerate(texts) if text.isascii()]
    other_docs = [i for i, text in enumerate(texts) if not text.isascii()]
    counts = np.zeros(len(texts), dtype=np.int64)
    parts: list[tuple[list[int], npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = []
    if ascii_docs:
        blocks, per_doc = _ascii_word_blocks([texts[i] for i in ascii_docs])
        counts[ascii_docs] = per_doc
        parts.append((ascii_docs, blocks, per_doc))
    if other_docs:
        word_lists = [canonical_words(texts[i]) for i in other_docs]
        per_doc = np.fromiter(map(len, word_lists), dtype=np.int64, count=len(word_lists))
        raw = b"".join(word_block(word) for words in word_lists for word in words)
        blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, BLOCK_BYTES)
        counts[other_docs] = per_doc
        parts.append((other_docs, blocks, per_doc))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if len(parts) == 1 and len(parts[0][0]) == len(texts):
        return WordBlocks(blocks=parts[0][1], offsets=offsets)
    out = np.empty((int(offsets[-1]), BLOCK_BYTES), dtype=np.uint8)
    for doc_indices, blocks, per_doc in parts:
        doc_array = np.asarray(doc_indices, dtype=np.int64)
        owner = np.repeat(doc_array, per_doc)
        local_starts = np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
        out[offsets[owner] + (np.arange(len(blocks)) - local_starts)] = blocks
    return WordBlocks(blocks=out, offsets=offsets)


def _ascii_word_blocks(
    texts: list[str],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    # For ASCII, NFKC is the identity, casefold() is lower() and \w is [A-Za-z0-9_]; every other
    # byte (the joining newlines included) becomes 0, which separates words and pads blocks.
    joined = "\n".join(texts).lower()
    if "@" in joined or "://" in joined or "www." in joined:
        cleaned = [
            _mask(text.lower()).encode("ascii").translate(_ASCII_WORD_BYTES) for text in texts
        ]
        buffer = b"\0".join(cleaned)
        text_lengths = np.fromiter(map(len, cleaned), np.int64, len(cleaned))
    else:  # nothing to mask anywhere: one C call per step for the whole batch
        buffer = joined.encode("ascii").translate(_ASCII_WORD_BYTES)
        text_lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    buffer += b"\0" * 2 * _WORD_BYTES
    data = np.frombuffer(buffer, dtype=np.uint8)
    edges = np.flatnonzero(np.diff((data != 0).view(np.int8), prepend=np.int8(0)))
    starts, ends = edges[0::2], edges[1::2]  # word starts and ends alternate
    lengths = ends - starts
    text_starts = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(text_lengths + 1, out=text_starts[1:])
    owner = np.repeat(np.arange(len(texts)), np.diff(np.searchsorted(starts, text_starts)))

    # Each word's first 16 bytes as two little-endian uint64 loads from a byte-strided view.
    unaligned = np.ndarray(
        shape=(len(buffer) - _WORD_BYTES,), dtype="<u8", buffer=buffer, strides=(1,)
    )
    clipped = np.minimum(lengths, _SHORT_WORD_BYTES + 1)
    low_mask, high_mask = _LOW_MASKS[clipped], _HIGH_MASKS[clipped]
    low = unaligned[starts] & low_mask
    high = unaligned[starts + _WORD_BYTES] & high_mask
    # A word is a number when every byte is a digit (bytes past its end are zero: digit-like).
    numeric = ~(
        _has_non_digit(low ^ (_ASCII_ZEROS & low_mask))
        | _has_non_digit(high ^ (_ASCII_ZEROS & high_mask))
    )
    high |= clipped.astype(np.uint64) << np.uint64(56)
    blocks = np.stack((low, high), axis=1).view(np.uint8)
    for word in np.flatnonzero(lengths > _SHORT_WORD_BYTES):
        raw = buffer[starts[word] : ends[word]]
        blocks[word] = np.frombuffer(word_block(raw), dtype=np.uint8)
        numeric[word] = raw.isdigit()

    keep = np.ones(len(starts), dtype=np.bool_)
    if numeric.any():
        blocks[numeric] = _NUMBER_BLOCK
        follows = np.zeros_like(numeric)
        follows[1:] = numeric[1:] & numeric[:-1] & (owner[1:] == owner[:-1])
        keep = ~follows
        blocks = blocks[keep]
    per_doc = np.bincount(owner[keep], minlength=len(texts)).astype(np.int64)
    return blocks, per_doc


_WORD_BYTES = 8
_LOW_MASKS = np.array([(1 << (8 * min(n, 8))) - 1 for n in range(BLOCK_BYTES + 1)], dtype=np.uint64)
_HIGH_MASKS = np.array(
    [(1 << (8 * min(max(n - 8, 0), 7))) - 1 for n in range(BLOCK_BYTES + 1)], dtype=np.uint64
)
_ASCII_ZEROS = np.uint64(0x3030303030303030)
_LOW_SEVEN = np.uint64(0x7F7F7F7F7F7F7F7F)
_PLUS_118 = np.uint64(0x7676767676767676)
_HIGH_BITS = np.uint64(0x8080808080808080)


def _has_non_digit(shifted: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    """For words XOR-ed with ASCII '0' in every byte: does any byte hold a value of 10 or more?

    Per byte b: (b & 0x7F) + 0x76 sets bit 7 exactly when b & 0x7F ≥ 10 and cannot carry into
    the next byte (0x7F + 0x76 < 0x100); OR-ing b itself catches b ≥ 0x80.
    """
    flagged: npt.NDArray[np.uint64] = ((shifted & _LOW_SEVEN) + _PLUS_118) | shifted
    has_high_bit: npt.NDArray[np.bool_] = (flagged & _HIGH_BITS) != 0
    return has_high_bit
