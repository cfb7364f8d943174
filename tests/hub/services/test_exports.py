"""Exports of the review records (CSV, JSON, STIX 2.1) on both databases, against a forum
seeded through the hub's services with known raw values and prompts
(:mod:`tests.support.review_seed`).

The STIX bundle is checked with ``stix2-validator`` — offline, every remote lookup refused —
and must have zero errors and zero warnings, with strict checking and references enforced.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import Engine
from stix2validator import ValidationOptions, validate_string  # type: ignore[import-untyped]

from sigshare.hub.domain import Campaign, RecordType, ReviewStatus
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.listing import AuditQuery, RecordQuery
from sigshare.hub.services import exports, reviews
from sigshare.hub.services.audit import search_audit_log, verify_audit_log
from sigshare.hub.services.exports import (
    CSV_COLUMNS,
    EXTENSION_ID,
    TLP_LEVELS,
    TLP_MARKING_IDS,
    ExportDocument,
    csv_cell,
    export_document,
    stix_id,
)
from sigshare.hub.storage import session_scope
from tests.support.hub import (
    COORDINATOR,
    EMAIL,
    PROMPT,
    provision,
    set_email_policy,
    set_prompt_policy,
)
from tests.support.review_seed import (
    CATEGORIES,
    EMAILS,
    SEEN,
    SeededForum,
    expected_campaign_seen,
    expected_categories,
    seed_forum,
)

NOW = datetime(2026, 11, 27, 4, 30, 0, 250000, tzinfo=UTC)
ACTOR = "coord"
STIX_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TIME_PROPERTIES = ("created", "modified", "valid_from", "first_seen", "last_seen")
MEMBER_INDEX = {"m1": 0, "m2": 1, "m3": 2, "m4": 3}


@pytest.fixture
def forum(engine: Engine) -> SeededForum:
    return seed_forum(engine)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The validator must never fetch anything (schemas, extension definitions)."""

    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)


def export(engine: Engine, fmt: exports.ExportFormat, **kwargs: Any) -> ExportDocument:
    now = kwargs.pop("now", NOW)
    with session_scope(engine) as session:
        return export_document(session, fmt, now, actor=ACTOR, **kwargs)


def listed(engine: Engine) -> tuple[list[Any], list[Any]]:
    """What the review listings show, in creation order."""
    with session_scope(engine) as session:
        indicators = reviews.indicators(
            session, RecordQuery(RecordType.INDICATOR, descending=False, size=500)
        ).items
        campaigns = reviews.campaigns(
            session, RecordQuery(RecordType.CAMPAIGN, descending=False, size=500)
        ).items
    return indicators, campaigns


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def expected_indicator(forum: SeededForum, record_id: str, record: Any) -> dict[str, Any]:
    """The export record of a shared indicator, from the raw value behind it."""
    holders = EMAILS[forum.value_of_id[record_id]]
    positions = [MEMBER_INDEX[m] for m in holders]
    return {
        "id": record_id,
        "kind": EMAIL,
        "reporters": len(holders),
        "reporter_names": [],
        "categories": expected_categories(holders),
        "first_seen": iso(SEEN + timedelta(days=min(positions))),
        "last_seen": iso(SEEN + timedelta(days=10 + max(positions))),
        "status": "new",
        "assignee": None,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
    }


def expected_campaign(record: Any, *, revealed: bool = False) -> dict[str, Any]:
    """The export record of a campaign (its members named only if ``revealed``: the prompt
    family's policy hides them by default); which template it is follows from its members."""
    template = {("m1", "m2"): 0, ("m1", "m3"): 1}[record.members]
    categories = ["-extraction", "t0"] if template == 0 else ["t1"]
    first_seen, last_seen = expected_campaign_seen(record.members)
    return {
        "id": record.id,
        "family": PROMPT,
        "member_count": len(record.members),
        "members": list(record.members) if revealed else [],
        "similarity": 1.0,
        "volume": 18,
        "categories": categories,
        "first_seen": iso(first_seen),
        "last_seen": iso(last_seen),
        "status": "new",
        "assignee": None,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
    }


# ---------------------------------------------------------------------------------- JSON


def test_json_export_is_exactly_the_review_records(engine: Engine, forum: SeededForum) -> None:
    indicators, campaigns = listed(engine)
    assert sorted(forum.value_of_id.values()) == forum.shared_values
    assert len(indicators) == 3
    assert sorted(c.members for c in campaigns) == [("m1", "m2"), ("m1", "m3")]
    document = export(engine, "json")
    expected = {
        "generated_at": "2026-11-27T04:30:00.250000+00:00",
        "indicators": [expected_indicator(forum, i.id, i) for i in indicators],
        "campaigns": [expected_campaign(c) for c in campaigns],
    }
    assert document.content == (json.dumps(expected, indent=2, ensure_ascii=False) + "\n").encode()
    assert (document.media_type, document.filename) == (
        "application/json",
        "sigshare-export-20261127T043000Z.json",
    )
    assert (document.indicators, document.campaigns) == (3, 2)


def test_reporter_names_appear_only_where_the_policy_reveals_them(
    engine: Engine, forum: SeededForum
) -> None:
    hidden = json.loads(export(engine, "json").content)
    assert all(record["reporter_names"] == [] for record in hidden["indicators"])
    set_email_policy(engine, reveal_members=True)
    shown = json.loads(export(engine, "json").content)
    assert {r["id"]: r["reporter_names"] for r in shown["indicators"]} == {
        record_id: sorted(EMAILS[value]) for record_id, value in forum.value_of_id.items()
    }
    # The prompt family's policy is the one for campaigns: it still hides their members.
    assert [c["members"] for c in shown["campaigns"]] == [[], []]


def test_campaign_members_appear_only_where_the_family_reveals_them_in_every_format(
    engine: Engine, forum: SeededForum
) -> None:
    _, campaigns = listed(engine)
    assert sorted(c.members for c in campaigns) == [("m1", "m2"), ("m1", "m3")]  # the console
    hidden = {fmt: export(engine, fmt).content.decode() for fmt in ("csv", "json", "stix")}
    set_prompt_policy(engine, reveal_members=True)
    shown = {fmt: export(engine, fmt).content.decode() for fmt in ("csv", "json", "stix")}

    for document, revealed in ((hidden, False), (shown, True)):
        records = json.loads(document["json"])["campaigns"]
        assert records == [expected_campaign(c, revealed=revealed) for c in campaigns]
        rows = list(csv.DictReader(io.StringIO(document["csv"], newline="")))
        assert [
            (r["member_count"], r["members"]) for r in rows if r["record_type"] == "campaign"
        ] == [("2", ";".join(c.members) if revealed else "") for c in campaigns]
        objects = json.loads(document["stix"])["objects"]
        for record in campaigns:
            stix = by_id({"objects": objects})[stix_id("campaign", record.id)]
            extension = stix["extensions"][EXTENSION_ID]
            assert extension["member_count"] == 2
            assert extension.get("members") == (list(record.members) if revealed else None)
            names = f" ({', '.join(record.members)})"
            assert ("of 2 forum members" + names in stix["description"]) is revealed
            assert "of 2 forum members" in stix["description"]
        assert_valid_stix(document["stix"])
    for fmt, text in hidden.items():
        assert not re.search(r"\bm[1-4]\b", text), f"{fmt} names a member"


def test_review_decisions_are_exported(engine: Engine, forum: SeededForum) -> None:
    indicators, campaigns = listed(engine)
    with session_scope(engine) as session:
        for status in (ReviewStatus.TRIAGED, ReviewStatus.CONFIRMED):
            reviews.set_status(
                session, actor=ACTOR, record_id=indicators[0].id, status=status, now=NOW
            )
        reviews.assign(
            session, actor=ACTOR, record_id=campaigns[1].id, assignee=COORDINATOR, now=NOW
        )
        reviews.set_status(
            session,
            actor=ACTOR,
            record_id=campaigns[1].id,
            status=ReviewStatus.DISMISSED,
            note="a benchmark run, not an extraction",
            now=NOW,
        )
    document = json.loads(export(engine, "json").content)
    assert [(r["status"], r["assignee"]) for r in document["indicators"]] == [
        ("confirmed", None),
        ("new", None),
        ("new", None),
    ]
    assert [(c["status"], c["assignee"]) for c in document["campaigns"]] == [
        ("new", None),
        ("dismissed", COORDINATOR),
    ]
    bundle = json.loads(export(engine, "stix").content)
    by_id = {o["id"]: o for o in bundle["objects"]}
    confirmed = by_id[stix_id("indicator", indicators[0].id)]
    assert confirmed["indicator_types"] == ["malicious-activity"]
    assert confirmed["extensions"][EXTENSION_ID]["review_status"] == "confirmed"
    assert by_id[stix_id("indicator", indicators[1].id)]["indicator_types"] == [
        "anomalous-activity"
    ]
    dismissed = by_id[stix_id("campaign", campaigns[1].id)]["extensions"][EXTENSION_ID]
    assert (dismissed["review_status"], dismissed["assignee"]) == ("dismissed", COORDINATOR)
    assert_valid_stix(json.dumps(bundle))


# ---------------------------------------------------------------------------------- CSV


def rfc4180(cell: str) -> str:
    """A field as RFC 4180 writes it: quoted (quotes doubled) if it holds , " CR or LF."""
    return f'"{cell.replace(chr(34), chr(34) * 2)}"' if re.search(r'[,"\r\n]', cell) else cell


def test_csv_export_is_exactly_the_review_records(engine: Engine, forum: SeededForum) -> None:
    indicators, campaigns = listed(engine)
    document = export(engine, "csv")
    lines = [",".join(CSV_COLUMNS)]
    for i in indicators:
        r = expected_indicator(forum, i.id, i)
        categories = ";".join(r["categories"])
        guarded = "'" + categories if categories[0] in "=+-@" else categories
        lines.append(
            ",".join(
                rfc4180(cell)
                for cell in [
                    "indicator",
                    r["id"],
                    "email",
                    "",
                    str(r["reporters"]),
                    "",
                    "",
                    "",
                    "",
                    "",
                    guarded,
                    r["first_seen"],
                    r["last_seen"],
                    "new",
                    "",
                    r["created_at"],
                    r["updated_at"],
                ]
            )
        )
    for c in campaigns:
        r = expected_campaign(c)
        categories = ";".join(r["categories"])
        guarded = "'" + categories if categories[0] in "=+-@" else categories
        lines.append(
            ",".join(
                rfc4180(cell)
                for cell in [
                    "campaign",
                    r["id"],
                    "",
                    PROMPT,
                    "",
                    "",
                    "2",
                    "",
                    "1.0",
                    "18",
                    guarded,
                    r["first_seen"],
                    r["last_seen"],
                    "new",
                    "",
                    r["created_at"],
                    r["updated_at"],
                ]
            )
        )
    assert document.content.decode() == "".join(line + "\r\n" for line in lines)
    assert not document.content.startswith(b"\xef\xbb\xbf"), "UTF-8 without a BOM"
    assert document.media_type == "text/csv; charset=utf-8; header=present"
    assert document.filename == "sigshare-export-20261127T043000Z.csv"
    # The seed's categories include formulas; the one for m1 holds quotes and commas.
    assert '"\'=HYPERLINK(""http://evil.example/x"",""click"");account-farm"' in (
        document.content.decode()
    )


def test_no_csv_cell_can_run_as_a_formula(engine: Engine, forum: SeededForum) -> None:
    rows = list(csv.reader(io.StringIO(export(engine, "csv").content.decode(), newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 1 + 3 + 2
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    categories = {cell for row in rows[1:] for cell in [row[CSV_COLUMNS.index("categories")]]}
    assert "'+rotating, cards;@risk" in categories  # guarded, and read back as it was written
    assert "'-extraction;t0" in categories


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+41 22 000", "'+41 22 000"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("safe=1", "safe=1"),
        (["=a", "b"], "'=a;b"),
        (["a", "=b"], "a;=b"),
        ([], ""),
        (None, ""),
        (3, "3"),
        (0.5, "0.5"),
    ],
)
def test_csv_cells_are_guarded_against_formula_injection(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


# ---------------------------------------------------------------------------------- STIX


def validation(content: str, **options: Any) -> tuple[bool, list[str], list[str]]:
    results = validate_string(content, ValidationOptions(version="2.1", **options))
    return results.is_valid, [str(e) for e in results.errors], list(results.warnings)


def assert_valid_stix(content: str) -> None:
    """Zero errors and zero warnings, then again with strict checks and references enforced."""
    assert validation(content) == (True, [], [])
    assert validation(content, strict=True, enforce_refs=True) == (True, [], [])


def test_the_validator_checks_against_its_schemas() -> None:
    """Guards the checks below: stix2-validator 3.3.1's wheels ship no schemas and then fail
    everything with "Cannot locate a schema" (oasis-open/cti-stix-validator#248); pin 3.2.0."""
    bundle = {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2026-01-01T00:00:00.000Z",
                "modified": "2026-01-01T00:00:00.000Z",
                "name": "n",
                "description": "d",
                "pattern_type": "stix",
                "valid_from": "2026-01-01T00:00:00.000Z",
            }
        ],
    }
    valid, errors, _ = validation(json.dumps(bundle))
    assert not [e for e in errors if "Cannot locate a schema" in e], errors
    assert not valid
    assert any("'pattern' is a required property" in e for e in errors), errors


@pytest.mark.parametrize("tlp", TLP_LEVELS)
def test_stix_bundle_validates_with_every_object_marked(
    engine: Engine, forum: SeededForum, tlp: exports.Tlp
) -> None:
    document = export(engine, "stix", tlp=tlp)
    assert document.media_type == "application/stix+json;version=2.1"
    assert document.filename == "sigshare-export-20261127T043000Z.stix.json"
    content = document.content.decode()
    assert_valid_stix(content)
    bundle = json.loads(content)
    objects = bundle["objects"]
    types = [o["type"] for o in objects]
    assert {t: types.count(t) for t in set(types)} == {
        "identity": 1,
        "marking-definition": 1,
        "extension-definition": 1,
        "indicator": 3,
        "sighting": 3,
        "campaign": 2,
    }
    marking = TLP_MARKING_IDS[tlp]
    (definition,) = [o for o in objects if o["type"] == "marking-definition"]
    assert definition == {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": marking,
        "created": "2022-10-01T00:00:00.000Z",
        "name": f"TLP:{tlp.upper()}",
        "extensions": {
            "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
                "extension_type": "property-extension",
                "tlp_2_0": tlp,
            }
        },
    }
    (identity,) = [o for o in objects if o["type"] == "identity"]
    for item in objects:
        if item["type"] == "marking-definition":
            continue
        assert item["object_marking_refs"] == [marking], item["id"]
        assert item["created_by_ref"] == identity["id"], item["id"]
        assert item["spec_version"] == "2.1"
        for name in TIME_PROPERTIES:
            if name in item:
                assert STIX_TIME.match(item[name]), (item["id"], name, item[name])


def test_stix_objects_describe_the_records(engine: Engine, forum: SeededForum) -> None:
    indicators, campaigns = listed(engine)
    objects = json.loads(export(engine, "stix").content)["objects"]
    by_id = {o["id"]: o for o in objects}
    (extension,) = [o for o in objects if o["type"] == "extension-definition"]
    assert extension["id"] == EXTENSION_ID
    assert extension["schema"] == "https://sigshare.example/docs/stix-extension"
    assert extension["extension_types"] == ["new-sco", "property-extension"]
    assert extension["version"] == "1.1.0"
    assert (extension["created"], extension["modified"]) == (
        "2026-11-27T00:00:00.000Z",
        "2026-12-03T00:00:00.000Z",
    )
    for record in indicators:
        value = forum.value_of_id[record.id]
        holders = EMAILS[value]
        positions = [MEMBER_INDEX[m] for m in holders]
        indicator = by_id[stix_id("indicator", record.id)]
        assert indicator["pattern"] == f"[x-sigshare-indicator:record_id = '{record.id}']"
        assert (indicator["pattern_type"], indicator["pattern_version"]) == ("stix", "2.1")
        first = SEEN + timedelta(days=min(positions))
        assert indicator["valid_from"] == first.strftime("%Y-%m-%dT%H:%M:%S.123Z")
        assert indicator["extensions"] == {
            EXTENSION_ID: {
                "extension_type": "property-extension",
                "record_id": record.id,
                "kind": EMAIL,
                "reporters": len(holders),
                "categories": expected_categories(holders),
                "review_status": "new",
            }
        }
        assert f"reported by {len(holders)} forum members" in indicator["description"]
        sighting = by_id[stix_id("sighting", record.id)]
        assert sighting["sighting_of_ref"] == indicator["id"]
        assert sighting["count"] == len(holders)
        last = SEEN + timedelta(days=10 + max(positions))
        assert (sighting["first_seen"], sighting["last_seen"]) == (
            first.strftime("%Y-%m-%dT%H:%M:%S.123Z"),
            last.strftime("%Y-%m-%dT%H:%M:%S.123Z"),
        )
    for record in campaigns:
        campaign = by_id[stix_id("campaign", record.id)]
        expected = expected_campaign(record)
        assert campaign["name"] == f"sigshare prompt campaign {record.id}"
        assert campaign["extensions"] == {
            EXTENSION_ID: {
                "extension_type": "property-extension",
                "record_id": record.id,
                "family": PROMPT,
                "member_count": 2,
                "similarity": 1.0,
                "volume": 18,
                "categories": expected["categories"],
                "review_status": "new",
            }
        }
        first, last = expected_campaign_seen(record.members)
        assert (campaign["first_seen"], campaign["last_seen"]) == (
            first.strftime("%Y-%m-%dT%H:%M:%S.123Z"),
            last.strftime("%Y-%m-%dT%H:%M:%S.123Z"),
        )
        assert campaign["description"].startswith(
            "Near-duplicate prompt clusters (fingerprint family prompt) of 2 forum members, "
        )


def test_a_campaign_last_seen_before_its_first_seen_is_left_out_of_stix() -> None:
    """Members' dates are not checked against each other; STIX requires last ≥ first."""
    moment = datetime(2026, 5, 1, tzinfo=UTC)
    campaign = Campaign(
        id="ab" * 16,
        family=PROMPT,
        member_count=2,
        members=(),
        similarity=0.9,
        volume=12,
        categories=(),
        first_seen=moment,
        last_seen=moment - timedelta(days=1),
        status=ReviewStatus.NEW,
        active=True,
        created_at=NOW,
        updated_at=NOW,
    )
    stix = exports.campaign_object(campaign, "amber")
    assert (stix["first_seen"], "last_seen" in stix) == ("2026-05-01T00:00:00.000Z", False)
    ordered = exports.campaign_object(replace(campaign, last_seen=moment), "amber")
    assert ordered["last_seen"] == ordered["first_seen"]
    bundle = exports.stix_bundle([], [campaign, replace(campaign, id="cd" * 16, first_seen=None)])
    assert_valid_stix(json.dumps(bundle))


def test_stix_ids_are_deterministic_and_of_the_recommended_version(
    engine: Engine, forum: SeededForum
) -> None:
    first = json.loads(export(engine, "stix").content)
    again = json.loads(export(engine, "stix", now=NOW + timedelta(hours=5)).content)
    assert first == again, "re-exporting unchanged records must give the same bundle"
    ids = [o["id"] for o in first["objects"]]
    assert len(set(ids)) == len(ids)
    for object_id in [first["id"], *ids]:
        if object_id.startswith("marking-definition--"):
            continue
        assert uuid.UUID(object_id.split("--")[1]).version == 4, object_id
    indicators, _ = listed(engine)
    namespace_id = uuid.uuid5(exports.STIX_NAMESPACE, f"indicator:{indicators[0].id}")
    assert stix_id("indicator", indicators[0].id) == (
        f"indicator--{uuid.UUID(bytes=namespace_id.bytes, version=4)}"
    )
    # A review decision changes that object's version, not its id.
    with session_scope(engine) as session:
        reviews.set_status(
            session,
            actor=ACTOR,
            record_id=indicators[0].id,
            status=ReviewStatus.TRIAGED,
            now=NOW + timedelta(hours=6),
        )
    changed = json.loads(export(engine, "stix", now=NOW + timedelta(hours=7)).content)
    assert [o["id"] for o in changed["objects"]] == ids
    assert changed["id"] != first["id"]
    before = by_id(first)
    modified = {o["id"]: o["modified"] for o in changed["objects"] if o != before[o["id"]]}
    target = stix_id("indicator", indicators[0].id)
    assert set(modified) == {target, stix_id("sighting", indicators[0].id)}
    assert modified[target] == "2026-11-27T10:30:00.250Z"


def by_id(bundle: dict[str, Any]) -> dict[str, Any]:
    return {o["id"]: o for o in bundle["objects"]}


def test_an_empty_hub_exports_valid_empty_documents(engine: Engine) -> None:
    provision(engine, now=NOW)
    assert export(engine, "csv").content == (",".join(CSV_COLUMNS) + "\r\n").encode()
    assert json.loads(export(engine, "json").content) == {
        "generated_at": iso(NOW),
        "indicators": [],
        "campaigns": [],
    }
    content = export(engine, "stix").content.decode()
    assert_valid_stix(content)
    assert [o["type"] for o in json.loads(content)["objects"]] == [
        "identity",
        "marking-definition",
        "extension-definition",
    ]


def test_exports_read_every_page(
    engine: Engine, forum: SeededForum, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = {fmt: export(engine, fmt).content for fmt in ("csv", "json", "stix")}
    monkeypatch.setattr(exports, "PAGE_SIZE", 2)
    assert {fmt: export(engine, fmt).content for fmt in ("csv", "json", "stix")} == whole


def test_unknown_formats_and_levels_are_refused(engine: Engine, forum: SeededForum) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot export as 'xml'"):
        export(engine, "xml")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="unknown TLP level 'white'"):
        export(engine, "stix", tlp="white")


# ---------------------------------------------------------------------------------- privacy


def test_no_raw_value_token_prompt_or_cluster_id_reaches_any_export(
    engine: Engine, forum: SeededForum
) -> None:
    documents = [export(engine, "csv"), export(engine, "json"), export(engine, "stix", tlp="red")]
    set_email_policy(engine, reveal_members=True)
    documents += [export(engine, fmt) for fmt in ("csv", "json", "stix")]
    forbidden = forum.forbidden_strings()
    assert len(forbidden) > 200
    for document in documents:
        text = document.content.decode()
        folded = text.casefold()
        leaked = [s for s in forbidden if s.casefold() in folded]
        assert not leaked, f"{document.filename} leaks {leaked[:3]}"
        assert not [b for b in forum.forbidden_bytes() if b in document.content]
        # Local parts of the raw addresses (the seed's fillers included) never appear either.
        assert "rawvalue" not in folded


# ---------------------------------------------------------------------------------- audit


def test_every_export_is_audited(engine: Engine, forum: SeededForum) -> None:
    for fmt in ("csv", "json", "stix"):
        export(engine, fmt)
    with session_scope(engine) as session:
        entries = search_audit_log(session, AuditQuery(action="export", size=10)).items
        assert verify_audit_log(session).head is not None
    assert [(e.actor, e.action, e.target, e.details, e.at) for e in reversed(entries)] == [
        (ACTOR, "export", fmt, {"indicators": 3, "campaigns": 2}, NOW)
        for fmt in ("csv", "json", "stix")
    ]


def test_categories_of_the_seed_exercise_the_guard() -> None:
    """The seed must keep categories that would run as formulas, or the CSV tests prove little."""
    assert sum(value[0] in "=+-@" for value in CATEGORIES.values()) == 3
