"""The whole sketch flow of a forum in one process, scored against exact ground truth.

Each firm canonicalises its raw indicators, builds keyed Bloom filters with the forum's
parameters and clusters its prompts into sketched templates. The part the hub will run is played
by the aggregation functions of :mod:`sigshare.sketch` on the sketches alone: count vectors,
per-firm resolution vectors with the quorum applied, the overlap matrix, and cross-firm LSH
matching of template sketches. Each firm then resolves its own items locally. Nothing here opens a
socket or writes a file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sigshare.client.synthetic import SyntheticForum, generate_forum
from sigshare.sketch.bloom import (
    BloomParams,
    KeyedBloomFilter,
    count_vector,
    resolution_vector,
    resolve_tokens,
)
from sigshare.sketch.checks import check_filter
from sigshare.sketch.cluster import cluster_prompts
from sigshare.sketch.estimators import intersection_stderr, overlap_matrix
from sigshare.sketch.keys import ForumSecret, KeyPurpose
from sigshare.sketch.kinds import canonicalise_batch, get_kind
from sigshare.sketch.lsh import (
    candidate_pairs,
    connected_components,
    optimal_banding,
    pair_similarity,
)
from sigshare.sketch.minhash import MinHashParams, SaltedMinHasher
from sigshare.sketch.prf import KeyedPRF

KINDS = ("email", "phone", "ip")


@dataclass
class DemoConfig:
    seed: int = 7
    accounts_per_firm: int = 3000
    capacity: int = 10_000
    target_fpr: float = 1e-3
    quorum: int = 2
    threshold: float = 0.5
    min_cluster_volume: int = 5


@dataclass
class IndicatorScore:
    kind: str
    firm: str
    accepted: int
    rejected: dict[str, int]
    reported_shared: int
    truly_shared: int
    true_positives: int


@dataclass
class CampaignMatch:
    firms: list[str]
    volumes: dict[str, int]
    similarity: float
    true_campaign: int | None


@dataclass
class DemoReport:
    config: DemoConfig
    indicator_scores: list[IndicatorScore] = field(default_factory=list)
    overlap_firms: list[str] = field(default_factory=list)
    overlap_estimate: list[list[float]] = field(default_factory=list)
    overlap_truth: list[list[int]] = field(default_factory=list)
    overlap_stderr: list[list[float]] = field(default_factory=list)
    campaigns: list[CampaignMatch] = field(default_factory=list)
    shared_campaigns_truth: int = 0
    shared_campaigns_found: int = 0
    cluster_pairs_correct: int = 0
    cluster_pairs_total: int = 0

    @property
    def indicator_recall(self) -> float:
        truth = sum(score.truly_shared for score in self.indicator_scores)
        found = sum(score.true_positives for score in self.indicator_scores)
        return found / truth if truth else 1.0

    @property
    def indicator_precision(self) -> float:
        reported = sum(score.reported_shared for score in self.indicator_scores)
        found = sum(score.true_positives for score in self.indicator_scores)
        return found / reported if reported else 1.0

    @property
    def campaign_recall(self) -> float:
        if not self.shared_campaigns_truth:
            return 1.0
        return self.shared_campaigns_found / self.shared_campaigns_truth

    @property
    def campaign_precision(self) -> float:
        if not self.cluster_pairs_total:
            return 1.0
        return self.cluster_pairs_correct / self.cluster_pairs_total

    def to_json(self) -> dict[str, Any]:
        return {
            "config": vars(self.config),
            "indicators": [vars(score) for score in self.indicator_scores],
            "overlap": {
                "kind": "email",
                "firms": self.overlap_firms,
                "estimate": self.overlap_estimate,
                "truth": self.overlap_truth,
                "stderr": self.overlap_stderr,
            },
            "campaigns": [vars(match) for match in self.campaigns],
            "scores": {
                "indicator_recall": self.indicator_recall,
                "indicator_precision": self.indicator_precision,
                "campaign_recall": self.campaign_recall,
                "campaign_pair_precision": self.campaign_precision,
            },
        }


def run_local_demo(config: DemoConfig, forum_secret: ForumSecret | None = None) -> DemoReport:
    """Generate a forum, run every step on sketches only, and score the result."""
    secret = forum_secret or ForumSecret.generate("demo")
    forum = generate_forum(config.seed, accounts_per_firm=config.accounts_per_firm)
    report = DemoReport(config=config)
    _indicators(forum, secret, config, report)
    _campaigns(forum, secret, config, report)
    return report


def _indicators(
    forum: SyntheticForum, secret: ForumSecret, config: DemoConfig, report: DemoReport
) -> None:
    names = [firm.name for firm in forum.firms]
    for kind_name in KINDS:
        kind = get_kind(kind_name)
        params = BloomParams.for_capacity(
            kind_name, secret.key_id, config.capacity, config.target_fpr
        )
        prf = KeyedPRF(secret.derive(KeyPurpose.BLOOM_TOKEN, kind_name))
        filters: list[KeyedBloomFilter] = []
        firm_values: list[list[str]] = []
        rejects: list[Counter[str]] = []
        for firm in forum.firms:
            batch = canonicalise_batch(kind, firm.indicators[kind_name])
            values = list(dict.fromkeys(batch.values))
            bloom = KeyedBloomFilter(params, prf)
            bloom.add(values)
            check_filter(bloom, params)  # what the hub will do on upload
            filters.append(bloom)
            firm_values.append(values)
            rejects.append(Counter({reason.value: n for reason, n in batch.rejects.items()}))
        holders: Counter[str] = Counter(value for values in firm_values for value in values)
        counts = count_vector(filters)
        for index, (bloom, values) in enumerate(zip(filters, firm_values, strict=True)):
            resolution = resolution_vector(counts, bloom, config.quorum)
            others = resolve_tokens(resolution, params, prf.tokens(values))
            reported = others >= 1
            truly = np.array([holders[value] >= config.quorum for value in values])
            report.indicator_scores.append(
                IndicatorScore(
                    kind=kind_name,
                    firm=names[index],
                    accepted=len(values),
                    rejected=dict(rejects[index]),
                    reported_shared=int(reported.sum()),
                    truly_shared=int(truly.sum()),
                    true_positives=int((reported & truly).sum()),
                )
            )
        if kind_name == "email":
            _overlap(forum, filters, firm_values, params, report)


def _overlap(
    forum: SyntheticForum,
    filters: list[KeyedBloomFilter],
    firm_values: list[list[str]],
    params: BloomParams,
    report: DemoReport,
) -> None:
    estimate = overlap_matrix(list(filters))
    sets = [set(values) for values in firm_values]
    size = len(sets)
    report.overlap_firms = [firm.name for firm in forum.firms]
    report.overlap_estimate = [
        [round(float(estimate[i, j]), 1) for j in range(size)] for i in range(size)
    ]
    report.overlap_truth = [[len(sets[i] & sets[j]) for j in range(size)] for i in range(size)]
    report.overlap_stderr = [
        [
            round(
                intersection_stderr(
                    params.m, params.k, len(sets[i]), len(sets[j]), len(sets[i] & sets[j])
                ),
                1,
            )
            for j in range(size)
        ]
        for i in range(size)
    ]


def _campaigns(
    forum: SyntheticForum, secret: ForumSecret, config: DemoConfig, report: DemoReport
) -> None:
    params = MinHashParams(key_id=secret.key_id)
    hasher = SaltedMinHasher.from_secret(secret, params)
    signatures = []
    owners: list[int] = []
    volumes: list[int] = []
    labels: list[int | None] = []
    for firm_index, firm in enumerate(forum.firms):
        clustering = cluster_prompts(
            hasher, firm.prompts, config.threshold, min_volume=config.min_cluster_volume
        )
        for cluster in clustering.clusters:
            signatures.append(cluster.signature)
            owners.append(firm_index)
            volumes.append(cluster.volume)
            # The firm's own ground truth: the campaign most of the cluster's prompts belong to.
            votes = Counter(firm.prompt_campaign[i] for i in cluster.prompts.tolist())
            label, _ = votes.most_common(1)[0]
            labels.append(label if label >= 0 else None)
    if not signatures:
        return
    stacked = np.stack(signatures)
    groups = np.asarray(owners, dtype=np.int64)
    # From here on only sketches are used: what the hub sees.
    pairs = candidate_pairs(stacked, optimal_banding(config.threshold, params.num_perm), groups)
    similarity = pair_similarity(stacked, pairs)
    keep = similarity >= config.threshold
    pairs, similarity = pairs[keep], similarity[keep]
    components = connected_components(len(stacked), pairs)
    names = [firm.name for firm in forum.firms]
    for component in np.unique(components[pairs[:, 0]]) if len(pairs) else []:
        members = np.flatnonzero(components == component)
        in_component = np.isin(pairs[:, 0], members)
        component_labels = {labels[i] for i in members}
        report.campaigns.append(
            CampaignMatch(
                firms=sorted({names[owners[i]] for i in members}),
                volumes={names[owners[i]]: volumes[i] for i in members},
                similarity=round(float(similarity[in_component].mean()), 3),
                true_campaign=next(iter(component_labels)) if len(component_labels) == 1 else None,
            )
        )
    report.cluster_pairs_total = len(pairs)
    report.cluster_pairs_correct = int(
        sum(labels[i] is not None and labels[i] == labels[j] for i, j in pairs.tolist())
    )
    shared_truth = {c for c, firms in forum.campaign_firms.items() if len(firms) >= 2}
    found = {match.true_campaign for match in report.campaigns if match.true_campaign is not None}
    report.shared_campaigns_truth = len(shared_truth)
    report.shared_campaigns_found = len(shared_truth & found)
