"""Local clustering of one member's prompts into near-duplicate templates.

A member shares one sketch per cluster, not per prompt. Clusters are the connected components of
the graph whose edges join prompts with estimated Jaccard ≥ θ among LSH bucket neighbours. Each
cluster is sketched by its **template core**: the shingles present in a strict majority of its
prompts (a single prompt is its own core). The union of the prompts would be dominated by
per-prompt fillers — two firms' clusters of one template would look unrelated — and fillers are
where end users' content lives, so the core is both the accurate and the private choice.
Cluster ids are random, never derived from content. See docs/decisions/0003-template-core.md.

Families with **core rules 2** (the recommended profile, docs/decisions/0006-rewording-robust-
campaigns.md) group prompts by word 3-shingles (every word kept) at the family's cluster
threshold, whatever shingles the family shares; remove from every core the shingles many of the
member's cores share (:func:`without_boilerplate`); and leave out clusters whose core has fewer
than :data:`MIN_MATCHABLE_CORE` shingles.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from sigshare.sketch.errors import ParameterError
from sigshare.sketch.lsh import (
    Banding,
    bucket_edges,
    connected_components,
    optimal_banding,
    pair_similarity,
)
from sigshare.sketch.minhash import MinHashParams, SaltedMinHasher, ShingleValues, Signatures

_MEDOID_SAMPLE = 64
BOILERPLATE_SHARE = 0.25
"""Core rules 2: a shingle in at least this share of a member's cluster cores is boilerplate."""
BOILERPLATE_MIN_CLUSTERS = 3
"""... and in at least this many of them (fewer clusters cannot tell boilerplate from a genre)."""
MIN_CORE_SHINGLES = 4
"""A core that removing boilerplate would leave smaller than this keeps its boilerplate."""
GROUPING_SHINGLE_SIZE = 3
"""Core rules 2: members group their own prompts by word 3-shingles (stopwords kept)."""
MIN_SHARED_SHINGLES = 8
"""Core rules 2: two clusters are one campaign only if, besides their Jaccard similarity reaching
the family's threshold, they share at least this many shingles (estimated from the similarity
and the two core sizes). At the low thresholds rewording needs, two short texts on one topic
would match by chance — two 10-word cores sharing 4 words have Jaccard 0.25 — while two
rewordings of a distillation template share 15 and more content words."""
MIN_MATCHABLE_CORE = MIN_SHARED_SHINGLES
"""Core rules 2: a cluster whose core has fewer shingles could never match, and is not shared."""
CLUSTER_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
"""A cluster id: 128 random bits as lowercase hex (:func:`new_cluster_id`)."""


def new_cluster_id() -> str:
    """A random cluster id: never derived from content, so it reveals nothing about prompts."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class PromptCluster:
    """One template as a member sees it. Only ``cluster_id``, ``volume`` and ``signature`` (plus
    metadata the caller adds) ever leave the member; ``prompts`` maps back to local data."""

    cluster_id: str
    prompts: npt.NDArray[np.int64]
    """Indices of the member's prompts in this cluster, ascending."""
    core: ShingleValues
    """Sorted shingle values of the template core."""
    signature: Signatures
    """MinHash signature of the core, shape ``(P,)``."""

    @property
    def volume(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What a member shares about one of its prompt clusters besides its signature.

    Members build it from a :class:`PromptCluster`; the hub receives and stores it as sent
    (:func:`sigshare.sketch.wire.decode_cluster_set`). Timestamps are timezone-aware.
    """

    cluster_id: str
    volume: int
    category: str
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    core_size: int = 0
    """Distinct shingles in the cluster's template core (0: not stated)."""

    def __post_init__(self) -> None:
        if self.core_size < 0:
            raise ValueError("cluster core size must not be negative")
        if not CLUSTER_ID_PATTERN.fullmatch(self.cluster_id):
            raise ValueError("cluster id must be 32 lowercase hex digits (use new_cluster_id())")
        if self.volume < 0:
            raise ValueError("cluster volume must not be negative")
        for name, moment in (("first_seen", self.first_seen), ("last_seen", self.last_seen)):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{name} must be a timezone-aware datetime")


@dataclass(frozen=True, slots=True)
class Clustering:
    clusters: list[PromptCluster]
    empty_prompts: int
    """Prompts without shingles (no words; with stopwords dropped, only stopwords): not
    clustered."""
    banding: Banding
    short_cores: int = 0
    """Clusters left out because their core is too short to match reliably (core rules 2)."""


def cluster_prompts(
    hasher: SaltedMinHasher,
    texts: Sequence[str],
    threshold: float = 0.5,
    *,
    min_volume: int = 1,
    banding: Banding | None = None,
) -> Clustering:
    """Group ``texts`` into near-duplicate clusters and sketch each by its template core.

    ``min_volume`` drops clusters with fewer prompts (campaigns are high-volume; singletons are
    mostly noise). Returned clusters are ordered by descending volume.
    """
    if not 0.0 < threshold < 1.0:
        raise ParameterError(f"threshold must be in (0, 1), got {threshold}")
    if min_volume < 1:
        raise ParameterError("min_volume must be at least 1")
    banding = banding or optimal_banding(threshold, hasher.params.num_perm)
    flat, offsets = hasher.shingles(texts)
    if hasher.params.core_rules == 2:
        # Grouping looks for one firm's verbatim template, where word 3-shingles with every
        # word kept are the sharp test: unrelated prompts share almost none, so the threshold
        # can sit well below a template's share of its prompts without chaining prompts
        # together. Cores and the shared signatures still use the family's shingles.
        grouping = hasher.sibling(
            MinHashParams(
                key_id=hasher.params.key_id,
                num_perm=hasher.params.num_perm,
                shingle_size=GROUPING_SHINGLE_SIZE,
            )
        )
        signatures = grouping.signatures(texts)
    else:
        signatures = hasher.signatures_from_shingles(flat, offsets)
    has_shingles = offsets[1:] > offsets[:-1]
    live = np.flatnonzero(has_shingles)

    # Identical signatures are one node: a campaign of 10,000 copies costs one LSH entry.
    unique_signatures, node_of_live = np.unique(signatures[live], axis=0, return_inverse=True)
    node_of_live = node_of_live.reshape(-1)
    candidates = bucket_edges(unique_signatures, banding)
    similar = candidates[pair_similarity(unique_signatures, candidates) >= threshold]
    node_labels = connected_components(len(unique_signatures), similar)
    labels = node_labels[node_of_live]

    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    boundaries = np.flatnonzero(np.diff(sorted_labels)) + 1
    groups = [live[group] for group in np.split(order, boundaries)] if live.size else []
    groups = [group for group in groups if len(group) >= min_volume]
    groups.sort(key=lambda group: (-len(group), int(group[0])))

    cores = [_template_core(flat, offsets, signatures, group) for group in groups]
    short_cores = 0
    if hasher.params.core_rules == 2:
        cores = without_boilerplate(cores)
        matchable = [len(core) >= MIN_MATCHABLE_CORE for core in cores]
        short_cores = matchable.count(False)
        groups = [group for group, keep in zip(groups, matchable, strict=True) if keep]
        cores = [core for core, keep in zip(cores, matchable, strict=True) if keep]
    core_offsets = np.zeros(len(cores) + 1, dtype=np.int64)
    np.cumsum([len(core) for core in cores], out=core_offsets[1:])
    core_flat = np.concatenate(cores) if cores else np.zeros(0, dtype=np.uint32)
    core_signatures = hasher.signatures_from_shingles(core_flat, core_offsets)
    clusters = [
        PromptCluster(
            cluster_id=new_cluster_id(),
            prompts=np.sort(group),
            core=core,
            signature=core_signatures[index],
        )
        for index, (group, core) in enumerate(zip(groups, cores, strict=True))
    ]
    return Clustering(
        clusters=clusters,
        empty_prompts=int((~has_shingles).sum()),
        banding=banding,
        short_cores=short_cores,
    )


def _distinct_shingles(
    flat: ShingleValues, offsets: npt.NDArray[np.int64], doc: int
) -> ShingleValues:
    return np.unique(flat[offsets[doc] : offsets[doc + 1]])


def _template_core(
    flat: ShingleValues,
    offsets: npt.NDArray[np.int64],
    signatures: Signatures,
    group: npt.NDArray[np.int64],
) -> ShingleValues:
    """Shingles in a strict majority of the group's prompts; the medoid's if none qualify."""
    if len(group) == 1:
        return _distinct_shingles(flat, offsets, int(group[0]))
    per_prompt = [_distinct_shingles(flat, offsets, int(doc)) for doc in group]
    values, counts = np.unique(np.concatenate(per_prompt), return_counts=True)
    core = values[2 * counts > len(group)]
    if core.size:
        return core
    return per_prompt[_medoid(signatures, group)]


def without_boilerplate(cores: Sequence[ShingleValues]) -> list[ShingleValues]:
    """Cores less the shingles that many of them share (core rules 2).

    A front-end or an operator's tool that puts the same system prompt before every templated
    prompt it sends puts those words in every cluster's core, where they differ from firm to firm
    and drown the template's own words. A template's words are in one core (a genre's shared
    words in a few), so a shingle in at least :data:`BOILERPLATE_SHARE` of the cores, and in at
    least :data:`BOILERPLATE_MIN_CLUSTERS` of them, is dropped from all — unless that would
    leave a core with fewer than :data:`MIN_CORE_SHINGLES` shingles, which then stays whole.
    """
    if len(cores) < BOILERPLATE_MIN_CLUSTERS:
        return list(cores)
    values, counts = np.unique(np.concatenate(cores), return_counts=True)
    floor = max(BOILERPLATE_MIN_CLUSTERS, int(np.ceil(BOILERPLATE_SHARE * len(cores))))
    boilerplate = values[counts >= floor]
    if not boilerplate.size:
        return list(cores)
    out = []
    for core in cores:
        kept = core[~np.isin(core, boilerplate, assume_unique=True)]
        out.append(kept if kept.size >= MIN_CORE_SHINGLES else core)
    return out


def _medoid(signatures: Signatures, group: npt.NDArray[np.int64]) -> int:
    """Position in ``group`` of the prompt most similar to the others (on a bounded sample)."""
    sample = group[:_MEDOID_SAMPLE]
    rows = signatures[sample]
    similarity = (rows[:, None, :] == rows[None, :, :]).mean(axis=2).sum(axis=1)
    return int(np.argmax(similarity))
