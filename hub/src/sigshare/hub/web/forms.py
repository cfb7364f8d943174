"""What the console accepts from a request: listing queries, page sizes, record ids.

A listing's filters, order and cursor become the one :class:`~sigshare.hub.listing.RecordQuery`
or :class:`~sigshare.hub.listing.AuditQuery` the services take. Filters that cannot match
anything valid and page tokens this hub did not issue for the order asked are refused
(:class:`InvalidArgumentError`, shown as a 400 page); an unknown order or page size falls back to
the default, and parameters a listing does not read are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sigshare.hub.domain import RecordType
from sigshare.hub.errors import NotFoundError
from sigshare.hub.listing import MAX_PAGE_SIZE, SORTS, AuditQuery, RecordQuery

RECORD_ID = re.compile(r"[0-9a-f]{32}")
PAGE_SIZES = (25, 50, 100, 200, 500)
DEFAULT_PAGE_SIZE = 50
AUDIT_PAGE_SIZE = 100

assert max(PAGE_SIZES) <= MAX_PAGE_SIZE


def page_size(value: str, default: int = DEFAULT_PAGE_SIZE) -> int:
    """Rows per page: ``default`` unless ``value`` is a number, at most the largest choice."""
    if not value.isdigit():
        return default
    return min(max(int(value), 1), max(PAGE_SIZES))


def record_query(
    record_type: RecordType, params: Mapping[str, str], *, scope_name: str
) -> RecordQuery:
    """The review listing ``params`` ask for; ``scope_name`` is the kind or family parameter.
    The first sort key (newest first) is the default order."""
    sorts = SORTS[record_type]
    sort = params.get("sort", "")
    return RecordQuery.parse(
        record_type,
        scope=params.get(scope_name, ""),
        status=params.get("status", ""),
        category=params.get("category", ""),
        assignee=params.get("assignee", ""),
        sort=sort if sort in sorts else sorts[0],
        descending=params.get("order", "desc") != "asc",
        size=page_size(params.get("size", "")),
        cursor=params.get("cursor", ""),
    )


def record_link(query: RecordQuery, *, scope_name: str) -> dict[str, Any]:
    """The listing as query parameters for links: the filters, order and page size (each link
    adds its cursor)."""
    return {
        scope_name: query.scope or "",
        "status": "" if query.status is None else query.status.value,
        "category": query.category or "",
        "assignee": query.assignee or "",
        "sort": query.sort,
        "order": "desc" if query.descending else "asc",
        "size": query.size,
    }


def audit_query(*, actor: str, action: str, cursor: str, size: str) -> AuditQuery:
    """The audit log search asked for: actor, action, page size and cursor."""
    return AuditQuery.parse(
        actor=actor, action=action, size=page_size(size, AUDIT_PAGE_SIZE), cursor=cursor
    )


def audit_link(query: AuditQuery) -> dict[str, Any]:
    """The search as query parameters for links (each link adds its cursor)."""
    return {"actor": query.actor or "", "action": query.action or "", "size": query.size}


def record_id(value: str) -> str:
    """``value`` if it has the form of a record id; otherwise no such record."""
    if RECORD_ID.fullmatch(value) is None:
        raise NotFoundError("indicator or campaign", value[:40])
    return value
