"""Exports of the coordinators' review records: CSV, JSON and a STIX 2.1 bundle.

An export holds every shared indicator and every active campaign, read page by page through
the review workflow's listings — the same records, with the same policy applied, that the
console and ``sigshare-hub review`` show. So it carries opaque ids and aggregates only: never a
token, a raw value, a prompt text or a member's cluster id; the names of the members behind an
indicator only where the kind's policy reveals them, and those of the members a campaign spans
only where the family's policy does (an export leaves the hub: unlike the console, it follows
the policy for campaigns too, their number of members always given). Every export is recorded
in the audit log.

The STIX bundle is described in ``docs/stix-extension.md``: a hub identity, the official TLP 2.0
marking definition, the ``sigshare`` property extension, one indicator and one sighting per
shared indicator, one campaign per campaign (with the first and last seen of its clusters).
Object ids are derived from the records' opaque ids, so exporting again yields the same ids
(and a new ``modified`` only where a record changed).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeVar, get_args

from sqlalchemy.orm import Session

from sigshare.hub.domain import Campaign, RecordType, ReviewStatus, SharedIndicator, utc
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.listing import MAX_PAGE_SIZE, Page, RecordQuery
from sigshare.hub.services import campaigns as campaign_service
from sigshare.hub.services import reviews
from sigshare.hub.services.reveal import RevealPolicy
from sigshare.hub.storage.audit import AuditRepository

ExportFormat = Literal["csv", "json", "stix"]
Tlp = Literal["clear", "green", "amber", "amber+strict", "red"]
EXPORT_FORMATS: Final[tuple[str, ...]] = get_args(ExportFormat)
TLP_LEVELS: Final[tuple[str, ...]] = get_args(Tlp)
DEFAULT_TLP: Final[Tlp] = "amber"
PAGE_SIZE: Final = MAX_PAGE_SIZE
EXPORT_ACTION: Final = "export"

MEDIA_TYPES: Final[dict[str, str]] = {
    "csv": "text/csv; charset=utf-8; header=present",
    "json": "application/json",
    "stix": "application/stix+json;version=2.1",
}
SUFFIXES: Final[dict[str, str]] = {"csv": "csv", "json": "json", "stix": "stix.json"}

# ---------------------------------------------------------------------------------- STIX

STIX_NAMESPACE: Final = uuid.UUID("8f4b7d0e-2f0c-4c35-9d8e-6a1f3c5b9e21")
"""Fixed namespace of every object id the hub derives (see :func:`stix_id`). Never change it:
consumers recognise re-exported objects by their ids."""
EXTENSION_ID: Final = "extension-definition--3b9f2c6e-8d41-4f0a-9c57-1e2d7a6b5f90"
"""The sigshare property extension (``docs/stix-extension.md``); fixed for its version 1."""
EXTENSION_VERSION: Final = "1.1.0"
"""The version of the extension's properties (``docs/stix-extension.md`` describes each one)."""
EXTENSION_SCHEMA: Final = "https://sigshare.example/docs/stix-extension"
EXTENSION_CREATED: Final = "2026-11-27T00:00:00.000Z"
EXTENSION_MODIFIED: Final = "2026-12-03T00:00:00.000Z"
"""When :data:`EXTENSION_VERSION` was published: the definition object's ``modified``."""
OBSERVABLE_TYPE: Final = "x-sigshare-indicator"
"""The custom observable type indicator patterns name (declared by the sigshare extension): its
one property, ``record_id``, is the shared indicator's opaque id."""
HUB_NAME: Final = "sigshare hub"

TLP_EXTENSION_ID: Final = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
"""OASIS's TLP 2.0 marking extension (cti-stix-common-objects, tlp-2.0)."""
TLP_MARKING_IDS: Final[dict[str, str]] = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP_MARKING_CREATED: Final = "2022-10-01T00:00:00.000Z"

# ---------------------------------------------------------------------------------- CSV

CSV_COLUMNS: Final = (
    "record_type",
    "id",
    "kind",
    "family",
    "reporters",
    "reporter_names",
    "member_count",
    "members",
    "similarity",
    "volume",
    "categories",
    "first_seen",
    "last_seen",
    "status",
    "assignee",
    "created_at",
    "updated_at",
)
LIST_SEPARATOR: Final = ";"
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet treats a cell starting with one of these as a formula (OWASP's list)."""


@dataclass(frozen=True, slots=True)
class ExportDocument:
    """An export, ready to be written or served."""

    content: bytes
    media_type: str
    filename: str
    indicators: int = 0
    campaigns: int = 0


def export_document(
    session: Session,
    fmt: ExportFormat,
    now: datetime,
    *,
    actor: str,
    tlp: Tlp = DEFAULT_TLP,
) -> ExportDocument:
    """Every shared indicator and active campaign as ``fmt``, audited as ``actor``'s export.

    ``tlp`` marks the STIX bundle's objects (CSV and JSON carry no marking). Campaigns are
    brought up to date first, as every coordinator read of campaigns does.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidArgumentError(f"cannot export as {fmt!r}: use {', '.join(EXPORT_FORMATS)}")
    if tlp not in TLP_LEVELS:
        raise InvalidArgumentError(f"unknown TLP level {tlp!r}: use {', '.join(TLP_LEVELS)}")
    moment = utc(now)
    campaign_service.refresh(session, moment)
    indicators = all_indicators(session)
    campaigns = all_campaigns(session)
    if fmt == "csv":
        content = csv_bytes(indicators, campaigns)
    elif fmt == "json":
        content = json_bytes(indicators, campaigns, moment)
    else:
        content = stix_bytes(indicators, campaigns, tlp)
    AuditRepository(session).append(
        actor,
        EXPORT_ACTION,
        fmt,
        {"indicators": len(indicators), "campaigns": len(campaigns)},
        at=moment,
    )
    return ExportDocument(
        content=content,
        media_type=MEDIA_TYPES[fmt],
        filename=f"sigshare-export-{moment:%Y%m%dT%H%M%SZ}.{SUFFIXES[fmt]}",
        indicators=len(indicators),
        campaigns=len(campaigns),
    )


_Record = TypeVar("_Record", SharedIndicator, Campaign)


def _every_page(
    record_type: RecordType, read: Callable[[RecordQuery], Page[_Record]]
) -> list[_Record]:
    """Every record, oldest first, read in pages of :data:`PAGE_SIZE` from cursor to cursor."""
    records: list[_Record] = []
    cursor: str | None = None
    while True:
        query = RecordQuery.parse(
            record_type, sort="created", descending=False, size=PAGE_SIZE, cursor=cursor
        )
        page = read(query)
        records += page.items
        if page.next_cursor is None:
            return records
        cursor = page.next_cursor


def all_indicators(session: Session) -> list[SharedIndicator]:
    """Every shared indicator in creation order, as the review workflow lists them: no token,
    reporter names only where the kind's policy reveals members."""
    records = _every_page(RecordType.INDICATOR, lambda query: reviews.indicators(session, query))
    if any(record.token for record in records):  # the listing's promise, checked where it counts
        raise AssertionError("review listings must not carry tokens")
    return records


def all_campaigns(session: Session) -> list[Campaign]:
    """Every active campaign in creation order, its members named only where the family's
    policy reveals members."""
    reveal = RevealPolicy.current(session)
    records = _every_page(RecordType.CAMPAIGN, lambda query: reviews.campaigns(session, query))
    return [reveal.campaign(record) for record in records]


# ---------------------------------------------------------------------------------- records


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc(moment).isoformat()


def indicator_record(indicator: SharedIndicator) -> dict[str, Any]:
    """What an export says about a shared indicator (JSON and CSV alike)."""
    return {
        "id": indicator.id,
        "kind": indicator.kind,
        "reporters": indicator.reporters,
        "reporter_names": list(indicator.reporter_names),
        "categories": list(indicator.categories),
        "first_seen": _iso(indicator.first_seen),
        "last_seen": _iso(indicator.last_seen),
        "status": indicator.status.value,
        "assignee": indicator.assignee,
        "created_at": _iso(indicator.created_at),
        "updated_at": _iso(indicator.updated_at),
    }


def campaign_record(campaign: Campaign) -> dict[str, Any]:
    """What an export says about a campaign (JSON and CSV alike)."""
    return {
        "id": campaign.id,
        "family": campaign.family,
        "member_count": campaign.member_count,
        "members": list(campaign.members),
        "similarity": campaign.similarity,
        "volume": campaign.volume,
        "categories": list(campaign.categories),
        "first_seen": _iso(campaign.first_seen),
        "last_seen": _iso(campaign.last_seen),
        "status": campaign.status.value,
        "assignee": campaign.assignee,
        "created_at": _iso(campaign.created_at),
        "updated_at": _iso(campaign.updated_at),
    }


# ---------------------------------------------------------------------------------- JSON


def json_bytes(
    indicators: Sequence[SharedIndicator], campaigns: Sequence[Campaign], now: datetime
) -> bytes:
    document = {
        "generated_at": _iso(now),
        "indicators": [indicator_record(i) for i in indicators],
        "campaigns": [campaign_record(c) for c in campaigns],
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------------------------- CSV


def csv_cell(value: object) -> str:
    """One cell: lists joined with ``;``, nothing for ``None``, and a leading ``'`` before
    anything a spreadsheet would run as a formula (CSV injection)."""
    if value is None:
        text = ""
    elif isinstance(value, list | tuple):
        text = LIST_SEPARATOR.join(str(item) for item in value)
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_bytes(indicators: Sequence[SharedIndicator], campaigns: Sequence[Campaign]) -> bytes:
    """RFC 4180 CSV (CRLF line ends, fields quoted where needed), UTF-8 without a BOM."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    rows = [{"record_type": "indicator", **indicator_record(i)} for i in indicators]
    rows += [{"record_type": "campaign", **campaign_record(c)} for c in campaigns]
    for row in rows:
        writer.writerow([csv_cell(row.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue().encode()


# ---------------------------------------------------------------------------------- STIX


def stix_id(object_type: str, name: str) -> str:
    """``object_type--UUID``, the UUID derived from ``name`` and :data:`STIX_NAMESPACE`.

    The UUIDv5 of ``name`` with its version nibble set to 4: as stable as a UUIDv5 (the same
    record always gets the same id), yet of the version STIX recommends for domain, relationship
    and meta objects. The names hashed are random opaque record ids, so the result is as
    unpredictable as a random UUIDv4 to anyone without the records.
    """
    derived = uuid.uuid5(STIX_NAMESPACE, f"{object_type}:{name}")
    return f"{object_type}--{uuid.UUID(bytes=derived.bytes, version=4)}"


def stix_time(moment: datetime) -> str:
    """STIX timestamps: UTC, millisecond precision, ``Z``."""
    moment = utc(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


HUB_IDENTITY_ID: Final = stix_id("identity", HUB_NAME)


def tlp_marking(tlp: Tlp) -> dict[str, Any]:
    """The official TLP 2.0 marking-definition object for ``tlp``, exactly as OASIS publishes it
    (so it carries no ``created_by_ref``: the hub did not create it)."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP_MARKING_IDS[tlp],
        "created": TLP_MARKING_CREATED,
        "name": f"TLP:{tlp.upper()}",
        "extensions": {
            TLP_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": tlp},
        },
    }


def _common(
    object_type: str, object_id: str, created: str, modified: str, tlp: Tlp
) -> dict[str, Any]:
    return {
        "type": object_type,
        "spec_version": "2.1",
        "id": object_id,
        "created_by_ref": HUB_IDENTITY_ID,
        "created": created,
        "modified": modified,
        "object_marking_refs": [TLP_MARKING_IDS[tlp]],
    }


def _extension(properties: dict[str, Any]) -> dict[str, Any]:
    """The sigshare property extension, without empty lists and unknown values."""
    kept = {k: v for k, v in properties.items() if v is not None and v != []}
    return {EXTENSION_ID: {"extension_type": "property-extension", **kept}}


def hub_objects(tlp: Tlp) -> list[dict[str, Any]]:
    """The hub's identity, the TLP marking and the sigshare extension's definition."""
    identity = _common("identity", HUB_IDENTITY_ID, EXTENSION_CREATED, EXTENSION_CREATED, tlp)
    identity |= {
        "name": HUB_NAME,
        "description": "The sigshare hub of an industry forum: it intersects member firms' "
        "keyed sketches and publishes opaque shared indicators and campaigns.",
        "identity_class": "system",
    }
    extension = _common(
        "extension-definition", EXTENSION_ID, EXTENSION_CREATED, EXTENSION_MODIFIED, tlp
    )
    extension |= {
        "name": "sigshare review fields",
        "description": "Forum review fields of sigshare shared indicators and campaigns: "
        "indicator kind or fingerprint family, reporters, members and their number, "
        "categories, similarity, "
        "volume, review status and assignee. Never raw values.",
        "schema": EXTENSION_SCHEMA,
        "version": EXTENSION_VERSION,
        # new-sco: the definition also declares the custom observable type the indicator
        # patterns name, so that type is defined by an extension as STIX 2.1 asks.
        "extension_types": ["new-sco", "property-extension"],
    }
    return [identity, tlp_marking(tlp), extension]


def _indicator_types(status: ReviewStatus) -> list[str]:
    return ["malicious-activity"] if status is ReviewStatus.CONFIRMED else ["anomalous-activity"]


def _members_text(count: int, names: Sequence[str]) -> str:
    """``3 forum members``, and their names where the policy reveals them."""
    text = f"{count} forum members"
    return f"{text} ({', '.join(names)})" if names else text


def _seen(first_seen: datetime | None, last_seen: datetime | None) -> dict[str, str]:
    """``first_seen`` and ``last_seen`` where known; a last seen before the first seen (dates
    members gave are not checked against each other) is left out, as STIX requires."""
    seen = {}
    if first_seen is not None:
        seen["first_seen"] = stix_time(first_seen)
    if last_seen is not None and (first_seen is None or last_seen >= first_seen):
        seen["last_seen"] = stix_time(last_seen)
    return seen


def indicator_objects(indicator: SharedIndicator, tlp: Tlp) -> list[dict[str, Any]]:
    """The STIX indicator of a shared indicator and the sighting that counts its reporters."""
    created = stix_time(indicator.created_at)
    modified = stix_time(max(indicator.updated_at, indicator.created_at))
    indicator_id = stix_id("indicator", indicator.id)
    stix_indicator = _common("indicator", indicator_id, created, modified, tlp)
    stix_indicator |= {
        "name": f"sigshare {indicator.kind} indicator {indicator.id}",
        "description": (
            f"An indicator of kind {indicator.kind} that at least the forum's quorum of "
            "members hold, reported by "
            f"{_members_text(indicator.reporters, indicator.reporter_names)}; review status "
            f"{indicator.status.value}. Only its opaque sigshare id is shared, never the value."
        ),
        "indicator_types": _indicator_types(indicator.status),
        "pattern": f"[{OBSERVABLE_TYPE}:record_id = '{indicator.id}']",
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": stix_time(indicator.first_seen or indicator.created_at),
        "extensions": _extension(
            {
                "record_id": indicator.id,
                "kind": indicator.kind,
                "reporters": indicator.reporters,
                "reporter_names": list(indicator.reporter_names),
                "categories": list(indicator.categories),
                "review_status": indicator.status.value,
                "assignee": indicator.assignee,
            }
        ),
    }
    sighting = _common("sighting", stix_id("sighting", indicator.id), created, modified, tlp)
    sighting |= {"sighting_of_ref": indicator_id, "count": indicator.reporters}
    sighting |= _seen(indicator.first_seen, indicator.last_seen)
    return [stix_indicator, sighting]


def campaign_object(campaign: Campaign, tlp: Tlp) -> dict[str, Any]:
    """The STIX campaign of a campaign: its members' names only as the caller left them (the
    export applies the family's policy first)."""
    created = stix_time(campaign.created_at)
    modified = stix_time(max(campaign.updated_at, campaign.created_at))
    stix_campaign = _common("campaign", stix_id("campaign", campaign.id), created, modified, tlp)
    stix_campaign |= {
        "name": f"sigshare {campaign.family} campaign {campaign.id}",
        "description": (
            f"Near-duplicate prompt clusters (fingerprint family {campaign.family}) of "
            f"{_members_text(campaign.member_count, campaign.members)}, estimated "
            f"Jaccard similarity at least {campaign.similarity:.2f}, {campaign.volume} prompts "
            f"in all; review status {campaign.status.value}. No prompt text is shared."
        ),
        **_seen(campaign.first_seen, campaign.last_seen),
        "extensions": _extension(
            {
                "record_id": campaign.id,
                "family": campaign.family,
                "member_count": campaign.member_count,
                "members": list(campaign.members),
                "similarity": campaign.similarity,
                "volume": campaign.volume,
                "categories": list(campaign.categories),
                "review_status": campaign.status.value,
                "assignee": campaign.assignee,
            }
        ),
    }
    return stix_campaign


def stix_bundle(
    indicators: Sequence[SharedIndicator],
    campaigns: Sequence[Campaign],
    tlp: Tlp = DEFAULT_TLP,
) -> dict[str, Any]:
    objects = hub_objects(tlp)
    for indicator in indicators:
        objects += indicator_objects(indicator, tlp)
    objects += [campaign_object(campaign, tlp) for campaign in campaigns]
    # Content-addressed: the same objects make the same bundle, any change a new one.
    digest = hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()
    return {"type": "bundle", "id": stix_id("bundle", digest), "objects": objects}


def stix_bytes(
    indicators: Sequence[SharedIndicator],
    campaigns: Sequence[Campaign],
    tlp: Tlp = DEFAULT_TLP,
) -> bytes:
    bundle = stix_bundle(indicators, campaigns, tlp)
    return (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode()
