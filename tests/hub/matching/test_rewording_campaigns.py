"""Campaign matching under each firm's own rewording, end to end: the rewording benchmark's forum
(:mod:`bench.rewording_corpus`) sent through a real hub, over SQLite and PostgreSQL, by four
members running the member pipeline (published parameters over gRPC, ``cluster_prompts`` at the
published member threshold, core sizes in the payload), and the hub's answers — each member's
campaign links and the coordinator's listing — scored against the scenario's ground truth.

The oracle is the benchmark's (``bench/rewording_bench.py``), computed from the scenario alone:

- **recall** — share of (firm, template) pairs, over every firm whose traffic holds the template,
  where the firm's cluster of that template is in a campaign with another firm's cluster of it;
- **hard-negative rate** — share of same-genre template pairs that one campaign joins;
- **benign campaigns** — campaigns holding a cluster of a firm's own benign prompts.

A cluster stands for the template most of its prompts come from; that label stays in the test.
Every run is deterministic (fixed scenario seed, fixed forum secret), so the bounds below are
not a matter of luck: the tolerances say how far one forum may sit from the benchmark's mean
before the hub, rather than the forum drawn, is to blame.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from bench.rewording_corpus import BENIGN, Scenario, generate
from sigshare.client.hub_client import HubClient
from sigshare.client.hub_types import PublishedMinHash
from sigshare.hub.services import parameters
from sigshare.hub.services.parameters import RECOMMENDED_MINHASH
from sigshare.hub.storage import session_scope
from sigshare.sketch.cluster import ClusterInfo, cluster_prompts, new_cluster_id
from sigshare.sketch.codec import SignatureSet
from sigshare.sketch.minhash import SaltedMinHasher
from sigshare.v1 import hub_pb2 as pb
from tests.support.hub import (
    COORDINATOR,
    KEY_ID,
    MEMBERS,
    PROMPT,
    RPC_TIMEOUT,
    SETUP_ACTOR,
    ClusterUpload,
    RunningHub,
    forum_secret,
    submit_clusters,
)

MIN_VOLUME = 3
"""Members send clusters of at least this many prompts (the benchmark's and the tests' choice)."""
SEEDS = (8, 9)
"""Scenario seeds: the benchmark's trials use seeds 0–7 under another key, so these forums are
fresh draws from the distributions it measured."""
SEED = SEEDS[0]

BENCHMARK_RECALL = {0.0: (1.0, 0.0), 0.10: (1.0, 0.0), 0.20: (1.0, 0.0)}
"""The benchmark's recall at the recommended defaults, rate → (mean, trial sd), from
``PYTHONPATH=. python -m bench.rewording_bench --seeds 8 --json`` (set "new default": ``recall``,
``recall_trial_sd``): 1003 of 1003 (firm, template) pairs found at each of r = 0, 5, 10, 15 and
20 %, every trial at 100 % (sd 0); 99.4 % (sd 1.0 %) at 25 % and 99.3 % (sd 1.0 %) at 30 %.
No trial merged a same-genre pair, joined templates of different genres, or made a campaign of
benign prompts. The old default (word 3-shingles, θ 0.5) found 92.5 % (sd 9.8 %) at r = 0,
20.3 % (sd 17.0 %) at 10 % and 0.2 % (sd 0.5 %) at 20 %."""
SD_ALLOWANCE = 4.0
RECALL_GOAL = 0.95
"""Issue 11's goal: campaign recall of at least 95 % up to 20 % rewording."""
HARD_NEGATIVE_GOAL = 0.01
"""At most 1 % of same-genre template pairs joined: with 42 such pairs, none."""
OLD_DEFAULT_RECALL_CEILING = 0.2


def recall_bound(rate: float) -> float:
    """The lowest recall a correct hub may report for one forum at ``rate``: the benchmark's
    mean less four trial standard deviations, and never below the issue's goal. No trial of the
    benchmark missed a pair at these rates (sd 0), so the bound is every pair."""
    mean, sd = BENCHMARK_RECALL[rate]
    return max(RECALL_GOAL, mean - SD_ALLOWANCE * sd)


def publish_prompt_family(hub: RunningHub, **options: Any) -> None:
    """Replace the ``prompt`` family's signature and matching options (policy unchanged)."""
    with session_scope(hub.engine) as session:
        parameters.set_minhash_parameters(
            session,
            actor=SETUP_ACTOR,
            family=PROMPT,
            key_id=KEY_ID,
            now=datetime.now(UTC),
            **options,
        )


def is_recommended(published: PublishedMinHash) -> bool:
    """Whether members received exactly :data:`RECOMMENDED_MINHASH`."""
    expected = asdict(RECOMMENDED_MINHASH)
    return {name: getattr(published, name) for name in expected} == expected


# ---------------------------------------------------------------------------------- members


def send_clusters(
    client: HubClient, prompts: Sequence[str], labels: Sequence[int]
) -> ClusterUpload:
    """One member's nightly upload: cluster ``prompts`` under the published parameters, send the
    clusters under fresh random ids, and keep each cluster's majority template label locally."""
    published = client.get_parameters().minhash[PROMPT]
    params = published.minhash_params()
    hasher = SaltedMinHasher.from_secret(forum_secret(), params, PROMPT)
    clustering = cluster_prompts(hasher, prompts, published.member_threshold, min_volume=MIN_VOLUME)
    assert clustering.clusters, "no cluster to send"
    label_array = np.asarray(labels)
    infos: list[ClusterInfo] = []
    template_of: dict[str, int] = {}
    for cluster in clustering.clusters:
        values, counts = np.unique(label_array[cluster.prompts], return_counts=True)
        info = ClusterInfo(
            cluster_id=new_cluster_id(),
            volume=cluster.volume,
            category="",
            core_size=len(cluster.core),
        )
        infos.append(info)
        template_of[info.cluster_id] = int(values[np.argmax(counts)])
    upload = ClusterUpload(
        signatures=SignatureSet(
            key_id=params.key_id,
            shingle_unit=params.shingle_unit,
            shingle_size=params.shingle_size,
            values=np.stack([cluster.signature for cluster in clustering.clusters]),
        ),
        clusters=tuple(infos),
        template_of=template_of,
    )
    assert not submit_clusters(client, upload).duplicate
    return upload


def send_forum(
    clients: Mapping[str, HubClient], traffic: Mapping[str, tuple[list[str], list[int]]]
) -> dict[str, ClusterUpload]:
    return {member: send_clusters(clients[member], *traffic[member]) for member in clients}


def firm_traffic(scenario: Scenario) -> dict[str, tuple[list[str], list[int]]]:
    """Member ``MEMBERS[i]`` logs firm ``i``'s prompts."""
    assert len(scenario.firms) == len(MEMBERS)
    return {
        member: (firm.prompts, firm.labels)
        for member, firm in zip(MEMBERS, scenario.firms, strict=True)
    }


def halves(
    traffic: Mapping[str, tuple[list[str], list[int]]],
) -> tuple[dict[str, tuple[list[str], list[int]]], dict[str, tuple[list[str], list[int]]]]:
    """Two nights of the same templates: each member's prompts of every label alternate between
    the first night and the second, so no prompt is sent twice."""
    nights: tuple[dict[str, tuple[list[str], list[int]]], ...] = ({}, {})
    for member, (prompts, labels) in traffic.items():
        seen: dict[int, int] = defaultdict(int)
        split: tuple[tuple[list[str], list[int]], ...] = (([], []), ([], []))
        for prompt, label in zip(prompts, labels, strict=True):
            night = split[seen[label] % 2]
            seen[label] += 1
            night[0].append(prompt)
            night[1].append(label)
        nights[0][member], nights[1][member] = split
    return nights[0], nights[1]


# ------------------------------------------------------------------------ what the hub answers


def listed_campaigns(hub: RunningHub) -> list[pb.Campaign]:
    """The coordinator's listing of the family's active campaigns, every page."""
    campaigns: list[pb.Campaign] = []
    token = ""
    while True:
        response = hub.review_stub.ListCampaigns(
            pb.ListCampaignsRequest(family=PROMPT, page=pb.PageRequest(page_token=token)),
            metadata=hub.metadata(COORDINATOR),
            timeout=RPC_TIMEOUT,
        )
        campaigns += response.campaigns
        token = response.next_page_token
        if not token:
            return campaigns


def hub_campaigns(
    hub: RunningHub, clients: Mapping[str, HubClient], uploads: Mapping[str, ClusterUpload]
) -> dict[str, list[tuple[str, int]]]:
    """Campaign id → its clusters as (member, template label), from the members' own matches;
    checked against the coordinator's listing (members and volumes) on the way."""
    clusters: dict[str, list[tuple[str, str]]] = defaultdict(list)
    others: dict[str, dict[str, int]] = defaultdict(dict)
    for member, client in clients.items():
        matches = client.list_matches(PROMPT)
        for match in matches.campaigns:
            assert match.cluster_id in uploads[member].template_of, "a link to a cluster not sent"
            clusters[match.campaign_id].append((member, match.cluster_id))
            others[match.campaign_id][member] = match.other_members
    volume_of = {
        (member, cluster.cluster_id): cluster.volume
        for member, upload in uploads.items()
        for cluster in upload.clusters
    }
    for campaign, by_member in others.items():  # each member sees the campaign's other members
        assert set(by_member.values()) == {len(by_member) - 1}, campaign
    listed = {(c.id, tuple(c.members), c.volume) for c in listed_campaigns(hub)}
    assert listed == {
        (
            campaign,
            tuple(sorted({member for member, _ in pairs})),
            sum(volume_of[pair] for pair in pairs),
        )
        for campaign, pairs in clusters.items()
    }
    return {
        campaign: [(member, uploads[member].template_of[cid]) for member, cid in pairs]
        for campaign, pairs in clusters.items()
    }


# ---------------------------------------------------------------------------------- the oracle


@dataclass(frozen=True)
class Score:
    pairs: int
    found: int
    sibling_pairs: int
    siblings_merged: int
    other_merges: int
    benign_campaigns: int
    campaigns: int

    @property
    def recall(self) -> float:
        return self.found / self.pairs

    @property
    def hard_negative_rate(self) -> float:
        return self.siblings_merged / self.sibling_pairs


def score(scenario: Scenario, campaigns: Mapping[str, Sequence[tuple[str, int]]]) -> Score:
    """The benchmark's measures of the hub's campaigns against the scenario's ground truth."""
    firm_of = {member: index for index, member in enumerate(MEMBERS)}
    genre_of = scenario.corpus.genre_of
    found: set[tuple[int, int]] = set()
    merged: set[tuple[int, int]] = set()
    other_merges = benign = 0
    for pairs in campaigns.values():
        firms_of: dict[int, set[int]] = defaultdict(set)
        for member, label in pairs:
            firms_of[label].add(firm_of[member])
        benign += BENIGN in firms_of
        templates = sorted(label for label in firms_of if label != BENIGN)
        for template in templates:
            if len(firms_of[template]) >= 2:
                found.update((firm, template) for firm in firms_of[template])
        for position, first in enumerate(templates):
            for second in templates[position + 1 :]:
                if genre_of[first] == genre_of[second]:
                    merged.add((first, second))
                else:
                    other_merges += 1
    truth = {(firm, t) for t, holders in scenario.holders.items() for firm in holders}
    assert found <= truth, "a firm linked to a template its traffic does not hold"
    assert all(len(holders) >= 2 for holders in scenario.holders.values())
    siblings = set(scenario.corpus.sibling_pairs())
    return Score(
        pairs=len(truth),
        found=len(found),
        sibling_pairs=len(siblings),
        siblings_merged=len(merged & siblings),
        other_merges=other_merges,
        benign_campaigns=benign,
        campaigns=len(campaigns),
    )


def template_campaigns(
    campaigns: Mapping[str, Sequence[tuple[str, int]]],
) -> dict[int, set[str]]:
    """Template label → the campaigns holding a cluster of it."""
    out: dict[int, set[str]] = defaultdict(set)
    for campaign, pairs in campaigns.items():
        for _, label in pairs:
            out[label].add(campaign)
    return dict(out)


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rate", sorted(BENCHMARK_RECALL))
def test_recommended_defaults_link_reworded_templates_and_keep_siblings_apart(
    hub: RunningHub, rate: float, seed: int
) -> None:
    publish_prompt_family(hub, profile=RECOMMENDED_MINHASH)
    clients = {member: hub.client(member) for member in MEMBERS}
    published = clients[MEMBERS[0]].get_parameters().minhash[PROMPT]
    assert is_recommended(published)
    scenario = generate(rate, seed=seed, firms=len(MEMBERS))
    uploads = send_forum(clients, firm_traffic(scenario))
    result = score(scenario, hub_campaigns(hub, clients, uploads))
    assert (result.benign_campaigns, result.other_merges) == (0, 0), result
    assert result.hard_negative_rate <= HARD_NEGATIVE_GOAL, result
    assert result.recall >= recall_bound(rate), result


def test_old_default_loses_the_reworded_templates_the_new_one_links(hub: RunningHub) -> None:
    """The forum the recommended defaults link completely at 20 % rewording, under the old
    default (word 3-shingles, θ 0.5, core rules 1): a firm's edits and its front-end's system
    prompt leave its wording few 3-shingles in common with another firm's, and nearly every
    pair is lost (benchmark: 0.2 %, sd 0.5 %)."""
    publish_prompt_family(
        hub,
        shingle_size=3,
        drop_stopwords=False,
        core_rules=1,
        threshold=0.5,
        cluster_threshold=0.5,
    )
    clients = {member: hub.client(member) for member in MEMBERS}
    published = clients[MEMBERS[0]].get_parameters().minhash[PROMPT]
    assert (published.shingle_size, published.drop_stopwords, published.core_rules) == (3, False, 1)
    assert published.member_threshold == published.threshold == 0.5
    scenario = generate(0.20, seed=SEED, firms=len(MEMBERS))
    uploads = send_forum(clients, firm_traffic(scenario))
    result = score(scenario, hub_campaigns(hub, clients, uploads))
    assert result.benign_campaigns == 0
    assert result.recall < OLD_DEFAULT_RECALL_CEILING, result


def test_campaign_ids_survive_a_night_of_fresh_prompts_and_cluster_ids(hub: RunningHub) -> None:
    """Night 2 sends other prompts of the same reworded templates under new random cluster
    ids: the hub recognises each campaign by its representative signature and keeps its id.

    Each night holds half of every template's prompts (6–20 per firm), fewer than the benchmark
    measured, so its recall is held to the issue's goal rather than to the benchmark's figure.
    """
    publish_prompt_family(hub, profile=RECOMMENDED_MINHASH)
    clients = {member: hub.client(member) for member in MEMBERS}
    scenario = generate(0.20, seed=SEED, firms=len(MEMBERS))
    first, second = halves(firm_traffic(scenario))

    night_1 = hub_campaigns(hub, clients, send_forum(clients, first))
    night_2 = hub_campaigns(hub, clients, send_forum(clients, second))
    for night in (night_1, night_2):
        result = score(scenario, night)
        assert (result.benign_campaigns, result.other_merges) == (0, 0), result
        assert result.hard_negative_rate <= HARD_NEGATIVE_GOAL, result
        assert result.recall >= RECALL_GOAL, result

    before, after = template_campaigns(night_1), template_campaigns(night_2)
    for campaign, pairs in night_1.items():
        for _, template in pairs:
            assert after.get(template) == {campaign}, (template, before[template])
