"""The reveal policy, in one place: whose names a reader sees beside a shared record.

A kind's or family's ``reveal_members`` decides whether member names travel with its shared
indicators (the reporters) and campaigns (the members whose clusters they connect). A member
never sees its own name among the others. In the console and the review CLI, coordinators see
campaign members by name whatever the policy: which firms a campaign spans is what they are
there to act on. Exports leave the hub, so there campaigns follow the family's policy exactly
as indicators follow the kind's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from sigshare.hub.domain import Campaign, CampaignLink, SharedIndicator
from sigshare.hub.storage.parameters import ParameterRepository


@dataclass(frozen=True, slots=True)
class RevealPolicy:
    """The kinds and families whose policy reveals members, as published now."""

    kinds: frozenset[str]
    families: frozenset[str]

    @classmethod
    def current(cls, session: Session) -> RevealPolicy:
        parameters = ParameterRepository(session)
        return cls(
            kinds=frozenset(p.kind for p in parameters.list_kinds() if p.reveal_members),
            families=frozenset(
                p.family for p in parameters.list_minhash_families() if p.reveal_members
            ),
        )

    def indicator(self, indicator: SharedIndicator, viewer: str | None = None) -> SharedIndicator:
        """``indicator`` with its reporters' names only where its kind reveals members, less
        ``viewer``'s own (a member reading its matches)."""
        if indicator.kind not in self.kinds:
            return replace(indicator, reporter_names=())
        if viewer is None:
            return indicator
        return replace(
            indicator, reporter_names=tuple(n for n in indicator.reporter_names if n != viewer)
        )

    def campaign(self, campaign: Campaign) -> Campaign:
        """``campaign`` with its members' names only where its family reveals members (their
        number stays)."""
        return campaign if campaign.family in self.families else replace(campaign, members=())

    def campaign_link(self, link: CampaignLink, family: str) -> CampaignLink:
        """A member's campaign link with the other members' names only where ``family``
        reveals members."""
        return link if family in self.families else replace(link, other_members=())
