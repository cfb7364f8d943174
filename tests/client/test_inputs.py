"""Reading members' exports: formats, every reject reason counted exactly, streaming, limits."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import stat
import tracemalloc
import types
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigshare.client.inputs import (
    IndicatorRow,
    InputFormatError,
    InputRejectReason,
    PromptRow,
    RejectSink,
    input_size,
    read_indicators,
    read_prompts,
)
from sigshare.client.sync import classify_inputs
from sigshare.sketch.errors import RejectReason, UnknownKindError
from sigshare.sketch.kinds import get_kind

HEADER = "kind,value,category,first_seen,last_seen"
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_2 = datetime(2026, 1, 2, tzinfo=UTC)


def write_lines(path: Path, lines: list[str | bytes], *, newline: bytes = b"\n") -> Path:
    encoded = [line if isinstance(line, bytes) else line.encode() for line in lines]
    path.write_bytes(b"".join(line + newline for line in encoded))
    return path


def read_rejects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def indicators(paths: list[Path], sink: RejectSink | None = None, **options: Any) -> list[Any]:
    return list(read_indicators(paths, rejects=sink or RejectSink(), **options))


# --- round trips ---------------------------------------------------------------------------


EXPECTED_ROWS = [
    ("email", "Alice@Example.COM", "alice@example.com", "", None, None),
    ("ip", " 10.0.0.1 ", "10.0.0.1", "fraud, ring", JAN_1, JAN_2),
    ("phone", "+1 415 555 0100", "+14155550100", "distill", JAN_1, None),
]


def test_csv_rows_are_canonicalised_with_their_sources(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "export.csv",
        [
            HEADER,
            "email,Alice@Example.COM,,,",
            'IP , 10.0.0.1 ,"fraud, ring",2026-01-01,2026-01-02T00:00:00Z',
            "phone,+1 415 555 0100,distill,2026-01-01T00:00:00,",
        ],
    )
    rows = indicators([path])
    assert rows == [
        IndicatorRow(kind, value, canonical, category, first, last, f"{path}:{line}")
        for line, (kind, value, canonical, category, first, last) in enumerate(
            EXPECTED_ROWS, start=2
        )
    ]


def test_jsonl_gives_the_same_rows_as_csv(tmp_path: Path) -> None:
    documents: list[dict[str, Any]] = [
        {"kind": "email", "value": "Alice@Example.COM", "category": None},
        {
            "kind": "IP",
            "value": " 10.0.0.1 ",
            "category": "fraud, ring",
            "first_seen": "2026-01-01",
            "last_seen": "2026-01-02T00:00:00Z",
            "extra": [1, 2],
        },
        {
            "kind": "phone",
            "value": "+1 415 555 0100",
            "category": "distill",
            "first_seen": "2026-01-01T00:00:00",
        },
    ]
    path = write_lines(tmp_path / "export.jsonl", [json.dumps(d) for d in documents])
    rows = indicators([path])
    assert [
        (r.kind, r.value, r.canonical, r.category, r.first_seen, r.last_seen) for r in rows
    ] == [*EXPECTED_ROWS]
    assert [row.source for row in rows] == [f"{path}:1", f"{path}:2", f"{path}:3"]


def test_crlf_line_ends_a_byte_order_mark_blank_lines_and_extra_columns(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "excel.csv",
        ["\ufeffValue,Notes,Kind", "", "a@example.com,anything,email", "   ", 'b@x.org,"q",email'],
        newline=b"\r\n",
    )
    sink = RejectSink()
    rows = indicators([path], sink)
    assert [(row.canonical, row.source) for row in rows] == [
        ("a@example.com", f"{path}:3"),
        ("b@x.org", f"{path}:5"),
    ]
    assert sink.total == 0


@pytest.mark.parametrize("name", ["export.csv.gz", "export.CSV.GZ", "export.csv"])
def test_gzip_is_recognised_by_its_magic_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(f"{HEADER}\nemail,a@example.com,,,\n".encode()))
    assert [row.canonical for row in indicators([path])] == ["a@example.com"]


@pytest.mark.parametrize("name", ["export.jsonl.gz", "export.ndjson", "export.ndjson.gz"])
def test_jsonl_spellings(tmp_path: Path, name: str) -> None:
    data = b'{"kind": "email", "value": "a@example.com"}\n'
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert [row.canonical for row in indicators([path])] == ["a@example.com"]


def test_several_files_are_read_in_order(tmp_path: Path) -> None:
    first = write_lines(tmp_path / "a.csv", ["kind,value", "email,a@example.com"])
    second = write_lines(tmp_path / "b.jsonl", ['{"kind": "email", "value": "b@example.com"}'])
    rows = indicators([first, second])
    assert [row.source for row in rows] == [f"{first}:2", f"{second}:1"]


def test_an_explicit_format_overrides_the_file_name(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "export.txt", ["kind,value", "email,a@example.com"])
    assert [row.canonical for row in indicators([path], fmt="csv")] == ["a@example.com"]
    jsonl = write_lines(tmp_path / "export.log", ['{"kind": "email", "value": "a@example.com"}'])
    assert [row.canonical for row in indicators([jsonl], fmt="ndjson")] == ["a@example.com"]


def test_configured_kinds_are_used_instead_of_the_registry_defaults(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.csv", ["kind,value", "email,A.B+tag@gmail.com"])
    assert [row.canonical for row in indicators([path])] == ["a.b+tag@gmail.com"]
    configured = {"email": get_kind("email", provider_rules=True)}
    assert [row.canonical for row in indicators([path], kinds=configured)] == ["ab@gmail.com"]


# --- encodings and delimiters --------------------------------------------------------------

ENCODINGS = {
    "utf-8": lambda text: text.encode(),
    "utf-8 with BOM": lambda text: codecs.BOM_UTF8 + text.encode(),
    "utf-16 LE with BOM": lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    "utf-16 BE with BOM": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
}
"""How a spreadsheet may save a CSV file (Excel's "Unicode text" is UTF-16 LE with a BOM)."""

EMAILS = st.builds(
    "{}@{}.org".format,
    st.text(alphabet="abcdefghij.-_+", min_size=1, max_size=12).filter(
        lambda local: local[0] not in ".-+" and local[-1] != "." and ".." not in local
    ),
    st.text(alphabet="abcdefghij", min_size=1, max_size=8),
)
CATEGORIES = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S"), include_characters=" "),
    max_size=20,
)
"""Printable text: quotes, commas, semicolons, spaces and non-ASCII letters included (no tab: a
category is printable)."""
DATES = st.one_of(st.just(""), st.dates().map(date.isoformat))


def csv_text(rows: list[tuple[str, str, str, str, str]], delimiter: str, line_end: str) -> str:
    """A CSV file as Python's csv module writes it: fields quoted only where they need it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=line_end)
    writer.writerow(["Kind", "Value", "Category", "First_Seen", "Last_Seen"])
    writer.writerows(rows)
    return buffer.getvalue()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.tuples(st.just("email"), EMAILS, CATEGORIES, DATES, st.just("")), max_size=12),
    delimiter=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    line_end=st.sampled_from(["\n", "\r\n"]),
    compress=st.booleans(),
)
def test_every_encoding_and_delimiter_reads_as_the_plain_comma_file(
    tmp_path: Path,
    *,
    rows: list[tuple[str, str, str, str, str]],
    delimiter: str,
    encoding: str,
    line_end: str,
    compress: bool,
) -> None:
    """Oracle: the same rows written as plain UTF-8 with commas; every other spelling of the
    file gives exactly its rows and rejects."""
    plain = tmp_path / "plain.csv"
    plain.write_bytes(csv_text(rows, ",", "\n").encode())
    data = ENCODINGS[encoding](csv_text(rows, delimiter, line_end))
    spelt = tmp_path / "spelt.csv.gz"
    spelt.write_bytes(gzip.compress(data) if compress else data)
    expected_sink, sink = RejectSink(), RejectSink()
    expected = [
        (r.kind, r.value, r.canonical, r.category, r.first_seen)
        for r in indicators([plain], expected_sink)
    ]
    found = [
        (r.kind, r.value, r.canonical, r.category, r.first_seen) for r in indicators([spelt], sink)
    ]
    assert found == expected
    assert sink.counts == expected_sink.counts
    if not expected_sink.total:
        assert [(value, category) for _, value, _, category, _ in expected] == [
            (value, category.strip()) for _, value, category, _, _ in rows
        ]


@pytest.mark.parametrize(
    ("header", "row"),
    [
        ("kind,value,note;x", "email,a@example.com,x;y"),  # a semicolon in a column name
        ("kind;value;note,x", "email;a@example.com;x,y"),
        ('"kind";"value";"a, b"', "email;a@example.com;x"),  # quoted names, a comma in one
        ("kind\tvalue\tnote;x", "email\ta@example.com\tx"),
        ("value", "a@example.com"),  # one column: nothing to tell, the comma
    ],
)
def test_the_delimiter_is_the_one_giving_the_most_known_columns(
    tmp_path: Path, header: str, row: str
) -> None:
    path = write_lines(tmp_path / "x.csv", [header, row])
    sink = RejectSink()
    assert [r.canonical for r in indicators([path], sink, default_kind="email")] == [
        "a@example.com"
    ]
    assert sink.total == 0


def test_rows_are_split_by_the_header_delimiter_only(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "x.csv",
        ["kind;value;category", "email;a@example.com;one, two", 'email;b@example.com;"x;y"'],
    )
    rows = indicators([path])
    assert [(r.canonical, r.category) for r in rows] == [
        ("a@example.com", "one, two"),
        ("b@example.com", "x;y"),
    ]


@pytest.mark.parametrize(
    ("lines", "default_kind", "message"),
    [
        (
            ["Email;Seen", "a@b.com;x"],
            "email",
            'the header row has no value column (found: "Email", "Seen")',
        ),
        (["email\tseen"], None, 'no kind or value column (found: "email", "seen"); add them or'),
        (["kind|value"], None, 'no kind or value column (found: "kind|value")'),
        (
            [",".join(f"c{i}" for i in range(12))],
            "email",
            '(found: "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", and 4 more)',
        ),
        (["x" * 100], "email", f'(found: "{"x" * 40}…")'),
    ],
)
def test_a_header_without_the_required_columns_is_quoted(
    tmp_path: Path, lines: list[str | bytes], default_kind: str | None, message: str
) -> None:
    path = write_lines(tmp_path / "bad.csv", lines)
    with pytest.raises(InputFormatError) as caught:
        indicators([path], default_kind=default_kind)
    assert message in str(caught.value)


def test_a_utf16_header_without_the_required_columns_is_quoted_decoded(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(codecs.BOM_UTF16_LE + "Adresse;Vu le\r\n".encode("utf-16-le"))
    with pytest.raises(InputFormatError, match='no value column \\(found: "Adresse", "Vu le"\\)'):
        indicators([path], default_kind="email")


def test_a_lone_surrogate_in_utf16_costs_its_line_only(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes(
        codecs.BOM_UTF16_LE
        + "kind,value\nemail,a@example.com\n".encode("utf-16-le")
        + b"\x00\xd8"  # a high surrogate with no low one
        + "email,b@example.com\nemail,c@example.com\n".encode("utf-16-le")
    )
    sink = RejectSink(tmp_path / "rejects.jsonl")
    with sink:
        rows = indicators([path], sink)
    assert [(r.canonical, r.source) for r in rows] == [
        ("a@example.com", f"{path}:2"),
        ("c@example.com", f"{path}:4"),
    ]
    assert sink.counts == Counter({"bad_encoding": 1})
    (record,) = read_rejects(tmp_path / "rejects.jsonl")
    assert record["source"] == f"{path}:3"


def test_a_utf16_file_cut_inside_a_character_costs_its_last_line(tmp_path: Path) -> None:
    complete = "kind,value\nemail,a@example.com\nemail,b@example.com"
    for name, cut in (
        ("odd.csv", b"\x00"),
        ("surrogate.csv", "\U0001f600".encode("utf-16-be")[:2]),
    ):
        path = tmp_path / name
        path.write_bytes(codecs.BOM_UTF16_BE + complete.encode("utf-16-be") + cut)
        sink = RejectSink()
        assert [row.canonical for row in indicators([path], sink)] == ["a@example.com"]
        assert sink.counts == Counter({"bad_encoding": 1})


def test_utf16_lines_are_limited_in_utf8_bytes(tmp_path: Path) -> None:
    fits = "é" * 10  # 20 UTF-8 bytes, 20 UTF-16 bytes
    too_long = "€" * 10  # 30 UTF-8 bytes, 20 UTF-16 bytes
    path = tmp_path / "u16.csv"
    text = f"value,category\na@example.com,{fits}\nb@example.com,{too_long}\n"
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    sink = RejectSink()
    rows = indicators(
        [path], sink, default_kind="email", max_line_bytes=len(f"a@example.com,{fits}".encode())
    )
    assert [r.canonical for r in rows] == ["a@example.com"]
    assert sink.counts == Counter({"oversized_line": 1})


@pytest.mark.parametrize("compress", [False, True])
def test_a_utf16_prompt_file_is_told_from_indicators_and_read(
    tmp_path: Path, compress: bool
) -> None:
    texts = ["translate sentence one into French", "résumé de la phrase deux"]
    data = codecs.BOM_UTF16_LE + "".join(
        json.dumps({"text": text}, ensure_ascii=False) + "\r\n" for text in texts
    ).encode("utf-16-le")
    prompts = tmp_path / ("export.prompts.jsonl" + (".gz" if compress else ""))
    prompts.write_bytes(gzip.compress(data) if compress else data)
    values = tmp_path / "values.jsonl"
    values.write_bytes('{"kind": "email", "value": "a@example.com"}\n'.encode("utf-16"))
    assert classify_inputs([prompts, values]) == ([values], [prompts])
    assert [row.text for row in read_prompts([prompts], rejects=RejectSink())] == texts


# --- default kind --------------------------------------------------------------------------


def test_default_kind_lets_the_kind_column_be_omitted(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "emails.csv", ["value", "a@example.com", "B@Example.com"])
    rows = indicators([path], default_kind="email")
    assert [(row.kind, row.canonical) for row in rows] == [
        ("email", "a@example.com"),
        ("email", "b@example.com"),
    ]


def test_with_a_default_kind_a_kind_column_must_agree(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.csv",
        ["kind,value", "email,a@example.com", ",b@example.com", "phone,+14155550100"],
    )
    sink = RejectSink(tmp_path / "rejects.jsonl")
    rows = indicators([path], sink, default_kind="email")
    sink.close()
    assert [row.canonical for row in rows] == ["a@example.com", "b@example.com"]
    assert sink.counts == Counter({"kind_mismatch": 1})
    assert read_rejects(tmp_path / "rejects.jsonl") == [
        {
            "source": f"{path}:4",
            "reason": "kind_mismatch",
            "detail": "kind 'phone' is not the expected 'email'",
            "line": "phone,+14155550100",
        }
    ]


def test_an_unknown_default_kind_fails_at_the_call(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.csv", ["value", "a"])
    with pytest.raises(UnknownKindError, match="emial"):
        read_indicators([path], default_kind="emial", rejects=RejectSink())


# --- whole-file errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "default_kind", "message"),
    [
        (["kind,val", "email,a@b.com"], None, "the header row has no value column"),
        (
            ["value", "a@b.com"],
            None,
            r'the header row has no kind column \(found: "value"\); add it or give a default kind$',
        ),
        (["category"], None, "the header row has no kind or value column"),
        (["category"], "email", r'the header row has no value column \(found: "category"\)$'),
        (["kind,value,Value"], None, "the header row has two value columns"),
        (['kind,"value'], None, r"bad header row \(line 1\): malformed CSV"),
        ([], None, "has no header row"),
        (["", " "], None, "has no header row"),
    ],
)
def test_a_csv_header_without_the_required_columns_fails_the_file(
    tmp_path: Path, lines: list[str | bytes], default_kind: str | None, message: str
) -> None:
    path = write_lines(tmp_path / "bad.csv", lines)
    with pytest.raises(InputFormatError, match=message) as caught:
        indicators([path], default_kind=default_kind)
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.path == path
    assert type(caught.value) is InputFormatError


def test_unknown_extensions_and_formats_fail_before_any_row_is_read(tmp_path: Path) -> None:
    good = write_lines(tmp_path / "good.csv", ["kind,value", "email,a@example.com"])
    odd = write_lines(tmp_path / "export.tsv", ["kind\tvalue"])
    with pytest.raises(
        InputFormatError, match=r"export\.tsv: cannot tell the format.*\.csv\[\.gz\]"
    ):
        read_indicators([good, odd], rejects=RejectSink())
    with pytest.raises(InputFormatError, match="unsupported format 'xml'"):
        read_indicators([good], rejects=RejectSink(), fmt="xml")
    with pytest.raises(InputFormatError, match=r"good\.csv: cannot tell the format.*\.jsonl"):
        read_prompts([good], rejects=RejectSink())
    with pytest.raises(InputFormatError, match="unsupported format 'csv'; expected one of: jsonl"):
        read_prompts([good], rejects=RejectSink(), fmt="csv")


def test_a_missing_file_fails_before_any_row_is_read(tmp_path: Path) -> None:
    good = write_lines(tmp_path / "good.csv", ["kind,value", "email,a@example.com"])
    with pytest.raises(InputFormatError, match=r"missing\.csv: does not exist"):
        read_indicators([good, tmp_path / "missing.csv"], rejects=RejectSink())


def test_a_directory_or_a_truncated_gzip_file_fails_naming_the_file(tmp_path: Path) -> None:
    directory = tmp_path / "dir.csv"
    directory.mkdir()
    with pytest.raises(InputFormatError, match=r"dir\.csv: cannot be opened"):
        indicators([directory])
    body = f"{HEADER}\n" + "email,a@example.com,,,\n" * 20_000
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(gzip.compress(body.encode())[:-100])
    sink = RejectSink()
    reader = read_indicators([truncated], rejects=sink)
    with pytest.raises(InputFormatError, match=r"cut\.csv\.gz: unreadable after line \d+"):
        for _ in reader:
            pass


# --- every reject reason, exactly ----------------------------------------------------------

LONG_VALUE = "x" * 4100
CSV_CASES: list[tuple[str | bytes, str, str | None]] = [
    # (line, reason, detail when the reason is this module's own; kinds word theirs)
    (b"email,caf\xe9@example.com,,,", "bad_encoding", "invalid UTF-8 at byte 9"),
    ("email," + "y" * 9000 + ",,,", "oversized_line", "line longer than 8192 bytes"),
    ("email,a@example.com,,,,", "bad_csv", "expected 5 fields, found 6"),
    ('email,"a@example.com,,,', "bad_csv", "malformed CSV: unexpected end of data"),
    (",a@example.com,,,", "missing_field", "no kind"),
    ("emial,a@example.com,,,", "unknown_kind", "unknown kind 'emial'"),
    (
        "email,a@example.com,,yesterday,",
        "bad_date",
        "first_seen is not an ISO 8601 date or date and time",
    ),
    ("email,a@example.com,,2026-01-02,2026-01-01", "bad_date", "first_seen is after last_seen"),
    (
        "email,a@example.com,,,0001-01-01T00:00:00+01:00",
        "bad_date",
        "last_seen is out of range in UTC",
    ),
    (
        "email,a@example.com," + "c" * 65 + ",,",
        "bad_category",
        "category longer than 64 characters",
    ),
    (
        "email,a@example.com,bad\x07category,,",
        "bad_category",
        "category contains control or non-printable characters",
    ),
    ("email, ,,,", "empty", None),
    (f"email,{LONG_VALUE},,,", "too_long", None),
    ("username,a b,,,", "bad_characters", None),
    ("email,nope,,,", "bad_syntax", None),
    ("domain,localhost,,,", "bad_domain", None),
    ("ip,999.1.1.1,,,", "bad_address", None),
    ("phone,hello,,,", "not_a_phone_number", None),
    ("phone,+1 555,,,", "impossible_phone_number", None),
    ("ip_prefix,10.0.0.0/8,,,", "prefix_too_short", None),
    ("payment_fingerprint,4111111111111111,,,", "looks_like_card_number", None),
]

JSONL_CASES: list[tuple[str | bytes, str, str | None]] = [
    (
        "{not json",
        "bad_json",
        "not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
    ),
    ('["email", "a@example.com"]', "bad_json", "a line must hold one JSON object"),
    ('{"value": 5}', "bad_json", "field 'value' must be a string"),
    ('{"value": "a@example.com", "category": 3}', "bad_json", "field 'category' must be a string"),
    ("[" * 100_000, "oversized_line", "line longer than 8192 bytes"),
    ("[" * 4000 + "]" * 4000, "bad_json", "JSON nested too deeply"),
    ('{"value": null}', "missing_field", "no value"),
    ('{"kind": "email"}', "missing_field", "no value"),
    (
        '{"kind": "phone", "value": "+14155550100"}',
        "kind_mismatch",
        "kind 'phone' is not the expected 'email'",
    ),
    (
        '{"value": "a\\ud800@example.com"}',
        "bad_encoding",
        "field 'value' contains an escaped lone surrogate",
    ),
    (b'{"value": "\xff"}', "bad_encoding", "invalid UTF-8 at byte 11"),
    (
        '{"value": "a@example.com", "last_seen": "2026-02-30"}',
        "bad_date",
        "last_seen is not an ISO 8601 date or date and time",
    ),
    (
        '{"value": "a@example.com", "category": "tab\\there"}',
        "bad_category",
        "category contains control or non-printable characters",
    ),
    ('{"value": ""}', "empty", None),
]


def _expected_rejects(
    path: Path, cases: list[tuple[str | bytes, str, str | None]], first_line: int
) -> list[dict[str, Any]]:
    expected = []
    for number, (line, reason, detail) in enumerate(cases, start=first_line):
        text = line.decode("utf-8", "backslashreplace") if isinstance(line, bytes) else line
        record: dict[str, Any] = {"source": f"{path}:{number}", "reason": reason}
        if detail is not None:
            record["detail"] = detail
        record["line"] = text[:1024]
        if len(text) > 1024:
            record["line_truncated"] = True
        expected.append(record)
    return expected


def _without_kind_details(
    records: list[dict[str, Any]], cases: list[tuple[str | bytes, str, str | None]]
) -> list[dict[str, Any]]:
    out = []
    for record, (_, _, detail) in zip(records, cases, strict=True):
        assert record["detail"], record  # the kinds' own words: present, not pinned here
        out.append(
            record if detail is not None else {k: v for k, v in record.items() if k != "detail"}
        )
    return out


def test_csv_rejects_each_reason_with_exact_counts_and_records(tmp_path: Path) -> None:
    good = "email,ok@example.com,,,"
    path = write_lines(
        tmp_path / "rows.csv", [HEADER, good, *[line for line, _, _ in CSV_CASES], good]
    )
    rejects_path = tmp_path / "rejects.jsonl"
    with RejectSink(rejects_path) as sink:
        rows = indicators([path], sink, max_line_bytes=8192)
    assert [row.source for row in rows] == [f"{path}:2", f"{path}:{len(CSV_CASES) + 3}"]
    assert sink.counts == Counter(reason for _, reason, _ in CSV_CASES)
    assert sink.total == len(CSV_CASES)
    records = read_rejects(rejects_path)
    assert _without_kind_details(records, CSV_CASES) == _expected_rejects(path, CSV_CASES, 3)


def test_jsonl_rejects_each_reason_with_exact_counts_and_records(tmp_path: Path) -> None:
    good = '{"value": "ok@example.com", "kind": "email"}'
    path = write_lines(tmp_path / "rows.jsonl", [good, *[line for line, _, _ in JSONL_CASES], ""])
    rejects_path = tmp_path / "rejects.jsonl"
    with RejectSink(rejects_path) as sink:
        rows = indicators([path], sink, default_kind="email", max_line_bytes=8192)
    assert [row.source for row in rows] == [f"{path}:1"]
    assert sink.counts == Counter(reason for _, reason, _ in JSONL_CASES)
    records = read_rejects(rejects_path)
    assert _without_kind_details(records, JSONL_CASES) == _expected_rejects(path, JSONL_CASES, 2)


def test_the_tables_cover_every_reason() -> None:
    covered = {reason for _, reason, _ in CSV_CASES + JSONL_CASES}
    # kind_not_enabled depends on the hub's parameters: the sync job finds it after reading
    # (tests/client/test_sync_robustness.py covers it).
    after_reading = {InputRejectReason.KIND_NOT_ENABLED.value}
    assert covered == {reason.value for reason in InputRejectReason} - after_reading


def test_the_kinds_reject_reasons_keep_their_strings() -> None:
    assert {r.value for r in RejectReason} <= {r.value for r in InputRejectReason}
    assert str(InputRejectReason.BAD_SYNTAX) == "bad_syntax"  # a StrEnum: the text itself


def test_a_bad_utf8_line_in_the_middle_costs_that_line_only(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "x.csv",
        [
            "kind,value",
            "email,before@example.com",
            b"email,\xc3\x28@example.com",
            "email,after@x.org",
        ],
    )
    sink = RejectSink()
    assert [row.canonical for row in indicators([path], sink)] == [
        "before@example.com",
        "after@x.org",
    ]
    assert sink.counts == Counter({"bad_encoding": 1})


def test_an_oversized_line_is_skipped_without_being_held_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as out:
        out.write(b"kind,value\nemail,before@example.com\nemail,")
        chunk = b"z" * (1 << 20)
        for _ in range(10):
            out.write(chunk)
        out.write(b"\nemail,after@example.com\n")
    rejects_path = tmp_path / "rejects.jsonl"
    tracemalloc.start()
    try:
        with RejectSink(rejects_path) as sink:
            rows = indicators([path], sink, max_line_bytes=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [row.canonical for row in rows] == ["before@example.com", "after@example.com"]
    assert peak < 1 << 20  # the line is 10 MiB
    (record,) = read_rejects(rejects_path)
    assert record == {
        "source": f"{path}:3",
        "reason": "oversized_line",
        "detail": "line longer than 4096 bytes",
        "line": "email," + "z" * 1018,
        "line_truncated": True,
    }


def test_a_line_exactly_at_the_limit_is_read(tmp_path: Path) -> None:
    value = "a@" + "b" * 20 + ".com"
    line = f"email,{value}"
    path = write_lines(tmp_path / "x.csv", ["kind,value", line, line + "x"])
    sink = RejectSink()
    rows = indicators([path], sink, max_line_bytes=len(line))
    assert [row.source for row in rows] == [f"{path}:2"]
    assert sink.counts == Counter({"oversized_line": 1})
    last_line_no_newline = tmp_path / "y.csv"
    last_line_no_newline.write_text(f"kind,value\n{line}")
    assert len(indicators([last_line_no_newline], max_line_bytes=len(line))) == 1


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02 03:04:05.250", datetime(2026, 1, 2, 3, 4, 5, 250_000, tzinfo=UTC)),
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05+02:00", datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2026-01-01T22:00:00-05:30", datetime(2026, 1, 2, 3, 30, tzinfo=UTC)),
        ("  2026-01-02  ", datetime(2026, 1, 2, tzinfo=UTC)),
        ("", None),
    ],
)
def test_dates_become_aware_utc_datetimes(
    tmp_path: Path, text: str, expected: datetime | None
) -> None:
    path = write_lines(tmp_path / "d.csv", [HEADER, f"email,a@example.com,,{text},{text}"])
    (row,) = indicators([path])
    assert row.first_seen == expected
    assert row.last_seen == expected
    if expected is not None:
        assert row.first_seen is not None
        assert row.first_seen.utcoffset() == timedelta(0)
        assert row.first_seen.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "02/01/2026",
        "2026-13-01",
        "yesterday",
        "2026-01-02T25:00",
        "1767225600",
        "2026-01-02T03:04+25:00",
    ],
)
def test_bad_dates_are_rejected(tmp_path: Path, text: str) -> None:
    path = write_lines(tmp_path / "d.csv", [HEADER, f"email,a@example.com,,,{text}"])
    sink = RejectSink()
    assert indicators([path], sink) == []
    assert sink.counts == Counter({"bad_date": 1})


def test_repeated_dates_are_parsed_consistently(tmp_path: Path) -> None:
    zone = timezone(timedelta(hours=2))
    stamp = datetime(2026, 1, 2, 3, tzinfo=zone).isoformat()
    path = write_lines(
        tmp_path / "d.csv", [HEADER, *[f"email,u{i}@example.com,,{stamp}," for i in range(3)]]
    )
    assert {row.first_seen for row in indicators([path])} == {datetime(2026, 1, 2, 1, tzinfo=UTC)}


# --- the rejects file ----------------------------------------------------------------------


def test_the_rejects_file_is_private_and_appended_to(tmp_path: Path) -> None:
    target = tmp_path / "rejects.jsonl"
    target.write_text('{"earlier": "run"}\n')
    target.chmod(0o644)
    path = write_lines(tmp_path / "x.csv", ["kind,value", "email,nope"])
    with RejectSink(target) as sink:
        indicators([path], sink)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [record.get("reason") for record in read_rejects(target)] == [None, "bad_syntax"]
    fresh = tmp_path / "fresh.jsonl"
    with RejectSink(fresh):
        pass
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600
    assert fresh.read_text() == ""


def test_a_sink_without_a_path_only_counts(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.csv", ["kind,value", "email,nope", "email,", "email,x@y.io"])
    sink = RejectSink()
    assert len(indicators([path], sink)) == 1
    assert sink.counts == Counter({"bad_syntax": 1, "empty": 1})
    assert sink.total == 2
    assert list(tmp_path.iterdir()) == [path]


# --- streaming and progress ----------------------------------------------------------------


@pytest.mark.slow  # tracemalloc hooks every allocation of 200k rows
def test_reading_streams_rows_instead_of_building_a_list(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("kind,value,category\n")
        for i in range(200_000):
            out.write(f"email,user.{i}@example{i % 50}.com,distill\n")
    size = path.stat().st_size
    rows = read_indicators([path], rejects=RejectSink())
    assert isinstance(rows, types.GeneratorType)
    count = 0
    tracemalloc.start()
    try:
        for row in rows:
            count += 1
            assert row.category == "distill"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < size / 10, (peak, size)


@pytest.mark.parametrize("compress", [False, True])
def test_progress_reports_add_up_to_the_size_on_disk(tmp_path: Path, compress: bool) -> None:
    body = f"{HEADER}\n" + "".join(f"email,u{i}@example.com,,,\n" for i in range(10_000))
    path = tmp_path / ("p.csv.gz" if compress else "p.csv")
    path.write_bytes(gzip.compress(body.encode()) if compress else body.encode())
    reports: list[int] = []
    rows = indicators([path], on_bytes=reports.append)
    assert len(rows) == 10_000
    assert len(reports) > 1
    assert all(report >= 0 for report in reports)
    assert sum(reports) == path.stat().st_size == input_size([path])


# --- prompts -------------------------------------------------------------------------------


def test_prompt_rows(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "prompts.jsonl",
        [
            json.dumps(
                {
                    "text": "Solve step by step: 2+2",
                    "category": "distill",
                    "account": "acct-1",
                    "ts": "2026-01-02T03:04:05+01:00",
                }
            ),
            "",
            json.dumps({"text": "hello", "account": 12345}),
        ],
    )
    assert list(read_prompts([path], rejects=RejectSink())) == [
        PromptRow(
            text="Solve step by step: 2+2",
            category="distill",
            account="acct-1",
            ts=datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC),
            source=f"{path}:1",
        ),
        PromptRow(text="hello", category="", account="12345", ts=None, source=f"{path}:3"),
    ]


PROMPT_CASES: list[tuple[str | bytes, str, str | None]] = [
    ('{"category": "x"}', "missing_field", "no text"),
    ('{"text": null}', "missing_field", "no text"),
    ('{"text": "  "}', "empty", "text is empty"),
    ('{"text": 42}', "bad_json", "field 'text' must be a string"),
    ('{"text": "hi", "account": true}', "bad_json", "field 'account' must be a string or integer"),
    ('"just a string"', "bad_json", "a line must hold one JSON object"),
    ('{"text": "hi", "ts": "noon"}', "bad_date", "ts is not an ISO 8601 date or date and time"),
    (
        '{"text": "hi", "category": "' + "c" * 65 + '"}',
        "bad_category",
        "category longer than 64 characters",
    ),
    ('{"text": "\\udc80"}', "bad_encoding", "field 'text' contains an escaped lone surrogate"),
    (b'{"text": "\xed\xa0\x80"}', "bad_encoding", "invalid UTF-8 at byte 10"),
    ('{"text": "' + "w " * 600 + '"}', "oversized_line", "line longer than 1024 bytes"),
]


def test_prompt_rejects_with_exact_counts_and_records(tmp_path: Path) -> None:
    good = '{"text": "fine"}'
    path = write_lines(tmp_path / "p.jsonl", [*[line for line, _, _ in PROMPT_CASES], good])
    rejects_path = tmp_path / "rejects.jsonl"
    with RejectSink(rejects_path) as sink:
        rows = list(read_prompts([path], rejects=sink, max_line_bytes=1024))
    assert [row.text for row in rows] == ["fine"]
    assert sink.counts == Counter(reason for _, reason, _ in PROMPT_CASES)
    assert read_rejects(rejects_path) == _expected_rejects(path, PROMPT_CASES, 1)


def test_prompt_lines_up_to_a_mebibyte_are_read_by_default(tmp_path: Path) -> None:
    text = "word " * 200_000
    path = write_lines(tmp_path / "p.jsonl", [json.dumps({"text": text})])
    (row,) = read_prompts([path], rejects=RejectSink())
    assert row.text == text
