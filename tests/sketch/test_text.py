"""Canonical text rules, word blocks, and the batch fast path against the one-text reference."""

from __future__ import annotations

import itertools
import string

import mmh3
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sigshare.sketch.text import (
    BLOCK_BYTES,
    EMAIL_PLACEHOLDER,
    NUMBER_PLACEHOLDER,
    URL_PLACEHOLDER,
    WordBlocks,
    canonical_text,
    canonical_words,
    word_block,
    word_blocks,
)

NUM, URL, EMAIL = NUMBER_PLACEHOLDER, URL_PLACEHOLDER, EMAIL_PLACEHOLDER

CANONICAL_CASES: list[tuple[str, list[str]]] = [
    # Rule 1: NFKC (full-width forms, ligatures, superscripts), then case folding.
    ("ＨＥＬＬＯ Ｗｏｒｌｄ", ["hello", "world"]),  # noqa: RUF001
    ("Ｔｅｓｔ１２３", ["test123"]),  # noqa: RUF001
    ("ﬁnance ﬂow ﬃ", ["finance", "flow", "ffi"]),
    ("Straße STRASSE strasse", ["strasse", "strasse", "strasse"]),
    ("Σίσυφος ΣΊΣΥΦΟΣ", ["σίσυφοσ", "σίσυφοσ"]),
    ("x² ²", ["x2", NUM]),
    # Rule 2: e-mail addresses, then URLs (with a scheme or starting with www.).
    ("Contact John.Doe+tag@Example.co.uk today", ["contact", EMAIL, "today"]),
    ("mailto:a@b.co", ["mailto", EMAIL]),
    ("user@localhost stays", ["user", "localhost", "stays"]),  # no dot: not an address
    ("see https://example.com/a/b?x=1#f now", ["see", URL, "now"]),
    ("HTTP://EXAMPLE.COM/X", [URL]),
    ("visit www.example.org/page, please", ["visit", URL, "please"]),
    ("ftp://files.example.net/x.zip and git+ssh://host/repo", [URL, "and", URL]),
    # NFKC comes first: a full-width "www." starts a URL too.
    ("ｗｗｗ．ａ．ｂ end", [URL, "end"]),  # noqa: RUF001
    ("awww.x y", ["awww", "x", "y"]),  # 'www.' inside a word is not a URL start
    ("http:// alone", ["http", "alone"]),  # a scheme with nothing after it is not a URL
    # Rules 3-4: words are runs of \w; every run of consecutive numbers is one _num_.
    ("pi is 3.14", ["pi", "is", NUM]),
    ("1,000,000 users", [NUM, "users"]),
    ("at 10:30 today", ["at", NUM, "today"]),
    ("call 555 123 4567 now", ["call", NUM, "now"]),
    ("1 a 2", [NUM, "a", NUM]),
    ("٣٤ ①", [NUM]),  # Arabic-Indic digits and circled one (NFKC "1") are decimal
    ("abc123 12abc x1", ["abc123", "12abc", "x1"]),  # letters and digits: not a number
    # A literal placeholder typed by the user is the same word; it does not merge with a number.
    ("_num_ 42", [NUM, NUM]),
    ("_email_ and _url_", [EMAIL, "and", URL]),
    # Punctuation separates and is dropped; underscores are word characters.
    ("Hello, world! (test) — ok?", ["hello", "world", "test", "ok"]),
    ("state-of-the-art don't", ["state", "of", "the", "art", "don", "t"]),
    ("snake_case __init__ _", ["snake_case", "__init__", "_"]),
    ("  tabs\tand\nnewlines  ", ["tabs", "and", "newlines"]),
    ("", []),
    ("!!! ... --- ?", []),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL_CASES)
def test_canonical_words_table(text: str, expected: list[str]) -> None:
    assert canonical_words(text) == expected
    assert canonical_text(text) == " ".join(expected)


@pytest.mark.parametrize(("text", "expected"), CANONICAL_CASES)
def test_word_blocks_table(text: str, expected: list[str]) -> None:
    batch = word_blocks([text])
    assert batch.offsets.tolist() == [0, len(expected)]
    assert blocks_of(batch, 0) == [word_block(word) for word in expected]


def test_canonical_words_is_idempotent_on_its_output() -> None:
    for text, _ in CANONICAL_CASES:
        once = canonical_text(text)
        assert canonical_text(once) == once


# -- word_block -------------------------------------------------------------------------------


def test_word_block_layout_of_short_words() -> None:
    assert word_block("abc") == b"abc" + bytes(12) + bytes([3])
    assert word_block("") == bytes(16)
    fifteen = "a" * 15
    assert word_block(fifteen) == fifteen.encode() + bytes([15])
    # Non-ASCII: length is counted in UTF-8 bytes; str and its UTF-8 bytes give the same block.
    assert word_block("straße") == "straße".encode().ljust(15, b"\0") + bytes([7])
    assert word_block("straße") == word_block("straße".encode())


def test_word_block_of_long_words_is_a_marked_digest() -> None:
    for word in ("a" * 16, "supercalifragilisticexpialidocious", "é" * 8):  # é·8 = 16 bytes
        raw = word.encode()
        block = word_block(word)
        assert len(block) == BLOCK_BYTES
        assert block[15] == 0xFF
        assert block[:15] == mmh3.hash_bytes(raw)[:15]
    # A short word's last byte is its length (≤ 15): never the long-word mark.
    assert all(word_block("x" * n)[15] == n for n in range(16))


def test_word_block_injective_on_all_short_words_of_a_small_alphabet() -> None:
    # Every word of up to 3 characters over an alphabet with a multi-byte letter: 7+49+343+1.
    alphabet = ["a", "b", "_", "0", "é", "ß", "z"]
    words = ["".join(chars) for n in range(4) for chars in itertools.product(alphabet, repeat=n)]
    blocks = {word_block(word) for word in words}
    assert len(blocks) == len(words)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=15), st.text(max_size=15))
def test_word_block_injective_and_decodable(first: str, second: str) -> None:
    for word in (first, second):
        raw = word.encode()
        if len(raw) <= 15:
            block = word_block(word)
            assert block[: block[15]] == raw  # the block decodes back to the word
    raw_first, raw_second = first.encode(), second.encode()
    if max(len(raw_first), len(raw_second)) <= 15 and first != second:
        assert word_block(first) != word_block(second)


def test_word_block_long_words_are_distinct() -> None:
    words = [f"longword{i:010d}" for i in range(20_000)]  # 18 bytes each
    blocks = {word_block(word) for word in words}
    # Birthday bound for 20,000 digests of 120 bits: 2·10⁸/2¹²¹ ≈ 10⁻²⁸ — any collision is a bug.
    assert len(blocks) == len(words)
    assert all(block[15] == 0xFF for block in blocks)


# -- word_blocks: the batch fast path ---------------------------------------------------------


def blocks_of(batch: WordBlocks, doc: int) -> list[bytes]:
    rows = batch.blocks[batch.offsets[doc] : batch.offsets[doc + 1]]
    return [bytes(row) for row in rows]


def assert_matches_reference(texts: list[str]) -> None:
    batch = word_blocks(texts)
    assert batch.blocks.dtype == np.uint8
    assert batch.blocks.ndim == 2
    assert batch.blocks.shape[1] == BLOCK_BYTES
    assert batch.offsets.dtype == np.int64
    assert batch.offsets.shape == (len(texts) + 1,)
    assert batch.offsets[0] == 0
    assert batch.offsets[-1] == len(batch.blocks)
    for doc, text in enumerate(texts):
        assert blocks_of(batch, doc) == [word_block(w) for w in canonical_words(text)], text


_ASCII_PIECES = st.sampled_from(
    [
        "@", "://", "www.", "_", ".", ",", ":", "-", "+", "/", "'", " ", "  ", "\t", "\n",
        "http", "HTTPS://", "mailto:", "_num_", "_url_", "...", "3.14", "1,000,000", "10:30",
        "a.b@c.de", "x@y", "ftp://h.example/p?q=1", "www.site.org", "0", "007",
    ]
)  # fmt: skip
_ASCII_WORDS = st.text(
    alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=24
)  # up to 24 characters: crosses the 15-byte short-word limit
_EMAILS = st.builds(
    "{}@{}.{}".format,
    st.text(alphabet=string.ascii_letters + ".+-_", min_size=1, max_size=8),
    st.text(alphabet=string.ascii_lowercase + "-", min_size=1, max_size=8),
    st.sampled_from(["com", "org", "co.uk"]),
)
_DIGIT_WORDS = st.builds(
    str.__add__,
    st.text(alphabet=string.digits, min_size=0, max_size=18),
    st.sampled_from(["", "", "a", "Z", "_", "9"]),
)  # numbers (and nearly-numbers) around the 8- and 16-byte boundaries
_ASCII_FRAGMENT = st.one_of(
    _ASCII_PIECES,
    _ASCII_WORDS,
    _DIGIT_WORDS,
    _EMAILS,
    st.text(alphabet=string.printable + "\x00\x7f", max_size=8),
)
_UNICODE_PIECES = st.sampled_from(
    ["ß", "ẞ", "ﬁ", "\uff21", "\uff11", "٣", "①", "²", "é", "e\u0301", "İ", "Σ", "ς", "\u00a0",
     "\u2003", "日本語", "\uff57\uff57\uff57\uff0e", "\uff20", "ǅ", "😀", "é" * 9, "\u210c"]
)  # fmt: skip

ascii_texts = st.lists(_ASCII_FRAGMENT, max_size=10).map("".join)
non_ascii_texts = st.builds(
    lambda parts, extra: "".join(parts) + extra,
    st.lists(st.one_of(_ASCII_FRAGMENT, _UNICODE_PIECES, st.text(max_size=6)), max_size=10),
    _UNICODE_PIECES,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ascii_texts, non_ascii_texts), max_size=8))
@example([])
@example([""])
@example(["", "!!!", ""])
@example(["1 2", "3 4"])  # numbers at a text boundary must not merge across texts
@example(["a" * 15, "b" * 16, "c" * 40])
@example(["x ß", "1", "2", "ß 3"])
def test_word_blocks_equals_reference(texts: list[str]) -> None:
    assert_matches_reference(texts)


@settings(max_examples=200, deadline=None)
@given(st.lists(ascii_texts, min_size=1, max_size=12))
def test_word_blocks_ascii_only_batches(texts: list[str]) -> None:
    assert_matches_reference(texts)


def test_word_blocks_batch_equals_one_by_one() -> None:
    texts = [text for text, _ in CANONICAL_CASES]
    batch = word_blocks(texts)
    for doc, text in enumerate(texts):
        assert blocks_of(batch, doc) == blocks_of(word_blocks([text]), 0)


def test_word_blocks_of_texts_without_words() -> None:
    batch = word_blocks([])
    assert batch.blocks.shape == (0, 16)
    assert batch.offsets.tolist() == [0]
    batch = word_blocks(["", "  ", "?!", "—…", ""])
    assert batch.blocks.shape == (0, 16)
    assert batch.offsets.tolist() == [0, 0, 0, 0, 0, 0]
    batch = word_blocks(["", "one", "", "dos ñ", ""])
    assert batch.offsets.tolist() == [0, 0, 1, 1, 3, 3]
    assert blocks_of(batch, 3) == [word_block("dos"), word_block("ñ")]
