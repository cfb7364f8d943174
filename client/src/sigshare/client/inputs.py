"""Reading what members' detection pipelines export: indicator rows and prompt rows.

Indicators come as CSV with a header row or as JSONL (one object per line) with the fields
``kind``, ``value`` and optionally ``category``, ``first_seen`` and ``last_seen``; prompts come as
JSONL with ``text`` and optionally ``category``, ``account`` and ``ts``. Either may be gzip
compressed (recognised by its magic bytes, so ``.csv.gz`` and a gzipped ``.csv`` both work).
Text is UTF-8, or UTF-16 when the file starts with a UTF-16 byte order mark (spreadsheet
exports); a CSV file's delimiter — comma, semicolon or tab — is told from its header line.

Files hold millions of rows, so everything streams: lines are read one at a time with a byte
limit (an over-long line is skipped in bounded chunks, never held whole) and decoded one at a
time (one line of invalid UTF-8 costs that line only). A bad row is never fatal: it is counted by
:class:`InputRejectReason` in a :class:`RejectSink`, written to the member's own rejects file,
and reading goes on. A problem with a whole file — missing, unreadable, unknown format, a CSV
header without the required columns — raises :class:`InputFormatError` instead.

Conventions shared by both formats:

* line numbers are physical lines, counted from 1; a row's ``source`` is ``"<path>:<line>"``;
* blank lines are skipped without being counted;
* a CSV record is one line (identifiers never contain line breaks, and a stray quote must cost
  one row, not swallow the rest of the file); of the delimiters comma, semicolon and tab, the
  header line's is the one that splits it into the most known column names (comma on a tie);
* in JSON, ``null`` means the same as an absent key; a field of the wrong JSON type is
  ``bad_json``;
* a leading UTF-8 byte order mark is ignored, and so is the case of column names and kinds; a
  UTF-16 one (either byte order) makes the file UTF-16, read as its UTF-8 transcoding (line
  limits count UTF-8 bytes);
* dates are ISO 8601 (a date or a date and time); a value without a zone is UTC; rows carry
  aware UTC datetimes; ``first_seen`` after ``last_seen`` is ``bad_date``.

This module is below the transport: it imports neither ``click`` nor ``grpc``.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import operator
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal, TypeVar

from sigshare.sketch.errors import InvalidValueError, RejectReason, UnknownKindError
from sigshare.sketch.kinds import Kind, get_kind

INDICATOR_LINE_LIMIT: Final = 64 * 1024
"""Default longest indicator line, in bytes without the line break."""
PROMPT_LINE_LIMIT: Final = 1024 * 1024
"""Default longest prompt line, in bytes without the line break."""
MAX_CATEGORY_LENGTH: Final = 64
REJECT_LINE_CHARS: Final = 1024
"""A rejected line is written to the rejects file cut to this many characters."""

Format = Literal["csv", "jsonl"]
_FORMATS: Final[dict[str, Format]] = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}
_SUFFIXES: Final[dict[str, Format]] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_GZIP_MAGIC: Final = b"\x1f\x8b"
_UTF8_BOM: Final = "\ufeff"
_UTF16_BOMS: Final = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_TRANSCODE_CHUNK: Final = 64 * 1024
_CSV_DELIMITERS: Final = (",", ";", "\t")
"""Candidates for a CSV file's delimiter, in order of preference on a tie."""
_SHOWN_COLUMNS: Final = 8
_SHOWN_COLUMN_CHARS: Final = 40
"""A header without the required columns is quoted in the error, this much of it."""
_SKIP_CHUNK: Final = 64 * 1024
_PROGRESS_EVERY: Final = 4096
"""Lines between progress reports (a report asks the OS for the file position)."""
_MEMO_SIZE: Final = 4096
"""Parsed dates and checked categories remembered per file set; exports repeat them."""
_MEMO_VALUE_CHARS: Final = 64
"""Longer strings are not remembered, so the memos stay small."""


class InputRejectReason(StrEnum):
    """Why an input row was skipped. Stable strings: they appear in counts and rejects files.

    The kinds' own :class:`~sigshare.sketch.errors.RejectReason` values appear unchanged, so a
    value refused by its kind is counted under the same name everywhere.
    """

    BAD_ENCODING = "bad_encoding"
    OVERSIZED_LINE = "oversized_line"
    BAD_JSON = "bad_json"
    BAD_CSV = "bad_csv"
    MISSING_FIELD = "missing_field"
    UNKNOWN_KIND = "unknown_kind"
    KIND_MISMATCH = "kind_mismatch"
    BAD_DATE = "bad_date"
    BAD_CATEGORY = "bad_category"
    # The kinds' reasons (sigshare.sketch.errors.RejectReason), same strings.
    EMPTY = "empty"
    TOO_LONG = "too_long"
    BAD_CHARACTERS = "bad_characters"
    BAD_SYNTAX = "bad_syntax"
    BAD_DOMAIN = "bad_domain"
    BAD_ADDRESS = "bad_address"
    NOT_A_PHONE_NUMBER = "not_a_phone_number"
    IMPOSSIBLE_PHONE_NUMBER = "impossible_phone_number"
    PREFIX_TOO_SHORT = "prefix_too_short"
    LOOKS_LIKE_CARD_NUMBER = "looks_like_card_number"
    # Found after reading, when the hub's parameters are known.
    KIND_NOT_ENABLED = "kind_not_enabled"


# Fails at import if a kind reason is added without its twin above.
_FROM_KIND_REASON: Final = {reason: InputRejectReason(reason.value) for reason in RejectReason}


class InputFormatError(Exception):
    """A whole input file cannot be read: missing, unreadable, unknown format, bad CSV header.

    The message names the file. Bad rows never raise this; they go to the :class:`RejectSink`.
    """

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(slots=True)
class IndicatorRow:
    """One accepted indicator. (Not frozen: a frozen dataclass costs 2 µs more per row.)"""

    kind: str
    value: str
    """As read, before canonicalisation."""
    canonical: str
    category: str
    """``""`` when the row has none."""
    first_seen: datetime | None
    """Aware, UTC."""
    last_seen: datetime | None
    """Aware, UTC."""
    source: str
    """``"<path>:<line>"``."""


@dataclass(slots=True)
class PromptRow:
    """One accepted prompt."""

    text: str
    category: str
    """``""`` when the row has none."""
    account: str | None
    """The member's own account id, kept locally (never part of a sketch)."""
    ts: datetime | None
    """Aware, UTC."""
    source: str
    """``"<path>:<line>"``."""


class RejectSink:
    """Counts rejected rows by reason and, given a path, appends one JSON line per rejected row.

    Each line is ``{"source", "reason", "detail", "line"}`` plus ``"line_truncated": true`` when
    the raw line was cut to :data:`REJECT_LINE_CHARS` characters. The file holds the member's raw
    data so an engineer can fix the export: it is created with mode 0600 (and an existing file
    is set to 0600), and it never leaves the member's machine.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._file: IO[str] | None = None
        if path is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
            descriptor = os.open(path, flags, 0o600)
            try:
                os.fchmod(descriptor, 0o600)
                self._file = os.fdopen(descriptor, "a", encoding="utf-8")
            except BaseException:
                os.close(descriptor)
                raise

    @property
    def total(self) -> int:
        return self.counts.total()

    def reject(
        self,
        reason: InputRejectReason,
        *,
        source: str,
        detail: str,
        line: str | bytes | None = None,
    ) -> None:
        self.counts[reason.value] += 1
        if self._file is None:
            return
        record: dict[str, Any] = {"source": source, "reason": reason.value, "detail": detail}
        if line is not None:
            if isinstance(line, bytes):
                line = line[: REJECT_LINE_CHARS * 4].decode("utf-8", "backslashreplace")
            line = line.rstrip("\r\n")
            record["line"] = line[:REJECT_LINE_CHARS]
            if len(line) > REJECT_LINE_CHARS:
                record["line_truncated"] = True
        # ASCII escapes keep lone surrogates (legal in JSON input) writable.
        self._file.write(json.dumps(record) + "\n")

    def reject_rows(
        self, reason: InputRejectReason, count: int, *, source: str, detail: str
    ) -> None:
        """``count`` rows refused together for one reason found after reading (a kind the hub
        does not enable): counted one by one, written as one line with ``"rows": count``."""
        if count <= 0:
            return
        self.counts[reason.value] += count
        if self._file is not None:
            record = {"source": source, "reason": reason.value, "detail": detail, "rows": count}
            self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RejectSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


ProgressCallback = Callable[[int], None]
"""Called with the number of (on-disk, so compressed) bytes read since the previous call."""


def input_size(paths: Sequence[Path]) -> int:
    """Total on-disk size of ``paths``: the total for a progress bar fed by ``on_bytes``."""
    return sum(path.stat().st_size for path in paths)


def read_indicators(
    paths: Sequence[Path],
    *,
    default_kind: str | None = None,
    rejects: RejectSink,
    fmt: str | None = None,
    kinds: Mapping[str, Kind] | None = None,
    max_line_bytes: int = INDICATOR_LINE_LIMIT,
    on_bytes: ProgressCallback | None = None,
) -> Iterator[IndicatorRow]:
    """Stream the accepted indicator rows of ``paths``, canonicalised; reject the others.

    ``default_kind`` lets the ``kind`` column be omitted; a row that has one must then name that
    kind (``kind_mismatch`` otherwise). ``kinds`` supplies configured kinds (forum-wide options
    such as e-mail provider rules) by name; other names come from the registry with defaults.
    ``fmt`` (``csv``, ``jsonl``) overrides the format implied by the file name.

    Formats, file existence and ``default_kind`` are checked before the first row is read;
    :class:`InputFormatError` or :class:`~sigshare.sketch.errors.UnknownKindError` is raised
    by this call, not by the first ``next()``.
    """
    formats = _formats_of(paths, fmt, allowed=("csv", "jsonl"))
    registry = _Kinds(kinds)
    if default_kind is not None:
        registry.canonicaliser(default_kind)  # raises UnknownKindError now, not mid-stream
    reader = _IndicatorReader(registry, default_kind, rejects)
    return _chain(
        paths,
        formats,
        lambda path, lines, file_format: (
            reader.csv(path, lines) if file_format == "csv" else reader.jsonl(path, lines)
        ),
        rejects=rejects,
        max_line_bytes=max_line_bytes,
        on_bytes=on_bytes,
    )


def read_prompts(
    paths: Sequence[Path],
    *,
    rejects: RejectSink,
    fmt: str | None = None,
    max_line_bytes: int = PROMPT_LINE_LIMIT,
    on_bytes: ProgressCallback | None = None,
) -> Iterator[PromptRow]:
    """Stream the accepted prompt rows of JSONL ``paths``; reject the others.

    ``text`` is a required non-empty string; ``account`` may be a string or an integer (kept as
    its decimal string). Formats and file existence are checked by this call.
    """
    _formats_of(paths, fmt, allowed=("jsonl",))
    return _chain(
        paths,
        ["jsonl"] * len(paths),
        lambda path, lines, _: _prompt_rows(path, lines, rejects),
        rejects=rejects,
        max_line_bytes=max_line_bytes,
        on_bytes=on_bytes,
    )


# --- files and lines -------------------------------------------------------------------------


def _formats_of(
    paths: Sequence[Path], fmt: str | None, *, allowed: tuple[Format, ...]
) -> list[Format]:
    formats: list[Format] = []
    for path in paths:
        if fmt is not None:
            chosen = _FORMATS.get(fmt.lower())
            if chosen is None or chosen not in allowed:
                raise InputFormatError(
                    path, f"unsupported format {fmt!r}; expected one of: {', '.join(allowed)}"
                )
        else:
            name = path.name.lower().removesuffix(".gz")
            found = _SUFFIXES.get(os.path.splitext(name)[1])
            if found is None or found not in allowed:
                expected = ", ".join(
                    f"{suffix}[.gz]" for suffix, f in _SUFFIXES.items() if f in allowed
                )
                raise InputFormatError(
                    path, f"cannot tell the format from the file name; expected {expected}"
                )
            chosen = found
        if not path.exists():
            raise InputFormatError(path, "does not exist")
        formats.append(chosen)
    return formats


_Line = tuple[int, str]
_Row = TypeVar("_Row", IndicatorRow, PromptRow)


def _chain(
    paths: Sequence[Path],
    formats: Sequence[Format],
    rows_of: Callable[[Path, Iterator[_Line], Format], Iterator[_Row]],
    *,
    rejects: RejectSink,
    max_line_bytes: int,
    on_bytes: ProgressCallback | None,
) -> Iterator[_Row]:
    for path, file_format in zip(paths, formats, strict=True):
        try:
            raw = path.open("rb")
        except OSError as error:
            raise InputFormatError(path, f"cannot be opened: {error.strerror}") from None
        with raw:
            try:
                compressed = raw.peek(len(_GZIP_MAGIC))[: len(_GZIP_MAGIC)] == _GZIP_MAGIC
            except OSError as error:
                raise InputFormatError(path, f"cannot be read: {error.strerror}") from None
            stream: io.BufferedReader | gzip.GzipFile = (
                gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            )
            with stream:
                try:
                    utf16 = stream.peek(2)[:2] in _UTF16_BOMS
                except (OSError, EOFError, zlib.error) as error:
                    raise InputFormatError(path, f"unreadable after line 0: {error}") from None
                if utf16:
                    stream = io.BufferedReader(_Utf16AsUtf8(stream))
                lines = _lines(
                    path,
                    stream,
                    position=raw.tell,
                    rejects=rejects,
                    limit=max_line_bytes,
                    on_bytes=on_bytes,
                )
                yield from rows_of(path, lines, file_format)


_UNDECODABLE: Final = "sigshare.undecodable"
"""Decoding error handler: what UTF-16 cannot decode (a lone surrogate, a character cut short at
the end) becomes one lone surrogate, which becomes bytes that are not UTF-8."""


def _undecodable(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "\udc80", error.end


codecs.register_error(_UNDECODABLE, _undecodable)


class _Utf16AsUtf8(io.RawIOBase):
    """The UTF-8 bytes of a UTF-16 stream that starts with its byte order mark (not repeated).

    Lines are then read and limited exactly as in a UTF-8 file. What UTF-16 cannot decode (a
    lone surrogate, a character cut short at the end) is carried over as bytes that are not
    UTF-8, so its line is rejected as ``bad_encoding``, as a line of invalid UTF-8 would be.
    """

    def __init__(self, source: io.BufferedIOBase) -> None:
        self._source = source
        self._decoder = codecs.getincrementaldecoder("utf-16")(errors=_UNDECODABLE)
        self._pending = b""
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._ended:
            chunk = self._source.read(_TRANSCODE_CHUNK)
            self._ended = not chunk
            text = self._decoder.decode(chunk, final=self._ended)
            self._pending = text.encode("utf-8", "surrogatepass")
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def _lines(
    path: Path,
    stream: io.BufferedIOBase,
    *,
    position: Callable[[], int],
    rejects: RejectSink,
    limit: int,
    on_bytes: ProgressCallback | None,
) -> Iterator[_Line]:
    """Decoded lines without their line break; over-long and non-UTF-8 lines are rejected here.

    ``readline(limit + 1)`` returns a line of at most ``limit`` bytes with its break, or the
    first ``limit + 1`` bytes of a longer one, whose rest is then skipped in bounded chunks.
    """
    readline = stream.readline
    reported = 0
    number = 0
    while True:
        try:
            raw = readline(limit + 1)
        except (OSError, EOFError, zlib.error) as error:
            raise InputFormatError(path, f"unreadable after line {number}: {error}") from None
        if not raw:
            break
        number += 1
        if on_bytes is not None and number % _PROGRESS_EVERY == 0:
            now = position()
            on_bytes(now - reported)
            reported = now
        if len(raw) > limit and raw[-1] != 0x0A:
            rejects.reject(
                InputRejectReason.OVERSIZED_LINE,
                source=f"{path}:{number}",
                detail=f"line longer than {limit} bytes",
                line=raw,
            )
            try:
                while (rest := readline(_SKIP_CHUNK)) and rest[-1] != 0x0A:
                    pass
            except (OSError, EOFError, zlib.error) as error:
                raise InputFormatError(path, f"unreadable at line {number}: {error}") from None
            continue
        try:
            text = raw.decode()
        except UnicodeDecodeError as error:
            rejects.reject(
                InputRejectReason.BAD_ENCODING,
                source=f"{path}:{number}",
                detail=f"invalid UTF-8 at byte {error.start}",
                line=raw,
            )
            continue
        if number == 1:
            text = text.removeprefix(_UTF8_BOM)
        yield number, text.rstrip("\r\n")
    if on_bytes is not None:
        on_bytes(position() - reported)


# --- field rules ----------------------------------------------------------------------------


class _RowError(Exception):
    """A row is refused; raised and caught inside this module only."""

    def __init__(self, reason: InputRejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _when(raw: str, field: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except ValueError:
        raise _RowError(
            InputRejectReason.BAD_DATE, f"{field} is not an ISO 8601 date or date and time"
        ) from None
    except OverflowError:  # year 1 or 9999 moved across midnight by its zone offset
        raise _RowError(InputRejectReason.BAD_DATE, f"{field} is out of range in UTC") from None


def _category(raw: str) -> str:
    category = raw.strip()
    if len(category) > MAX_CATEGORY_LENGTH:
        raise _RowError(
            InputRejectReason.BAD_CATEGORY, f"category longer than {MAX_CATEGORY_LENGTH} characters"
        )
    # isprintable() is False for control, format, surrogate and unassigned characters.
    if not category.isprintable():
        raise _RowError(
            InputRejectReason.BAD_CATEGORY, "category contains control or non-printable characters"
        )
    return category


def _json_object(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as error:  # JSONDecodeError, or a number too long to convert
        raise _RowError(InputRejectReason.BAD_JSON, f"not valid JSON: {error}") from None
    except RecursionError:
        raise _RowError(InputRejectReason.BAD_JSON, "JSON nested too deeply") from None
    if not isinstance(document, dict):
        raise _RowError(InputRejectReason.BAD_JSON, "a line must hold one JSON object")
    if "\\u" in text:  # only escapes can produce lone surrogates, which are not text
        for key, item in document.items():
            if isinstance(item, str) and not _is_unicode(item):
                raise _RowError(
                    InputRejectReason.BAD_ENCODING,
                    f"field {key!r} contains an escaped lone surrogate",
                )
    return document


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _json_text(document: dict[str, Any], field: str) -> str | None:
    item = document.get(field)
    if item is None or isinstance(item, str):
        return item
    raise _RowError(InputRejectReason.BAD_JSON, f"field {field!r} must be a string")


class _Kinds:
    """Canonicalisers by kind name, each kind created once (the registry builds one per call)."""

    def __init__(self, configured: Mapping[str, Kind] | None) -> None:
        self._configured = dict(configured or {})
        self.canonicalisers: dict[str, Callable[[str], str]] = {}

    def canonicaliser(self, name: str) -> Callable[[str], str]:
        """The canonicaliser of kind ``name``; raises :class:`UnknownKindError`."""
        found = self.canonicalisers.get(name)
        if found is None:
            kind = self._configured.get(name) or get_kind(name)
            found = self.canonicalisers[name] = kind.canonicalise
        return found


# --- indicators -----------------------------------------------------------------------------


class _IndicatorReader:
    """Indicator rows of either format; the field rules' answers are remembered (bounded)."""

    def __init__(self, kinds: _Kinds, default_kind: str | None, rejects: RejectSink) -> None:
        self._kinds = kinds
        self._canonicalisers = kinds.canonicalisers
        self._default_kind = default_kind
        self._rejects = rejects
        self._dates: dict[str, datetime | None] = {}
        self._categories: dict[str, str] = {}

    def _row(self, fields: _IndicatorFields, source: str) -> IndicatorRow:
        """A row from its raw fields; an absent field is ``""``."""
        kind, value, category, first_seen, last_seen = fields
        kind = kind.strip().lower()
        default = self._default_kind
        if not kind:
            if default is None:
                raise _RowError(InputRejectReason.MISSING_FIELD, "no kind")
            kind = default
        elif default is not None and kind != default:
            raise _RowError(
                InputRejectReason.KIND_MISMATCH,
                f"kind {kind[:64]!r} is not the expected {default!r}",
            )
        canonicalise = self._canonicalisers.get(kind) or self._canonicaliser(kind)
        try:
            canonical = canonicalise(value)
        except InvalidValueError as error:
            raise _RowError(_FROM_KIND_REASON[error.reason], error.detail) from None
        if category:
            category = self._categories.get(category) or _remember(
                self._categories, category, _category(category)
            )
        dates = self._dates
        first = last = None
        if first_seen:
            first = dates.get(first_seen) or _remember(
                dates, first_seen, _when(first_seen, "first_seen")
            )
        if last_seen:
            last = dates.get(last_seen) or _remember(
                dates, last_seen, _when(last_seen, "last_seen")
            )
        if first is not None and last is not None and first > last:
            raise _RowError(InputRejectReason.BAD_DATE, "first_seen is after last_seen")
        return IndicatorRow(kind, value, canonical, category, first, last, source)

    def _canonicaliser(self, kind: str) -> Callable[[str], str]:
        try:
            return self._kinds.canonicaliser(kind)
        except UnknownKindError:
            raise _RowError(InputRejectReason.UNKNOWN_KIND, f"unknown kind {kind[:64]!r}") from None

    def csv(self, path: Path, lines: Iterator[_Line]) -> Iterator[IndicatorRow]:
        columns, delimiter = self._header(path, lines)
        width = len(columns)
        # A column the file lacks is read from an empty field appended to every row.
        pick: Callable[[list[str]], _IndicatorFields] = operator.itemgetter(
            *(columns.get(name, width) for name in _INDICATOR_FIELDS)
        )
        row = self._row
        reject = self._rejects.reject
        for number, text in lines:
            if not text or text.isspace():
                continue
            source = f"{path}:{number}"
            try:
                fields = _quoted_fields(text, delimiter) if '"' in text else text.split(delimiter)
                if len(fields) != width:
                    raise _RowError(
                        InputRejectReason.BAD_CSV, f"expected {width} fields, found {len(fields)}"
                    )
                fields.append("")
                yield row(pick(fields), source)
            except _RowError as error:
                reject(error.reason, source=source, detail=error.detail, line=text)

    def _header(self, path: Path, lines: Iterator[_Line]) -> tuple[dict[str, int], str]:
        """The columns by name and the file's delimiter, from its first non-blank line."""
        for number, text in lines:
            if not text or text.isspace():
                continue
            try:
                fields, delimiter = _header_fields(text)
            except _RowError as error:
                raise InputFormatError(path, f"bad header row (line {number}): {error}") from None
            names = [field.strip().lower() for field in fields]
            columns = {name: position for position, name in enumerate(names)}
            twice = [name for name in _INDICATOR_FIELDS if names.count(name) > 1]
            if twice:
                raise InputFormatError(path, f"the header row has two {twice[0]} columns")
            required = ["value"] if self._default_kind is not None else ["kind", "value"]
            missing = [name for name in required if name not in columns]
            if missing:
                them = "them" if len(missing) > 1 else "it"
                hint = (
                    "" if self._default_kind is not None else f"; add {them} or give a default kind"
                )
                raise InputFormatError(
                    path,
                    f"the header row has no {' or '.join(missing)} column "
                    f"(found: {_shown_columns(fields)}){hint}",
                )
            return columns, delimiter
        raise InputFormatError(path, "has no header row (a CSV file starts with its column names)")

    def jsonl(self, path: Path, lines: Iterator[_Line]) -> Iterator[IndicatorRow]:
        row = self._row
        reject = self._rejects.reject
        for number, text in lines:
            if not text or text.isspace():
                continue
            source = f"{path}:{number}"
            try:
                document = _json_object(text)
                value = _json_text(document, "value")
                if value is None:
                    raise _RowError(InputRejectReason.MISSING_FIELD, "no value")
                fields = (
                    _json_text(document, "kind") or "",
                    value,
                    _json_text(document, "category") or "",
                    _json_text(document, "first_seen") or "",
                    _json_text(document, "last_seen") or "",
                )
                yield row(fields, source)
            except _RowError as error:
                reject(error.reason, source=source, detail=error.detail, line=text)


_INDICATOR_FIELDS: Final = ("kind", "value", "category", "first_seen", "last_seen")
_IndicatorFields = tuple[str, str, str, str, str]
_T = TypeVar("_T")


def _remember(memo: dict[str, _T], key: str, answer: _T) -> _T:
    if len(key) <= _MEMO_VALUE_CHARS:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[key] = answer
    return answer


def _quoted_fields(text: str, delimiter: str) -> list[str]:
    """Fields of one CSV line that contains quotes; a record never spans lines.

    Lines without quotes are split with ``str.split(delimiter)``: the csv module would split
    them in exactly the same places, only slower.
    """
    try:
        return next(csv.reader((text,), delimiter=delimiter, strict=True))
    except csv.Error as error:
        raise _RowError(InputRejectReason.BAD_CSV, f"malformed CSV: {error}") from None


def _header_fields(text: str) -> tuple[list[str], str]:
    """A header line's fields and the delimiter that separates them: of
    :data:`_CSV_DELIMITERS`, the one giving the most known column names, then the most
    fields, then the first. Raises :class:`_RowError` if the comma cannot parse the line and
    no other delimiter found in it can."""
    best: tuple[int, int, list[str], str] | None = None
    failure: _RowError | None = None
    for delimiter in _CSV_DELIMITERS:
        if delimiter != "," and delimiter not in text:
            continue
        try:
            fields = _quoted_fields(text, delimiter) if '"' in text else text.split(delimiter)
        except _RowError as error:
            failure = failure or error
            continue
        known = len({field.strip().lower() for field in fields} & set(_INDICATOR_FIELDS))
        if best is None or (known, len(fields)) > best[:2]:
            best = (known, len(fields), fields, delimiter)
    if best is None:
        assert failure is not None  # the comma is always tried
        raise failure
    return best[2], best[3]


def _shown_columns(fields: Sequence[str]) -> str:
    """Column names as an error message quotes them, each and their number bounded."""
    shown = [
        json.dumps(
            name if len(name) <= _SHOWN_COLUMN_CHARS else name[:_SHOWN_COLUMN_CHARS] + "…",
            ensure_ascii=False,
        )
        for name in (field.strip() for field in fields[:_SHOWN_COLUMNS])
    ]
    if len(fields) > _SHOWN_COLUMNS:
        shown.append(f"and {len(fields) - _SHOWN_COLUMNS} more")
    return ", ".join(shown)


# --- prompts --------------------------------------------------------------------------------


def _prompt_rows(path: Path, lines: Iterator[_Line], rejects: RejectSink) -> Iterator[PromptRow]:
    for number, text in lines:
        if not text or text.isspace():
            continue
        source = f"{path}:{number}"
        try:
            yield _prompt_row(_json_object(text), source)
        except _RowError as error:
            rejects.reject(error.reason, source=source, detail=error.detail, line=text)


def _prompt_row(document: dict[str, Any], source: str) -> PromptRow:
    prompt = _json_text(document, "text")
    if prompt is None:
        raise _RowError(InputRejectReason.MISSING_FIELD, "no text")
    if not prompt.strip():
        raise _RowError(InputRejectReason.EMPTY, "text is empty")
    account = document.get("account")
    if isinstance(account, int) and not isinstance(account, bool):
        account = str(account)
    elif account is not None and not isinstance(account, str):
        raise _RowError(InputRejectReason.BAD_JSON, "field 'account' must be a string or integer")
    category = _json_text(document, "category")
    ts = _json_text(document, "ts")
    return PromptRow(
        text=prompt,
        category=_category(category) if category else "",
        account=account,
        ts=_when(ts, "ts") if ts else None,
        source=source,
    )
