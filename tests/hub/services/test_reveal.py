"""The reveal policy, the one function every reader of shared records goes through."""

from __future__ import annotations

from datetime import UTC, datetime

from sigshare.hub.domain import Campaign, CampaignLink, ReviewStatus, SharedIndicator
from sigshare.hub.services.reveal import RevealPolicy

T0 = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = RevealPolicy(kinds=frozenset({"email"}), families=frozenset({"prompt"}))


def indicator(kind: str) -> SharedIndicator:
    return SharedIndicator(
        id="i1",
        kind=kind,
        key_id="k1",
        token=b"\x01" * 16,
        reporters=3,
        reporter_names=("acme", "globex", "initech"),
        categories=(),
        first_seen=None,
        last_seen=None,
        status=ReviewStatus.NEW,
        created_at=T0,
        updated_at=T0,
    )


def campaign(family: str) -> Campaign:
    return Campaign(
        id="p1",
        family=family,
        member_count=3,
        members=("acme", "globex", "initech"),
        similarity=0.8,
        volume=40,
        categories=(),
        first_seen=None,
        last_seen=None,
        status=ReviewStatus.NEW,
        active=True,
        created_at=T0,
        updated_at=T0,
    )


def link() -> CampaignLink:
    return CampaignLink(
        cluster_id="c" * 32,
        campaign_id="p1",
        similarity=0.8,
        other_member_count=2,
        other_members=("globex", "initech"),
    )


def test_names_only_where_the_kind_reveals_members_and_never_the_viewers_own() -> None:
    assert POLICY.indicator(indicator("email")).reporter_names == ("acme", "globex", "initech")
    assert POLICY.indicator(indicator("email"), viewer="acme").reporter_names == (
        "globex",
        "initech",
    )
    hidden = POLICY.indicator(indicator("phone"), viewer="acme")
    assert hidden.reporter_names == ()
    assert hidden.reporters == 3  # the count is not a name: it stays


def test_campaign_links_name_other_members_only_where_the_family_reveals_them() -> None:
    assert POLICY.campaign_link(link(), "prompt").other_members == ("globex", "initech")
    hidden = POLICY.campaign_link(link(), "other")
    assert hidden.other_members == ()
    assert hidden.other_member_count == 2


def test_campaigns_name_their_members_only_where_the_family_reveals_them() -> None:
    assert POLICY.campaign(campaign("prompt")).members == ("acme", "globex", "initech")
    hidden = POLICY.campaign(campaign("other"))
    assert hidden.members == ()
    assert hidden.member_count == 3
