"""Listings: what a caller asks of a paged list, how it names a page, and what it gets back.

A listing query — :class:`RecordQuery` for shared indicators and campaigns, :class:`AuditQuery`
for the audit log — is built and checked once at the edge (console form, CLI options, gRPC
request) and handed whole to the services and the repositories.

Every list pages the same way, by keyset: a :class:`Cursor` names a position in one listing's
order (the sort key, its direction, the sort value and id of the row at the edge of a page) and
whether the page it asks for lies after or before that row. Cursors travel as opaque tokens:
``c1.`` and the unpadded base64url of a canonical JSON array. :meth:`Cursor.decode` accepts only
what :meth:`Cursor.encode` could have written — anything else, and a cursor of another listing,
sort key or direction than the query's, is refused with :data:`CURSOR_REFUSED`. A
:class:`Page` is one page of any list: its items, how many rows match, the position of its
first row and the tokens of the pages on either side.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import KW_ONLY, dataclass
from typing import Generic, Literal, TypeVar, get_args

from sigshare.hub.domain import NAME_RULE, RecordType, ReviewStatus, is_valid_name
from sigshare.hub.errors import InvalidArgumentError

CURSOR_REFUSED = "page token is not one this hub issued"
"""The one answer to a page token that does not decode, or names another listing or order."""

CURSOR_VERSION = "c1."
MAX_CURSOR_LENGTH = 512
"""Longer than any token the hub writes (sort values are short names, numbers and times)."""
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_FILTER_LENGTH = 64
"""Free-text filters (category, audit action): at most this many characters."""
MAX_ACTOR_FILTER_LENGTH = 128
"""The audit log's longest actor (``cli:`` and a long login name)."""

IndicatorSort = Literal["created", "reporters", "last_seen", "status", "kind"]
CampaignSort = Literal["created", "members", "volume", "similarity", "status"]
SORTS: dict[RecordType, tuple[str, ...]] = {
    RecordType.INDICATOR: get_args(IndicatorSort),
    RecordType.CAMPAIGN: get_args(CampaignSort),
}
"""Sort keys of the review listings; the first (``created``, newest first) is the default."""

LISTINGS: dict[RecordType, str] = {
    RecordType.INDICATOR: "indicators",
    RecordType.CAMPAIGN: "campaigns",
}
AUDIT_LISTING = "audit"
AUDIT_SORT = "id"
"""The audit log is listed newest first, by entry id."""

_INT64 = 2**63
_CURSOR_BODY = re.compile(r"[A-Za-z0-9_-]+")

SortValue = int | float | str | None
"""A sort value as a cursor carries it; times are ISO 8601 strings (storage converts them)."""

_T = TypeVar("_T")
_U = TypeVar("_U")


def _refused() -> InvalidArgumentError:
    return InvalidArgumentError(CURSOR_REFUSED)


def _sort_value_ok(value: object) -> bool:
    if value is None or type(value) is str:
        return True
    if type(value) is int:
        return -_INT64 <= value < _INT64
    return type(value) is float and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in one listing's order, and which side of it the page asked for lies on."""

    listing: str
    sort: str
    descending: bool
    value: SortValue
    """The sort value of the row at the page's edge (its id for ``created`` and the audit log)."""
    id: int
    """That row's id: ties in the sort value are broken by id, newest first."""
    forward: bool = True
    """The rows after that row (the next page); ``False``: the rows just before it."""

    def encode(self) -> str:
        """The opaque token: the version prefix and the base64url of the canonical form."""
        fields = [
            self.listing,
            self.sort,
            "desc" if self.descending else "asc",
            "next" if self.forward else "prev",
            self.value,
            self.id,
        ]
        text = json.dumps(fields, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        return CURSOR_VERSION + base64.urlsafe_b64encode(text.encode("ascii")).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor ``token`` encodes; :class:`InvalidArgumentError` for anything this hub
        could not have issued: another version, a token too long, broken base64 or JSON, fields
        of the wrong type, an id or number outside 64 bits, or any non-canonical spelling."""
        if not isinstance(token, str) or len(token) > MAX_CURSOR_LENGTH:
            raise _refused()
        body = token.removeprefix(CURSOR_VERSION)
        if body == token or _CURSOR_BODY.fullmatch(body) is None:
            raise _refused()
        try:
            text = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
            fields = json.loads(text, parse_constant=_no_constant)
        except (binascii.Error, ValueError):
            raise _refused() from None
        cursor = _cursor_of(fields)
        if cursor is None or cursor.encode() != token:
            raise _refused()
        return cursor

    def check(self, listing: str, sort: str, descending: bool) -> Cursor:
        """This cursor, if it is a position in that listing and order; refused otherwise."""
        if (self.listing, self.sort, self.descending) != (listing, sort, descending):
            raise _refused()
        return self


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a cursor holds")


def _cursor_of(fields: object) -> Cursor | None:
    if not isinstance(fields, list) or len(fields) != 6:
        return None
    listing, sort, order, direction, value, row_id = fields
    if not (
        type(listing) is str
        and type(sort) is str
        and is_valid_name(listing)
        and is_valid_name(sort)
        and order in ("asc", "desc")
        and direction in ("next", "prev")
        and _sort_value_ok(value)
        and type(row_id) is int
        and 0 < row_id < _INT64
    ):
        return None
    return Cursor(listing, sort, order == "desc", value, row_id, direction == "next")


def _cursor(token: str | None, listing: str, sort: str, descending: bool) -> Cursor | None:
    return None if not token else Cursor.decode(token).check(listing, sort, descending)


@dataclass(frozen=True, slots=True)
class Page(Generic[_T]):
    """One page of a list, and where it lies in the whole."""

    items: list[_T]
    total: int
    """Rows matching the query, on every page."""
    first: int
    """The 1-based position of the first item; on an empty page, one past the rows before it."""
    next_cursor: str | None = None
    """The token of the page after this one; ``None`` when nothing follows."""
    previous_cursor: str | None = None
    """The token of the page before this one; ``None`` on the first page."""

    @property
    def last(self) -> int:
        """The position of the last item (``first - 1`` on an empty page)."""
        return self.first + len(self.items) - 1

    def with_items(self, items: list[_U]) -> Page[_U]:
        """The same page holding ``items`` (its own, converted)."""
        return Page(items, self.total, self.first, self.next_cursor, self.previous_cursor)


def _page_size(size: int) -> int:
    if type(size) is not int or not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    return size


def _name_filter(what: str, value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if not is_valid_name(value):
        raise InvalidArgumentError(f"{what} {value[:64]!r} is not a valid name: {NAME_RULE}")
    return value


def _text_filter(what: str, value: str | None, limit: int = MAX_FILTER_LENGTH) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise InvalidArgumentError(f"{what} filter must be 1-{limit} printable characters")
    return value


def review_status(value: str | None) -> ReviewStatus | None:
    """The status named by ``value``; ``None`` when empty (any status)."""
    if not value:
        return None
    try:
        return ReviewStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in ReviewStatus)
        raise InvalidArgumentError(f"unknown status {value[:32]!r}: use one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """A review listing of shared indicators or campaigns: filters, order and page.

    Built with :meth:`parse` from what a person or a client sent; the constructor checks what
    the filters cannot express (the sort key, the page size, the cursor's fit).
    """

    record_type: RecordType
    _: KW_ONLY
    scope: str | None = None
    """Indicator kind or campaign family; ``None``: all."""
    status: ReviewStatus | None = None
    category: str | None = None
    assignee: str | None = None
    sort: str = "created"
    descending: bool = True
    size: int = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None
    """Where the page lies; ``None``: the first page."""

    def __post_init__(self) -> None:
        if self.sort not in SORTS[self.record_type]:
            raise InvalidArgumentError(f"cannot sort {self.listing} by {self.sort!r}")
        _page_size(self.size)
        if self.cursor is not None:
            self.cursor.check(self.listing, self.sort, self.descending)

    @property
    def listing(self) -> str:
        return LISTINGS[self.record_type]

    @classmethod
    def parse(
        cls,
        record_type: RecordType,
        *,
        scope: str | None = None,
        status: str | None = None,
        category: str | None = None,
        assignee: str | None = None,
        sort: str = "created",
        descending: bool = True,
        size: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> RecordQuery:
        """The query from text as typed: blank filters match everything; a filter that cannot
        match anything valid, an unknown sort key or status, a page size out of range and a
        page token this hub did not issue for this order are refused."""
        what = "kind" if record_type is RecordType.INDICATOR else "family"
        listing = LISTINGS[record_type]
        return cls(
            record_type,
            scope=_name_filter(what, scope),
            status=review_status(status),
            category=_text_filter("category", category),
            assignee=_name_filter("assignee", assignee),
            sort=sort,
            descending=descending,
            size=size,
            cursor=_cursor(cursor, listing, sort, descending),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """A listing of the audit log, newest first: optional actor and action, and the page."""

    actor: str | None = None
    action: str | None = None
    size: int = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None

    def __post_init__(self) -> None:
        _page_size(self.size)
        if self.cursor is not None:
            self.cursor.check(AUDIT_LISTING, AUDIT_SORT, True)

    @classmethod
    def parse(
        cls,
        *,
        actor: str | None = None,
        action: str | None = None,
        size: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> AuditQuery:
        """The query from text as typed (blank filters match everything)."""
        return cls(
            actor=_text_filter("actor", actor, MAX_ACTOR_FILTER_LENGTH),
            action=_text_filter("action", action),
            size=size,
            cursor=_cursor(cursor, AUDIT_LISTING, AUDIT_SORT, True),
        )
