"""Campaigns from salted MinHash signatures of many members' prompt clusters.

Pure computation (numpy, no database): LSH band collisions between signatures of *different*
members → candidate pairs → estimated Jaccard ≥ θ → edges → connected components. A component
is a campaign when it spans at least ``quorum`` distinct members.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sigshare.sketch.lsh import Banding, candidate_pairs, connected_components, pair_similarity


@dataclass(frozen=True, slots=True)
class Component:
    nodes: npt.NDArray[np.int64]
    """Indices into the signature matrix, ascending."""
    best_similarity: npt.NDArray[np.float64]
    """Per node: its highest estimated Jaccard with another member's node in the component."""
    min_edge_similarity: float
    members: int


def estimated_shared(
    similarity: npt.NDArray[np.float64],
    first_sizes: npt.NDArray[np.int64],
    second_sizes: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """Shingles two sets have in common, from their Jaccard similarity ``J`` and sizes ``a``,
    ``b``: shared ``s = J·(a + b − s)`` (the union is ``a + b − s``), so
    ``s = J·(a + b)/(1 + J)``."""
    shared: npt.NDArray[np.float64] = similarity * (first_sizes + second_sizes) / (1.0 + similarity)
    return shared


def find_campaigns(
    signatures: npt.NDArray[np.uint32],
    members: npt.NDArray[np.int64],
    banding: Banding,
    threshold: float,
    quorum: int,
    *,
    core_sizes: npt.NDArray[np.int64] | None = None,
    min_shared: float = 0.0,
) -> list[Component]:
    """Components of the cross-member match graph that span ≥ ``quorum`` members.

    ``members[i]`` is the member that shared signature ``i``. Only pairs from different members
    are compared: a member's own near-duplicates were merged by its local clustering, and an
    edge inside one member says nothing about sharing. An edge needs estimated Jaccard ≥
    ``threshold`` over the full signatures (the verification of the LSH candidates) and, with
    ``core_sizes``, at least ``min_shared`` shingles in common (:func:`estimated_shared`).
    """
    count = len(signatures)
    if count == 0:
        return []
    pairs = candidate_pairs(signatures, banding, groups=members)
    similarity = pair_similarity(signatures, pairs)
    keep = similarity >= threshold
    if core_sizes is not None:
        keep &= (
            estimated_shared(similarity, core_sizes[pairs[:, 0]], core_sizes[pairs[:, 1]])
            >= min_shared
        )
    edges, similarity = pairs[keep], similarity[keep]
    if not len(edges):
        return []
    labels = connected_components(count, edges)
    best = np.zeros(count, dtype=np.float64)
    np.maximum.at(best, edges[:, 0], similarity)
    np.maximum.at(best, edges[:, 1], similarity)
    edge_label = labels[edges[:, 0]]
    order = np.argsort(edge_label, kind="stable")
    edge_label, sorted_similarity = edge_label[order], similarity[order]
    starts = np.flatnonzero(np.r_[True, edge_label[1:] != edge_label[:-1]])
    minima = np.minimum.reduceat(sorted_similarity, starts)
    components: list[Component] = []
    node_order = np.argsort(labels, kind="stable")
    sorted_labels = labels[node_order]
    for label, minimum in zip(edge_label[starts], minima, strict=True):
        low, high = np.searchsorted(sorted_labels, [label, label + 1])
        nodes = np.sort(node_order[low:high])
        distinct = int(np.unique(members[nodes]).size)
        if distinct >= quorum:
            components.append(Component(nodes, best[nodes], float(minimum), distinct))
    return components


def inherit_ids(
    clusters: Sequence[Sequence[tuple[int, str]]],
    signatures: Sequence[npt.NDArray[np.uint32]],
    previous: Mapping[tuple[int, str], int],
    stored: Mapping[int, npt.NDArray[np.uint32]],
    *,
    banding: Banding,
    threshold: float,
) -> dict[int, int]:
    """Which new component keeps which stored campaign's id: ``{component index: campaign}``.

    ``clusters[i]`` are component ``i``'s ``(member, cluster id)`` pairs and ``signatures[i]``
    its representative signature; ``previous`` maps pairs to the campaign they were in and
    ``stored`` gives each stored campaign's representative. Each campaign is inherited at most
    once: first by the component sharing the most pairs with it, largest components first (a
    split keeps the id with its bigger half); then, for components still new, by representative
    signature — estimated Jaccard ≥ ``threshold``, most similar pairs first — which recognises a
    campaign after every member resubmitted it under new cluster ids.
    """
    claimed: set[int] = set()
    inherited: dict[int, int] = {}
    for index in sorted(range(len(clusters)), key=lambda i: -len(clusters[i])):
        overlap: dict[int, int] = defaultdict(int)
        for pair in clusters[index]:
            campaign = previous.get(pair)
            if campaign is not None and campaign not in claimed:
                overlap[campaign] += 1
        if overlap:
            choice = max(overlap, key=lambda c: (overlap[c], -c))
            claimed.add(choice)
            inherited[index] = choice
    width = len(signatures[0]) if len(signatures) else 0  # stored ones of another P never match
    old_ids = [c for c, s in stored.items() if c not in claimed and len(s) == width]
    new_indices = [i for i in range(len(clusters)) if i not in inherited]
    if not old_ids or not new_indices:
        return inherited
    matrix = np.vstack(
        [np.stack([stored[c] for c in old_ids]), np.stack([signatures[i] for i in new_indices])]
    ).astype(np.uint32)
    groups = np.r_[np.zeros(len(old_ids), np.int64), np.ones(len(new_indices), np.int64)]
    pairs = candidate_pairs(matrix, banding, groups=groups)
    similarity = pair_similarity(matrix, pairs)
    for (first, second), value in sorted(
        zip(pairs.tolist(), similarity.tolist(), strict=True), key=lambda item: -item[1]
    ):
        if value < threshold:
            break
        campaign, index = old_ids[first], new_indices[second - len(old_ids)]  # first < second
        if campaign in claimed or index in inherited:
            continue
        claimed.add(campaign)
        inherited[index] = campaign
    return inherited
