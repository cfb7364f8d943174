"""Property-based fuzzing of every input file format and of the sketch byte formats (issue 6).

Readers (``sigshare.client.inputs``): indicator CSV and JSONL, prompt JSONL — fed arbitrary
bytes, arbitrary Unicode, valid rows mutated (NULs, BOMs, quotes, control characters, huge
lines), gzip-compressed and gzip garbage. Invariants:

* the only exception is the documented :class:`InputFormatError` for a whole-file problem (a bad
  CSV header, an unreadable gzip stream) — a file that decodes never raises it for a row;
* every non-blank line read is either accepted or counted under exactly one reject reason:
  ``accepted + rejected == non-blank lines`` (the CSV header excepted), computed by an
  independent line oracle (physical ``\\n`` lines, over-long and non-UTF-8 lines count);
* an accepted indicator's canonical value is what its kind makes of the raw value, and is itself
  a valid value of that kind; an accepted prompt has non-empty text;
* reading terminates (bounded input, bounded line limit).

Codecs (``sigshare.sketch.codec``): ``decode_bloom`` and ``decode_signatures`` on mutated valid
encodings (bit flips, truncation, extension, splices, random) raise only ``SketchError``
subclasses (``FormatError`` among them); a version-1 Bloom encoding (the old bit positions) is
refused, never read with the new positions.

Resolve answers (``sigshare.client.wire.resolve_from_stream``): what a hostile or broken hub
sends back for a Resolve — no or a second summary, the wrong kind, chunks whose fields differ in
length, more or fewer answers than tokens asked, unknown statuses, counts for unanswered tokens,
tallies that disagree, holder masks narrower or wider than the names need — is refused with
``HubProtocolError`` and nothing else; a well-formed stream is read exactly. Finding F5 (a huge
holder-mask width made the client allocate terabytes) is fixed and kept fixed; F6 (a timestamp
out of range escapes as ``ValueError``) is a strict expected failure until the client refuses it.

Case budgets: the CI defaults below, or ``SIGSHARE_FUZZ_EXAMPLES=N`` examples per test::

    SIGSHARE_FUZZ_EXAMPLES=20000 .venv/bin/pytest -q tests/security/test_fuzz_rpc.py \
        tests/security/test_fuzz_inputs.py -p no:xdist

Counts of cases run go to ``test-output/fuzz-cases.json``.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import gzip
import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from sigshare.client import wire
from sigshare.client.errors import HubProtocolError
from sigshare.client.hub_types import ResolveResult
from sigshare.client.inputs import (
    InputFormatError,
    InputRejectReason,
    RejectSink,
    read_indicators,
    read_prompts,
)
from sigshare.sketch.bloom import BloomParams, KeyedBloomFilter
from sigshare.sketch.codec import (
    SignatureSet,
    decode_bloom,
    decode_signatures,
    encode_bloom,
    encode_signatures,
)
from sigshare.sketch.errors import FormatError, SketchError
from sigshare.sketch.kinds import KIND_NAMES, get_kind
from sigshare.sketch.prf import KeyedPRF
from sigshare.v1 import hub_pb2 as pb
from tests.security import fuzzing
from tests.security.fuzzing import counted, fuzz_settings

MODULE = "test_fuzz_inputs"
REASONS = frozenset(reason.value for reason in InputRejectReason)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sigshare-fuzz-") as name:
        yield Path(name)
    fuzzing.write_cases(MODULE)


# ---------------------------------------------------------------------------------- oracle


def expected_rows(data: bytes, limit: int, *, csv: bool) -> int:
    """Non-blank lines the reader must account for (accepted + rejected), CSV header excepted."""
    if not data:
        return 0
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    count = 0
    header_seen = False
    for number, raw in enumerate(lines, start=1):
        if len(raw) > limit:
            count += 1
            continue
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            count += 1
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        text = text.rstrip("\r\n")
        if not text or text.isspace():
            continue
        if csv and not header_seen:
            header_seen = True
            continue
        count += 1
    return count


def plain(data: bytes) -> bytes | None:
    """The decompressed content the reader sees as UTF-8, or ``None`` when gzip must fail.

    After a UTF-16 byte order mark the content is UTF-16: transcoded, each part UTF-16 cannot
    decode becomes one U+FFFD, as long in UTF-8 as the invalid bytes the reader puts there (so
    the same lines are blank, over-long and counted)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except Exception:
            return None
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return data.decode("utf-16", errors="replace").encode()
    return data


def write(workdir: Path, name: str, data: bytes) -> Path:
    path = workdir / f"{os.getpid()}-{name}"
    path.write_bytes(data)
    return path


def check_indicators(workdir: Path, data: bytes, fmt: str, limit: int, default: str | None) -> None:
    path = write(workdir, f"in.{fmt}", data)
    sink = RejectSink()
    content = plain(data)
    failure: InputFormatError | None = None
    try:
        rows = list(
            read_indicators([path], default_kind=default, rejects=sink, max_line_bytes=limit)
        )
    except InputFormatError as error:
        failure = error
    if failure is not None:
        assert str(failure).startswith(str(path)), failure
        # Whole-file problems only: no/bad CSV header, or a gzip stream that does not decode.
        assert fmt == "csv" or content is None, f"JSONL that decodes raised {failure}"
        return
    assert content is not None, "a corrupt gzip stream was read without an error"
    assert set(sink.counts) <= REASONS
    assert len(rows) + sink.total == expected_rows(content, limit, csv=fmt == "csv")
    for row in rows:
        kind = get_kind(row.kind)
        assert row.kind in KIND_NAMES
        if default is not None:
            assert row.kind == default
        assert kind.canonicalise(row.value) == row.canonical
        kind.canonicalise(row.canonical)  # the canonical value is itself valid
        assert row.first_seen is None or row.first_seen.utcoffset() is not None
        assert row.first_seen is None or row.last_seen is None or row.first_seen <= row.last_seen


def check_prompts(workdir: Path, data: bytes, limit: int) -> None:
    path = write(workdir, "in.jsonl", data)
    sink = RejectSink()
    content = plain(data)
    failure: InputFormatError | None = None
    try:
        rows = list(read_prompts([path], rejects=sink, max_line_bytes=limit))
    except InputFormatError as error:
        failure = error
    if failure is not None:
        assert content is None, f"a prompt file that decodes raised {failure}"
        return
    assert content is not None, "a corrupt gzip stream was read without an error"
    assert set(sink.counts) <= REASONS
    assert len(rows) + sink.total == expected_rows(content, limit, csv=False)
    for row in rows:
        assert row.text.strip()
        assert row.account is None or isinstance(row.account, str)


# ---------------------------------------------------------------------------------- strategies

VALID_VALUES = {
    "email": ["Alice.Smith+x@Example.COM", "bob@example.org"],
    "phone": ["+1 415 555 2671", "+44 20 7946 0958"],
    "ip": ["192.0.2.1", "2001:db8::1"],
    "ip_prefix": ["198.51.100.0/24", "2001:db8::/48"],
    "domain": ["Example.com", "bücher.de"],
    "device_id": ["a3f1c2d4-0000-4000-8000-000000000001"],
    "username": ["Some_User"],
    "wallet": ["0x52908400098527886E0F7030069857D2E4169EE7"],
    "payment_fingerprint": ["fp_1234567890abcdef"],
}
kinds = st.sampled_from(sorted(VALID_VALUES)) | st.sampled_from(["EMAIL", "nope", "", " ip "])
values = st.one_of(
    st.sampled_from([v for vs in VALID_VALUES.values() for v in vs]),
    st.text(max_size=40),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(100, 3000)),
)
dates = st.sampled_from(
    [
        "",
        "2025-01-01",
        "2025-01-02T03:04:05+02:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-05:00",
        "nope",
        "2025-13-01",
    ]
) | st.text(max_size=12)
categories = st.sampled_from(["", "fraud", "x" * 65, "a\x00b", "\u200b"]) | st.text(max_size=20)
NOISE = [
    b"\x00",
    b"\xef\xbb\xbf",
    b'"',
    b",",
    b"\r",
    b"\n",
    b"\xff",
    b"\xc3",
    b"{",
    b"\\u",
    b"\\ud800",
]


def csv_line(kind: str, value: str, category: str, first: str, last: str) -> str:
    fields = [kind, value, category, first, last]
    return ",".join(
        f'"{f.replace(chr(34), chr(34) * 2)}"' if ("," in f or '"' in f) else f for f in fields
    )


def jsonl_line(kind: str, value: str, category: str, first: str, last: str) -> str:
    document: dict[str, object] = {"kind": kind, "value": value}
    if category:
        document["category"] = category
    if first:
        document["first_seen"] = first
    if last:
        document["last_seen"] = last
    return json.dumps(document, ensure_ascii=False)


@st.composite
def mutated_lines(draw: st.DrawFn, line: bytes) -> bytes:
    """A line with a few bytes inserted, deleted or flipped."""
    out = bytearray(line)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["insert", "delete", "flip"]))
        at = draw(st.integers(0, len(out)))
        if op == "insert":
            out[at:at] = draw(st.sampled_from(NOISE) | st.binary(min_size=1, max_size=4))
        elif op == "delete" and out:
            del out[min(at, len(out) - 1)]
        elif out:
            index = min(at, len(out) - 1)
            out[index] ^= 1 << draw(st.integers(0, 7))
    return bytes(out)


@st.composite
def indicator_files(draw: st.DrawFn) -> tuple[bytes, str, str | None]:
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    default = draw(st.none() | st.sampled_from(["email", "ip"]))
    make = csv_line if fmt == "csv" else jsonl_line
    lines: list[bytes] = []
    if fmt == "csv":
        header = draw(
            st.sampled_from(
                [
                    "kind,value,category,first_seen,last_seen",
                    "value",
                    "KIND,Value",
                    "\ufeffkind,value",
                    "kind,kind,value",
                    "x,y",
                ]
            )
        )
        lines.append(header.encode())
    for _ in range(draw(st.integers(0, 12))):
        # surrogatepass: a drawn lone surrogate becomes bytes that are not UTF-8 (bad_encoding).
        line = make(draw(kinds), draw(values), draw(categories), draw(dates), draw(dates)).encode(
            "utf-8", "surrogatepass"
        )
        if fmt == "csv" and default is None and not line.count(b","):
            line += b","
        lines.append(draw(mutated_lines(line)) if draw(st.booleans()) else line)
        if draw(st.integers(0, 9)) == 0:
            lines.append(
                draw(st.sampled_from([b"", b"   ", b"\r", b"\t", b"\x1c", "\u2028".encode()]))
            )
    data = draw(st.sampled_from([b"\n", b"\r\n"])).join(lines)
    if draw(st.booleans()):
        data += b"\n"
    if draw(st.integers(0, 4)) == 0:
        data = gzip.compress(data, mtime=0)
    return data, fmt, default


# ---------------------------------------------------------------------------------- indicators

limits = st.sampled_from([16, 64, 256, 64 * 1024])


@fuzz_settings(500)
@given(
    data=st.binary(max_size=2048),
    fmt=st.sampled_from(["csv", "jsonl"]),
    limit=limits,
    default=st.none() | st.just("email"),
)
@counted(f"{MODULE}::test_indicator_files_of_arbitrary_bytes")
def _arbitrary_indicator_bytes(
    workdir: Path, data: bytes, fmt: str, limit: int, default: str | None
) -> None:
    check_indicators(workdir, data, fmt, limit, default)


def test_indicator_files_of_arbitrary_bytes(workdir: Path) -> None:
    _arbitrary_indicator_bytes(workdir)


@fuzz_settings(500)
@given(
    text=st.text(max_size=1000),
    fmt=st.sampled_from(["csv", "jsonl"]),
    limit=limits,
    default=st.none() | st.just("ip"),
    bom=st.booleans(),
)
@counted(f"{MODULE}::test_indicator_files_of_arbitrary_unicode")
def _arbitrary_indicator_text(  # noqa: PLR0917 (Hypothesis passes keywords)
    workdir: Path, text: str, fmt: str, limit: int, default: str | None, bom: bool
) -> None:
    data = text.encode("utf-8", "surrogatepass")
    check_indicators(workdir, (b"\xef\xbb\xbf" if bom else b"") + data, fmt, limit, default)


def test_indicator_files_of_arbitrary_unicode(workdir: Path) -> None:
    _arbitrary_indicator_text(workdir)


@fuzz_settings(600)
@given(file=indicator_files(), limit=limits)
@counted(f"{MODULE}::test_indicator_rows_mutated")
def _mutated_indicators(workdir: Path, file: tuple[bytes, str, str | None], limit: int) -> None:
    data, fmt, default = file
    check_indicators(workdir, data, fmt, limit, default)


def test_indicator_rows_mutated(workdir: Path) -> None:
    _mutated_indicators(workdir)


@fuzz_settings(20, long_cap=1000)
@given(
    size=st.integers(64 * 1024 - 2, 300_000),
    byte=st.sampled_from([b"a", b"\x00", b"\xff", b",", b'"']),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
@counted(f"{MODULE}::test_huge_lines")
def _huge_lines(workdir: Path, size: int, byte: bytes, fmt: str) -> None:
    head = b"kind,value\n" if fmt == "csv" else b""
    data = head + b"email,a@b.example\n" + byte * size + b"\nemail,c@d.example\n"
    if fmt == "jsonl":
        data = b'{"kind":"email","value":"a@b.example"}\n' + byte * size + b"\n"
    check_indicators(workdir, data, fmt, 64 * 1024, None)


def test_huge_lines(workdir: Path) -> None:
    _huge_lines(workdir)


@fuzz_settings(300)
@given(
    data=st.binary(min_size=18, max_size=600),
    how=st.sampled_from(["flip", "truncate", "extend", "random-tail"]),
    cut=st.integers(0, 10_000),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
@counted(f"{MODULE}::test_gzip_garbage")
def _gzip_garbage(workdir: Path, data: bytes, how: str, cut: int, fmt: str) -> None:
    packed = bytearray(gzip.compress(b"kind,value\nemail,a@b.example\n" + data, mtime=0))
    if how == "flip":
        index = 10 + cut % (len(packed) - 10)
        packed[index] ^= 0xFF
    elif how == "truncate":
        del packed[2 + cut % (len(packed) - 2) :]
    elif how == "extend":
        packed += data
    else:
        packed[10 + cut % (len(packed) - 10) :] = data
    check_indicators(workdir, bytes(packed), fmt, 256, None)
    check_prompts(workdir, bytes(packed), 256)


def test_gzip_garbage(workdir: Path) -> None:
    _gzip_garbage(workdir)


# ---------------------------------------------------------------------------------- prompts


def prompt_line(text: object, category: object, account: object, ts: object) -> bytes:
    document = {"text": text, "category": category, "account": account, "ts": ts}
    return json.dumps({k: v for k, v in document.items() if v != "<absent>"}).encode()


json_scalars = st.one_of(
    st.just("<absent>"),
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def prompt_files(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        line = prompt_line(
            draw(st.text(max_size=200) | json_scalars),
            draw(categories | json_scalars),
            draw(json_scalars),
            draw(dates | json_scalars),
        )
        lines.append(draw(mutated_lines(line)) if draw(st.booleans()) else line)
    data = b"\n".join(lines)
    if draw(st.integers(0, 4)) == 0:
        data = gzip.compress(data, mtime=0)
    return data


@fuzz_settings(500)
@given(data=prompt_files() | st.binary(max_size=2048), limit=limits)
@counted(f"{MODULE}::test_prompt_files")
def _prompts(workdir: Path, data: bytes, limit: int) -> None:
    check_prompts(workdir, data, limit)


def test_prompt_files(workdir: Path) -> None:
    _prompts(workdir)


@fuzz_settings(300)
@given(text=st.text(max_size=1000), limit=limits)
@counted(f"{MODULE}::test_prompt_files_of_arbitrary_unicode")
def _prompt_text(workdir: Path, text: str, limit: int) -> None:
    check_prompts(workdir, text.encode("utf-8", "surrogatepass"), limit)


def test_prompt_files_of_arbitrary_unicode(workdir: Path) -> None:
    _prompt_text(workdir)


# ---------------------------------------------------------------------------------- codecs

BLOOM = BloomParams.for_capacity("email", "epoch-1", 2_000, 1e-3)


def _bloom() -> KeyedBloomFilter:
    bloom = KeyedBloomFilter(BLOOM, KeyedPRF(b"k" * 32))
    bloom.add([f"user{i}@example.org" for i in range(150)])
    return bloom


def _bloom_encodings() -> list[bytes]:
    bloom = _bloom()
    return [encode_bloom(bloom, compress=True), encode_bloom(bloom, compress=False)]


def _signature_encodings() -> list[bytes]:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 2**32, size=(3, 16), dtype=np.uint32)
    return [
        encode_signatures(
            SignatureSet(key_id="epoch-1", shingle_unit="word", shingle_size=3, values=values)
        )
    ]


@st.composite
def mutated(draw: st.DrawFn, encodings: list[bytes]) -> bytes:
    base = draw(st.sampled_from(encodings))
    how = draw(st.sampled_from(["flip", "truncate", "extend", "splice", "random", "header"]))
    if how == "flip":
        out = bytearray(base)
        for bit in draw(st.lists(st.integers(0, len(base) * 8 - 1), min_size=1, max_size=6)):
            out[bit >> 3] ^= 1 << (bit & 7)
        return bytes(out)
    if how == "truncate":
        return base[: draw(st.integers(0, len(base) - 1))]
    if how == "extend":
        return base + draw(st.binary(min_size=1, max_size=64))
    if how == "splice":
        at = draw(st.integers(0, len(base)))
        return base[:at] + draw(st.binary(max_size=16)) + base[at + draw(st.integers(0, 16)) :]
    if how == "header":  # rewrite one header byte: lengths, counts, flags, k, m
        out = bytearray(base)
        out[draw(st.integers(0, 31))] = draw(st.integers(0, 255))
        return bytes(out)
    return base[:4] + draw(st.binary(max_size=512))


@fuzz_settings(800)
@given(data=st.data())
@counted(f"{MODULE}::test_decode_bloom_mutated")
def _decode_bloom(data: st.DataObject) -> None:
    blob = data.draw(mutated(_BLOOMS) | st.binary(max_size=256))
    with contextlib.suppress(SketchError):
        decode_bloom(blob, BLOOM)


def test_decode_bloom_mutated() -> None:
    _decode_bloom()


@fuzz_settings(800)
@given(data=st.data())
@counted(f"{MODULE}::test_decode_signatures_mutated")
def _decode_signatures(data: st.DataObject) -> None:
    blob = data.draw(mutated(_SIGNATURES) | st.binary(max_size=256))
    with contextlib.suppress(SketchError):
        decode_signatures(blob)


def test_decode_signatures_mutated() -> None:
    _decode_signatures()


@pytest.mark.parametrize("compress", [False, True])
def test_a_version_1_bloom_encoding_is_refused(compress: bool) -> None:
    """v1 filters set different bits for the same tokens: reading one would be silently wrong."""
    blob = bytearray(encode_bloom(_bloom(), compress=compress))
    assert blob[:5] == b"SGBF\x02"
    blob[4] = 1
    with pytest.raises(FormatError, match="version 1 uses the old bit positions"):
        decode_bloom(bytes(blob), BLOOM)


# ---------------------------------------------------------------------------------- Resolve answers

KIND, KEY_ID = "email", "epoch-1"


@dataclasses.dataclass
class AnswerStream:
    """A drawn Resolve answer stream and whether a correct client must accept it."""

    messages: list[pb.ResolveResponse]
    count: int
    well_formed: bool
    status: bytes
    others: bytes
    holders: bytes
    mask_bytes: int
    names: tuple[str, ...]


def _counts(status: bytes) -> tuple[int, int, int]:
    return status.count(0), status.count(1), status.count(2)


@st.composite
def answer_streams(draw: st.DrawFn) -> AnswerStream:
    count = draw(st.integers(0, 40), label="count")
    names = tuple(draw(st.lists(st.sampled_from(["m2", "m3", "m4", "x" * 9]), max_size=10)))
    needed = -(-len(names) // 8)
    mask_bytes = draw(
        st.sampled_from([needed, needed, needed, 0, needed + 1, max(needed - 1, 0), 3]),
        label="mask bytes",
    )
    total = draw(st.sampled_from([count] * 6 + [count + 1, max(count - 1, 0)]), label="total")
    status = bytearray(draw(st.lists(st.sampled_from([0, 1, 2]), min_size=total, max_size=total)))
    if draw(st.integers(0, 7), label="bad status?") == 0 and status:
        status[draw(st.integers(0, len(status) - 1))] = draw(st.integers(3, 255))
    others = bytearray(draw(st.integers(0, 31)) if code == 0 else 0 for code in status)
    if draw(st.integers(0, 7), label="stray count?") == 0 and others:
        others[draw(st.integers(0, len(others) - 1))] = draw(st.integers(1, 255))
    holders = bytearray(draw(st.binary(min_size=total * mask_bytes, max_size=total * mask_bytes)))
    answered, not_held, over = _counts(bytes(status))
    tallies = draw(
        st.sampled_from(["right"] * 5 + ["wrong"]).flatmap(
            lambda how: (
                st.just((answered, not_held, over))
                if how == "right"
                else st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
            )
        ),
        label="tallies",
    )
    summary = pb.ResolveSummary(
        kind=draw(st.sampled_from([KIND] * 8 + ["ip"]), label="kind"),
        key_id=draw(st.sampled_from([KEY_ID] * 8 + ["epoch-2"]), label="key id"),
        quorum=draw(st.integers(0, 40)),
        members=draw(st.integers(0, 300)),
        answered=tallies[0],
        not_held=tallies[1],
        over_budget=tallies[2],
        holder_names=names,
        holder_mask_bytes=mask_bytes,
        computed_at=Timestamp(
            seconds=draw(st.integers(0, 2**33)), nanos=draw(st.integers(0, 999_999_999))
        ),
    )
    # Split the answers into chunks; sometimes one chunk's fields disagree in length.
    cuts = sorted(draw(st.lists(st.integers(0, total), max_size=4)))
    bounds = [0, *cuts, total]
    chunks = [
        pb.ResolveAnswers(
            status=bytes(status[a:b]),
            others=bytes(others[a:b]),
            holders=bytes(holders[a * mask_bytes : b * mask_bytes]),
        )
        for a, b in itertools.pairwise(bounds)
    ]
    ragged = draw(st.integers(0, 7), label="ragged?") == 0 and bool(chunks)
    if ragged:
        chunk = chunks[draw(st.integers(0, len(chunks) - 1))]
        field = draw(st.sampled_from(["status", "others", "holders"]))
        setattr(chunk, field, getattr(chunk, field) + b"\x00")
    shape = draw(
        st.sampled_from(["normal"] * 6 + ["no-summary", "second-summary", "summary-last"]),
        label="shape",
    )
    head = pb.ResolveResponse(summary=summary)
    body = [pb.ResolveResponse(answers=c) for c in chunks]
    if shape == "normal":
        messages = [head, *body]
    elif shape == "no-summary":
        messages = body
    elif shape == "second-summary":
        messages = [head, *body, head]
    else:
        messages = [*body, head]
    bad_status = any(code > 2 for code in status)
    well_formed = (
        shape == "normal"
        and (summary.kind, summary.key_id) == (KIND, KEY_ID)
        and total == count
        and mask_bytes == needed
        and not ragged
        and not bad_status
        and tallies == (answered, not_held, over)
        and all(o == 0 for code, o in zip(status, others, strict=True) if code != 0)
    )
    return AnswerStream(
        messages=messages,
        count=count,
        well_formed=well_formed,
        status=bytes(status),
        others=bytes(others),
        holders=bytes(holders),
        mask_bytes=mask_bytes,
        names=names,
    )


@fuzz_settings(600)
@given(stream=answer_streams())
@counted(f"{MODULE}::test_resolve_answer_streams")
def _answer_streams(stream: AnswerStream) -> None:
    result: ResolveResult | None = None
    try:
        result = wire.resolve_from_stream(
            stream.messages, kind=KIND, key_id=KEY_ID, count=stream.count
        )
    except HubProtocolError:
        assert not stream.well_formed, "refused a well-formed answer stream"
        return
    assert stream.well_formed, "accepted a malformed answer stream"
    assert result.status.tobytes() == stream.status
    assert result.others.tobytes() == stream.others
    assert result.holder_names == stream.names
    if stream.mask_bytes:
        assert result.holders is not None
        assert result.holders.shape == (stream.count, stream.mask_bytes)
        assert result.holders.tobytes() == stream.holders
    else:
        assert result.holders is None


def test_resolve_answer_streams() -> None:
    _answer_streams()


def _summary_only(summary: pb.ResolveSummary) -> list[pb.ResolveResponse]:
    summary.kind, summary.key_id = KIND, KEY_ID
    return [pb.ResolveResponse(summary=summary)]


def test_finding_f5_a_holder_mask_wider_than_the_names_need_is_refused() -> None:
    """It sized its holder buffer by the hub's width: 100,000 × 4 GiB (a MemoryError)."""
    messages = _summary_only(pb.ResolveSummary(holder_names=["m2"], holder_mask_bytes=2**32 - 1))
    with pytest.raises(HubProtocolError):
        wire.resolve_from_stream(messages, kind=KIND, key_id=KEY_ID, count=100_000)


@pytest.mark.parametrize(
    "stamp",
    [Timestamp(seconds=2**62), Timestamp(seconds=-(2**62)), Timestamp(seconds=0, nanos=-5)],
    ids=["far-future", "far-past", "negative-nanos"],
)
def test_finding_f6_a_timestamp_out_of_range_is_refused(stamp: Timestamp) -> None:
    """protobuf's ValueError for an impossible timestamp escaped as a crash."""
    with pytest.raises(HubProtocolError):
        wire.resolve_from_stream(
            _summary_only(pb.ResolveSummary(computed_at=stamp)), kind=KIND, key_id=KEY_ID, count=0
        )


_BLOOMS = _bloom_encodings()
_SIGNATURES = _signature_encodings()
