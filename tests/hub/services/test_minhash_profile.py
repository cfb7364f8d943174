"""MinHash families' profile (issue 11): the recommended profile for new families, options that
keep their stored value, ``params upgrade-minhash``, the new fields over gRPC, and campaign ids
and review decisions carried across a profile migration by the members' cluster ids.

Everything runs on SQLite and PostgreSQL. A family "published before 0005" is stored as
migration 0005 leaves it: word 3-shingles, stopwords kept, core rules 1, no cluster threshold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubClient
from sigshare.hub.domain import MinHashParameters, Principal, RecordType, ReviewStatus
from sigshare.hub.errors import InvalidArgumentError
from sigshare.hub.listing import RecordQuery
from sigshare.hub.rpc.convert import cluster_set
from sigshare.hub.services import member_views, parameters, reviews
from sigshare.hub.services.parameters import RECOMMENDED_MINHASH, MinHashProfile
from sigshare.hub.services.submissions import UploadHeader
from sigshare.hub.services.submissions import submit_clusters as submit_cluster_set
from sigshare.hub.storage import make_engine, session_scope
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.database import DATABASE_URL_ENV
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.sketch.codec import SketchFormat
from sigshare.sketch.lsh import optimal_banding
from sigshare.sketch.minhash import MinHashParams, estimate_jaccard
from sigshare.v1 import hub_pb2 as pb
from tests.support.cli import invoke_hub, invoke_hub_json, table_cells
from tests.support.hub import (
    ADMIN,
    COORDINATOR,
    KEY_ID,
    PROMPT,
    PROMPT_THRESHOLD,
    ClusterUpload,
    RunningHub,
    cluster_upload,
    forum_secret,
    prompt_forum,
    provision,
    running_hub,
    submit_clusters,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
ACTOR = "cli:alice"
TIMEOUT = 30.0


def recommended_digest(key_id: str) -> bytes:
    """The digest of the recommended profile's signatures in key epoch ``key_id``."""
    return MinHashParams(key_id, shingle_size=1, drop_stopwords=True, core_rules=2).digest()


def old_family(family: str, key_id: str, now: datetime, **policy: Any) -> MinHashParameters:
    """A family as migration 0005 leaves one published before it (the old defaults)."""
    return MinHashParameters(
        family=family, key_id=key_id, threshold=PROMPT_THRESHOLD, updated_at=now, **policy
    )


def test_a_family_published_before_0005_keeps_its_old_digest() -> None:
    old = old_family(PROMPT, KEY_ID, T0)
    assert (old.shingle_unit, old.shingle_size, old.drop_stopwords, old.core_rules) == (
        "word",
        3,
        False,
        1,
    )
    assert (old.cluster_threshold, old.member_threshold) == (None, PROMPT_THRESHOLD)
    assert old.digest() == MinHashParams(KEY_ID).digest()


# ---------------------------------------------------------------------------------- service


def _set(engine: Engine, **options: Any) -> MinHashParameters:
    arguments: dict[str, Any] = {"actor": ACTOR, "family": PROMPT, "now": T0, **options}
    with session_scope(engine) as session:
        return parameters.set_minhash_parameters(session, **arguments)


def _stored(engine: Engine) -> list[MinHashParameters]:
    with session_scope(engine) as session:
        return ParameterRepository(session).list_minhash_families()


def _audit(engine: Engine) -> list[tuple[str, str, str, dict[str, Any]]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT actor, action, target, details FROM audit_log ORDER BY id")
        ).all()
    return [(row.actor, row.action, row.target, json.loads(row.details)) for row in rows]


CUSTOM = {
    "key_id": "k7",
    "num_perm": 64,
    "shingle_unit": "word",
    "shingle_size": 2,
    "drop_stopwords": False,
    "core_rules": 1,
    "threshold": 0.6,
    "cluster_threshold": 0.7,
    "quorum": 3,
    "retention_days": 10,
    "reveal_members": True,
}
"""Every option of a family, none at its recommended or default value."""


def test_a_new_family_without_options_gets_the_recommended_profile(engine: Engine) -> None:
    stored = _set(engine, key_id="k1")

    assert (
        MinHashProfile.of(stored)
        == RECOMMENDED_MINHASH
        == MinHashProfile(
            num_perm=128,
            shingle_unit="word",
            shingle_size=1,
            drop_stopwords=True,
            core_rules=2,
            threshold=0.25,
            cluster_threshold=0.5,
        )
    )
    assert (stored.key_id, stored.quorum, stored.retention_days, stored.reveal_members) == (
        "k1",
        2,
        30,
        False,
    )
    assert stored.member_threshold == 0.5
    assert stored.banding() == optimal_banding(0.25, 128)
    assert stored.digest() == recommended_digest("k1")
    assert _stored(engine) == [stored]


def test_the_key_id_is_required_for_a_new_family_only(engine: Engine) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        _set(engine, threshold=0.4)
    assert str(caught.value) == "MinHash family 'prompt' is new: give its key id"
    assert (_stored(engine), _audit(engine)) == ([], [])

    first = _set(engine, key_id="k1")
    again = _set(engine, threshold=0.4, now=T1)
    assert again == dataclasses.replace(first, threshold=0.4, updated_at=T1)


def test_options_left_out_keep_their_stored_values(engine: Engine) -> None:
    first = _set(engine, **CUSTOM)
    assert {f: getattr(first, f) for f in CUSTOM} == CUSTOM

    # One option at a time: every other one stays as stored.
    changes: list[dict[str, Any]] = [
        {"threshold": 0.45},
        {"cluster_threshold": 0.8},
        {"drop_stopwords": True},
        {"core_rules": 2},
        {"shingle_size": 4},
        {"quorum": 4},
    ]
    current = first
    for change in changes:
        updated = _set(engine, now=T1, **change)
        assert updated == dataclasses.replace(current, updated_at=T1, **change), change
        current = updated
    assert _stored(engine) == [current]


def test_character_shingles_keep_stopwords_unless_told_otherwise(engine: Engine) -> None:
    _set(engine, key_id="k1")  # the recommended profile drops stopwords
    updated = _set(engine, shingle_unit="char", shingle_size=5, now=T1)
    assert (updated.shingle_unit, updated.shingle_size, updated.drop_stopwords) == (
        "char",
        5,
        False,
    )
    assert (updated.core_rules, updated.threshold) == (2, 0.25)


def test_a_profile_replaces_signature_and_matching_options_and_keeps_key_and_policy(
    engine: Engine,
) -> None:
    custom = _set(engine, **{**CUSTOM, "shingle_unit": "char", "shingle_size": 5})

    upgraded = _set(engine, profile=RECOMMENDED_MINHASH, now=T1)
    assert MinHashProfile.of(upgraded) == RECOMMENDED_MINHASH
    assert (upgraded.key_id, upgraded.quorum, upgraded.retention_days) == ("k7", 3, 10)
    assert upgraded.reveal_members
    assert upgraded.updated_at == T1
    assert parameters.invalidates_sketches(custom, upgraded)
    assert _stored(engine) == [upgraded]

    # Once there, the same profile again changes nothing members sketch with.
    again = _set(engine, profile=RECOMMENDED_MINHASH, now=T1 + timedelta(hours=1))
    assert dataclasses.replace(again, updated_at=T1) == upgraded
    assert not parameters.invalidates_sketches(upgraded, again)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"core_rules": 3}, "core rules must be one of [1, 2], got 3"),
        ({"cluster_threshold": 1.5}, "cluster threshold must be in (0, 1), got 1.5"),
        ({"cluster_threshold": 0.0}, "cluster threshold must be in (0, 1), got 0.0"),
        (
            {"shingle_unit": "char", "drop_stopwords": True},
            "stopwords can only be dropped from word shingles",
        ),
        ({"threshold": 0.0}, "threshold must be in (0, 1), got 0.0"),
    ],
)
def test_invalid_values_are_refused_and_change_nothing(
    engine: Engine, options: dict[str, Any], message: str
) -> None:
    # threshold 0 is not "left out" in the service (only None is): it is refused.
    stored = _set(engine, key_id="k1")
    audit = _audit(engine)

    with pytest.raises(InvalidArgumentError) as caught:
        _set(engine, now=T1, **options)
    assert str(caught.value) == message
    assert _stored(engine) == [stored]
    assert _audit(engine) == audit


def test_a_char_family_refuses_to_drop_stopwords(engine: Engine) -> None:
    stored = _set(engine, key_id="k1", shingle_unit="char", shingle_size=5)
    with pytest.raises(InvalidArgumentError, match="only be dropped from word shingles"):
        _set(engine, drop_stopwords=True, now=T1)
    assert _stored(engine) == [stored]


def test_setting_a_family_audits_every_published_value(engine: Engine) -> None:
    stored = _set(engine, **CUSTOM)
    upgraded = _set(engine, profile=RECOMMENDED_MINHASH, now=T1)

    banding, recommended_banding = optimal_banding(0.6, 64), optimal_banding(0.25, 128)
    policy = {"quorum": 3, "retention_days": 10, "reveal_members": True}
    assert _audit(engine) == [
        (
            ACTOR,
            "params.set",
            "minhash:prompt",
            {
                "key_id": "k7",
                "num_perm": 64,
                "shingle_unit": "word",
                "shingle_size": 2,
                "drop_stopwords": False,
                "core_rules": 1,
                "threshold": 0.6,
                "cluster_threshold": 0.7,
                "bands": banding.bands,
                "rows": banding.rows,
                **policy,
                "digest": stored.digest().hex(),
            },
        ),
        (
            ACTOR,
            "params.set",
            "minhash:prompt",
            {
                "key_id": "k7",
                "num_perm": 128,
                "shingle_unit": "word",
                "shingle_size": 1,
                "drop_stopwords": True,
                "core_rules": 2,
                "threshold": 0.25,
                "cluster_threshold": 0.5,
                "bands": recommended_banding.bands,
                "rows": recommended_banding.rows,
                **policy,
                "digest": upgraded.digest().hex(),
            },
        ),
    ]
    with session_scope(engine) as session:
        assert AuditRepository(session).verify() == 2


def test_an_old_family_audits_its_member_threshold(engine: Engine) -> None:
    with session_scope(engine) as session:
        ParameterRepository(session).set_minhash_family(old_family(PROMPT, "k1", T0))
    updated = _set(engine, threshold=0.3, now=T1)
    # No cluster threshold of its own: members cluster at the family's threshold, as before.
    assert (updated.cluster_threshold, updated.member_threshold) == (None, 0.3)
    assert _audit(engine)[-1][3]["cluster_threshold"] == 0.3


# ---------------------------------------------------------------------------------- CLI


@pytest.fixture
def _operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run as local user ``alice``, whatever the test machine's user is."""
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)


OLD_PROFILE_OPTIONS = ["--shingle-size", "3", "--keep-stopwords", "--core-rules", "1"]
OLD_PROFILE_OPTIONS += ["--threshold", "0.5"]
RESUBMIT_NOTE = (
    "members must resubmit. Tell them: \"the forum's {family} parameters changed; your next "
    "`sigshare sync` (tonight's run) resubmits your clusters — nothing to do unless you pinned "
    'an old client, which refuses the new digest: upgrade it first." Campaigns reappear as '
    "members resubmit.\n"
)


def recommended_document(family: str, key_id: str, **policy: Any) -> dict[str, Any]:
    banding = optimal_banding(0.25, 128)
    return {
        "family": family,
        "key_id": key_id,
        "num_perm": 128,
        "shingle_unit": "word",
        "shingle_size": 1,
        "drop_stopwords": True,
        "core_rules": 2,
        "threshold": 0.25,
        "cluster_threshold": 0.5,
        "bands": banding.bands,
        "rows": banding.rows,
        "quorum": 2,
        "retention_days": 30,
        "reveal_members": False,
        **policy,
        "digest": recommended_digest(key_id).hex(),
    }


@pytest.mark.usefixtures("_operator")
def test_set_minhash_on_a_new_family_shows_the_recommended_profile(database_url: str) -> None:
    result = invoke_hub(database_url, "params", "set-minhash", PROMPT, "--key-id", "k1")
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    banding = optimal_banding(0.25, 128)
    assert table_cells(result.stdout) == [
        [
            PROMPT,
            "k1",
            "128",
            "word 1-grams without stopwords",
            "majority − boilerplate",
            "0.25",
            "0.5",
            f"{banding.bands}×{banding.rows}",
            "2",
            "30",
            "no",
        ]
    ]
    digest = recommended_document(PROMPT, "k1")["digest"]
    assert result.stdout.endswith(f"\ndigest {digest}\n")

    document = invoke_hub_json(database_url, "params", "set-minhash", "chat", "--key-id", "k2")
    assert document.pop("updated_at")
    assert document == {**recommended_document("chat", "k2"), "members_must_resubmit": False}


@pytest.mark.usefixtures("_operator")
def test_upgrade_minhash_moves_an_old_family_and_warns_members_must_resubmit(
    database_url: str,
) -> None:
    policy = ["--quorum", "3", "--retention-days", "7", "--reveal-members"]
    for family in (PROMPT, "chat"):
        old = invoke_hub(
            database_url, "params", "set-minhash", family, "--key-id", "k1", *OLD_PROFILE_OPTIONS
        )
        assert (old.exit_code, old.stderr) == (0, ""), old.output
        assert invoke_hub(database_url, "params", "set-minhash", family, *policy).exit_code == 0
    before = invoke_hub_json(database_url, "params", "show")["minhash_families"]
    assert [(f["shingle_size"], f["drop_stopwords"], f["core_rules"]) for f in before] == [
        (3, False, 1)
    ] * 2

    result = invoke_hub(database_url, "params", "upgrade-minhash", PROMPT)
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: prompt signatures change from key_id k1, P=128, word 3-grams to key_id k1, "
        "P=128, word 1-grams without stopwords: " + RESUBMIT_NOTE.format(family=PROMPT)
    )
    assert table_cells(result.stdout)[0][:7] == [
        PROMPT,
        "k1",
        "128",
        "word 1-grams without stopwords",
        "majority − boilerplate",
        "0.25",
        "0.5",
    ]
    assert table_cells(result.stdout)[0][8:] == ["3", "7", "yes"]  # the policy is kept

    upgraded = invoke_hub(database_url, "params", "upgrade-minhash", "chat", "--json")
    assert upgraded.exit_code == 0, upgraded.output
    assert "members must resubmit" in upgraded.stderr
    document = json.loads(upgraded.stdout)
    assert document.pop("updated_at")
    assert document == {
        **recommended_document("chat", "k1", quorum=3, retention_days=7, reveal_members=True),
        "members_must_resubmit": True,
    }

    # Already there: nothing changes and nobody needs to resubmit.
    again = invoke_hub(database_url, "params", "upgrade-minhash", PROMPT)
    assert (again.exit_code, again.stderr) == (0, "")
    assert again.stdout.startswith("prompt already uses the recommended profile: nothing changed\n")
    again_json = invoke_hub_json(database_url, "params", "upgrade-minhash", "chat")
    assert again_json["members_must_resubmit"] is False
    assert again_json["digest"] == document["digest"]


@pytest.mark.usefixtures("_operator")
def test_upgrade_minhash_of_a_missing_family_is_a_usage_error(database_url: str) -> None:
    result = invoke_hub(database_url, "params", "upgrade-minhash", "nope")
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    assert (
        "Error: MinHash family 'nope' does not exist: publish it with `params set-minhash`"
        in result.stderr
    )
    assert invoke_hub_json(database_url, "params", "show")["minhash_families"] == []
    actions = invoke_hub_json(database_url, "audit", "show")["entries"]
    assert [entry["action"] for entry in actions] == []


# ---------------------------------------------------------------------------------- gRPC


@pytest.fixture
def hub(database_url: str) -> Iterator[RunningHub]:
    """A started hub (admin, coordinator, m1-m4, ``email``) whose ``prompt`` family was
    published before 0005."""
    engine = make_engine(database_url)
    try:
        credentials = provision(engine)
        with session_scope(engine) as session:
            ParameterRepository(session).set_minhash_family(
                old_family(PROMPT, KEY_ID, datetime.now(UTC))
            )
        with running_hub(engine, credentials) as running:
            yield running
    finally:
        engine.dispose()


def set_parameters(hub: RunningHub, **fields: Any) -> pb.MinHashParameters:
    response = hub.admin_stub.SetParameters(
        pb.SetParametersRequest(minhash=[pb.MinHashParameters(**fields)]),
        metadata=hub.metadata(ADMIN),
        timeout=TIMEOUT,
    )
    (published,) = response.minhash
    return published


def published(hub: RunningHub) -> dict[str, pb.MinHashParameters]:
    response = hub.member_stub.GetParameters(
        pb.GetParametersRequest(), metadata=hub.metadata("m1"), timeout=TIMEOUT
    )
    return {p.family: p for p in response.minhash}


def _fields(message: pb.MinHashParameters) -> dict[str, Any]:
    return {
        "key_id": message.key_id,
        "num_perm": message.num_perm,
        "shingle_unit": message.shingle_unit,
        "shingle_size": message.shingle_size,
        "drop_stopwords": message.drop_stopwords,
        "core_rules": message.core_rules,
        "threshold": message.threshold,
        "cluster_threshold": message.cluster_threshold,
        "quorum": message.quorum,
        "retention_days": message.retention_days,
        "reveal_members": message.reveal_members,
    }


def test_the_new_parameter_fields_round_trip_over_grpc(hub: RunningHub) -> None:
    chosen = {
        "key_id": "k9",
        "num_perm": 64,
        "shingle_unit": "word",
        "shingle_size": 2,
        "drop_stopwords": False,
        "core_rules": 1,
        "threshold": 0.4,
        "cluster_threshold": 0.7,
        "quorum": 3,
        "retention_days": 9,
        "reveal_members": True,
    }
    response = set_parameters(hub, family="chat", **chosen)
    assert _fields(response) == chosen
    got = published(hub)["chat"]
    assert got == response
    assert got.digest == MinHashParams("k9", num_perm=64, shingle_size=2).digest()
    assert (got.bands, got.rows) == dataclasses.astuple(optimal_banding(0.4, 64))

    # Explicitly set fields win over stored ones, including false and 1.
    recommended = set_parameters(hub, family="fresh", key_id="k9")
    assert (recommended.drop_stopwords, recommended.core_rules) == (True, 2)
    assert recommended.cluster_threshold == 0.5
    explicit = set_parameters(hub, family="fresh", drop_stopwords=False, core_rules=1)
    assert (explicit.drop_stopwords, explicit.core_rules) == (False, 1)
    # The SDK reads them back as the parameters members sketch with.
    sdk = hub.client("m1").get_parameters().minhash
    assert sdk["chat"].minhash_params() == MinHashParams("k9", num_perm=64, shingle_size=2)
    assert (sdk["chat"].member_threshold, sdk["fresh"].member_threshold) == (0.7, 0.5)
    assert sdk["fresh"].digest == MinHashParams("k9", shingle_size=1).digest()


def test_omitted_optional_fields_keep_the_current_values(hub: RunningHub) -> None:
    chosen = {"key_id": "k9", "shingle_size": 2, "drop_stopwords": False, "core_rules": 1}
    first = set_parameters(hub, family="chat", cluster_threshold=0.7, quorum=3, **chosen)

    # Only the threshold: key id, shingling, stopwords, core rules, cluster threshold and
    # policy all stay.
    second = set_parameters(hub, family="chat", threshold=0.35)
    assert _fields(second) == {**_fields(first), "threshold": 0.35}
    assert second.digest == first.digest

    # Only the stopwords: a new digest, everything else as it was.
    third = set_parameters(hub, family="chat", drop_stopwords=True)
    assert _fields(third) == {**_fields(second), "drop_stopwords": True}
    assert third.digest != second.digest
    assert published(hub)["chat"] == third


def test_get_parameters_always_states_the_member_threshold(hub: RunningHub) -> None:
    families = published(hub)
    old = families[PROMPT]
    # Published before 0005 (no cluster threshold of its own): members cluster at θ.
    assert old.HasField("cluster_threshold")
    assert (old.threshold, old.cluster_threshold) == (PROMPT_THRESHOLD, PROMPT_THRESHOLD)
    assert (old.drop_stopwords, old.core_rules, old.shingle_size) == (False, 1, 3)
    assert old.digest == MinHashParams(KEY_ID).digest()
    # The SDK reads the same.
    sdk = hub.client("m1").get_parameters().minhash[PROMPT]
    assert (sdk.cluster_threshold, sdk.member_threshold) == (PROMPT_THRESHOLD, PROMPT_THRESHOLD)

    rethresholded = set_parameters(hub, family=PROMPT, threshold=0.3)
    assert rethresholded.HasField("cluster_threshold")
    assert rethresholded.cluster_threshold == 0.3  # still none of its own: it follows θ
    own = set_parameters(hub, family=PROMPT, cluster_threshold=0.6)
    assert (own.threshold, own.cluster_threshold) == (0.3, 0.6)
    assert published(hub)[PROMPT].cluster_threshold == 0.6


# ---------------------------------------------------------------------------------- campaigns


PLAN = {"m1": (0, 1, 3), "m2": (0, 1, 2, 5), "m3": (0, 2, 4)}
"""Template 0 is seen by three members, 1 and 2 by two, 3-5 by one each."""


def with_ids_of(upload: ClusterUpload, earlier: ClusterUpload) -> ClusterUpload:
    """``upload`` with each cluster under the id of ``earlier``'s cluster of the same template
    (what the member client does: a cluster keeps its id while it holds the same prompts)."""
    id_of = {template: cluster_id for cluster_id, template in earlier.template_of.items()}
    renamed = {c.cluster_id: id_of[upload.template_of[c.cluster_id]] for c in upload.clusters}
    return ClusterUpload(
        signatures=upload.signatures,
        clusters=tuple(
            dataclasses.replace(c, cluster_id=renamed[c.cluster_id]) for c in upload.clusters
        ),
        template_of={renamed[cid]: t for cid, t in upload.template_of.items()},
    )


def shared_templates(uploads: Mapping[str, ClusterUpload]) -> dict[int, tuple[str, ...]]:
    holders: dict[int, set[str]] = defaultdict(set)
    for member, upload in uploads.items():
        for template in upload.template_of.values():
            holders[template].add(member)
    return {t: tuple(sorted(h)) for t, h in holders.items() if len(h) >= 2}


def campaigns_over_grpc(
    hub: RunningHub, clients: Mapping[str, HubClient], uploads: Mapping[str, ClusterUpload]
) -> dict[int, tuple[str, str]]:
    """Template → (campaign id, review status), checked against the templates the members'
    clusters come from: one campaign per shared template, holding exactly its members."""
    response = hub.review_stub.ListCampaigns(
        pb.ListCampaignsRequest(family=PROMPT), metadata=hub.metadata(COORDINATOR), timeout=TIMEOUT
    )
    listed = {c.id: c for c in response.campaigns}
    found: dict[int, str] = {}
    for member, upload in uploads.items():
        for match in clients[member].list_matches(PROMPT).campaigns:
            template = upload.template_of[match.cluster_id]
            assert found.setdefault(template, match.campaign_id) == match.campaign_id
    shared = shared_templates(uploads)
    assert set(found) == set(shared)
    assert set(found.values()) == set(listed)
    for template, campaign_id in found.items():
        campaign = listed[campaign_id]
        assert tuple(campaign.members) == shared[template]
        assert campaign.similarity == 1.0  # identical template cores
    return {t: (cid, listed[cid].status) for t, cid in found.items()}


def _review(engine: Engine, campaign_id: str, *statuses: ReviewStatus, at: datetime) -> None:
    with session_scope(engine) as session:
        for status in statuses:
            reviews.set_status(
                session, actor=COORDINATOR, record_id=campaign_id, status=status, now=at
            )


def _upgrade(engine: Engine, at: datetime) -> MinHashParameters:
    with session_scope(engine) as session:
        return parameters.set_minhash_parameters(
            session, actor=ADMIN, family=PROMPT, profile=RECOMMENDED_MINHASH, now=at
        )


@pytest.mark.parametrize("keep_ids", [True, False], ids=["same-cluster-ids", "new-cluster-ids"])
def test_campaign_ids_and_reviews_survive_a_profile_migration(
    hub: RunningHub, keep_ids: bool
) -> None:
    forum = prompt_forum(PLAN)
    clients = {m: hub.client(m) for m in PLAN}
    old_params = clients["m1"].get_parameters().minhash[PROMPT].minhash_params()
    assert old_params == MinHashParams(KEY_ID)
    old = {m: cluster_upload(forum, m, forum_secret(), old_params) for m in PLAN}
    for member, upload in old.items():
        assert not submit_clusters(clients[member], upload).duplicate
    before = campaigns_over_grpc(hub, clients, old)
    assert {t: status for t, (_, status) in before.items()} == {0: "new", 1: "new", 2: "new"}
    now = datetime.now(UTC)
    _review(hub.engine, before[0][0], ReviewStatus.TRIAGED, ReviewStatus.CONFIRMED, at=now)
    _review(hub.engine, before[1][0], ReviewStatus.DISMISSED, at=now)

    upgraded = _upgrade(hub.engine, now)
    assert MinHashProfile.of(upgraded) == RECOMMENDED_MINHASH
    # Every old submission retires: no campaign until members resubmit.
    assert campaigns_over_grpc(hub, clients, {}) == {}
    published = clients["m1"].get_parameters().minhash[PROMPT]
    assert (published.digest, published.member_threshold) == (upgraded.digest(), 0.5)
    new_params = published.minhash_params()
    new = {m: cluster_upload(forum, m, forum_secret(), new_params) for m in PLAN}
    for member in PLAN:
        # The new signatures look nothing like the old ones (other shingles): only the cluster
        # ids can lead back to the old campaigns.
        for old_row in old[member].signatures.values:
            for new_row in new[member].signatures.values:
                assert estimate_jaccard(old_row, new_row) < 0.1
        assert all(c.core_size >= 30 for c in new[member].clusters)
    if keep_ids:
        new = {m: with_ids_of(new[m], old[m]) for m in PLAN}

    # Members resubmit one by one (their nightly runs), each followed by a read.
    sent: dict[str, ClusterUpload] = {}
    for member in PLAN:
        assert not submit_clusters(clients[member], new[member]).duplicate
        sent[member] = new[member]
        campaigns_over_grpc(hub, clients, sent)
    after = campaigns_over_grpc(hub, clients, new)
    if keep_ids:
        assert after == {
            0: (before[0][0], "confirmed"),
            1: (before[1][0], "dismissed"),
            2: (before[2][0], "new"),
        }
    else:
        # Without the old cluster ids nothing links them: new campaigns, new reviews.
        assert {cid for cid, _ in after.values()}.isdisjoint(cid for cid, _ in before.values())
        assert {status for _, status in after.values()} == {"new"}


def _principals(engine: Engine, names: Mapping[str, object]) -> dict[str, Principal]:
    with session_scope(engine) as session:
        repository = PrincipalRepository(session)
        found = {name: repository.get_by_name(name) for name in names}
    assert all(p is not None for p in found.values())
    return {name: p for name, p in found.items() if p is not None}


def _submit_at(
    engine: Engine,
    member: Principal,
    upload: ClusterUpload,
    params: MinHashParameters,
    at: datetime,
) -> None:
    """What the Submit RPC does with ``upload``, at time ``at``."""
    header = UploadHeader(
        format=SketchFormat.CLUSTERS_V1,
        kind=PROMPT,
        key_id=params.key_id,
        params_digest=params.digest(),
        declared_count=len(upload.clusters),
        content_length=len(upload.payload),
        content_sha256=hashlib.sha256(upload.payload).digest(),
    )
    signatures, clusters = cluster_set(upload.payload)
    with session_scope(engine) as session:
        submit_cluster_set(
            session, member, header, signatures=signatures, clusters=clusters, now=at
        )


def _campaigns_at(
    engine: Engine,
    members: Mapping[str, Principal],
    uploads: Mapping[str, ClusterUpload],
    at: datetime,
) -> dict[int, tuple[str, ReviewStatus]]:
    """Template → (campaign id, status) as members and coordinators read them at ``at``."""
    with session_scope(engine) as session:
        listing = RecordQuery(RecordType.CAMPAIGN, scope=PROMPT, descending=False)
        listed = reviews.campaigns(session, listing, at).items
        links = {m: member_views.matches(session, members[m], PROMPT, at) for m in uploads}
    by_id = {c.id: c for c in listed}
    found: dict[int, str] = {}
    for member, matches in links.items():
        for link in matches.campaigns:
            template = uploads[member].template_of[link.cluster_id]
            assert found.setdefault(template, link.campaign_id) == link.campaign_id
    shared = shared_templates(uploads)
    assert set(found) == set(shared)
    assert set(found.values()) == set(by_id)
    assert {t: by_id[cid].members for t, cid in found.items()} == shared
    return {t: (cid, by_id[cid].status) for t, cid in found.items()}


@pytest.mark.parametrize(
    ("days", "revived"),
    [(29, True), (31, False)],
    ids=["resubmitted-within-retention", "resubmitted-after-retention"],
)
def test_a_campaign_inactive_for_longer_than_retention_is_not_revived(
    database_url: str, days: int, revived: bool
) -> None:
    engine = make_engine(database_url)
    try:
        provision(engine, now=T0)
        with session_scope(engine) as session:
            old_params = ParameterRepository(session).set_minhash_family(
                old_family(PROMPT, KEY_ID, T0)
            )
        assert old_params.retention_days == 30
        members = _principals(engine, PLAN)
        forum = prompt_forum(PLAN)
        old = {
            m: cluster_upload(forum, m, forum_secret(), old_params.minhash_params()) for m in PLAN
        }
        for member, upload in old.items():
            _submit_at(engine, members[member], upload, old_params, T0)
        before = _campaigns_at(engine, members, old, T0)
        _review(engine, before[0][0], ReviewStatus.TRIAGED, at=T0)

        upgraded = _upgrade(engine, T1)
        assert _campaigns_at(engine, members, {}, T1) == {}  # inactive from T1 on

        later = T1 + timedelta(days=days)
        new_params = upgraded.minhash_params()
        for member in PLAN:
            upload = with_ids_of(
                cluster_upload(forum, member, forum_secret(), new_params), old[member]
            )
            _submit_at(engine, members[member], upload, upgraded, later)
            old[member] = upload
        after = _campaigns_at(engine, members, old, later)
    finally:
        engine.dispose()
    if revived:
        assert after == {
            0: (before[0][0], ReviewStatus.TRIAGED),
            1: (before[1][0], ReviewStatus.NEW),
            2: (before[2][0], ReviewStatus.NEW),
        }
    else:
        assert {cid for cid, _ in after.values()}.isdisjoint(cid for cid, _ in before.values())
        assert {status for _, status in after.values()} == {ReviewStatus.NEW}
