"""Campaigns from salted MinHash signatures of many members' prompt clusters.

Pure computation (numpy, no database): LSH band collisions between signatures of *different*
members → candidate pairs → estimated Jaccard ≥ θ → edges → connected components. A component
is a campaign when it spans at least ``quorum`` distinct members.
"""

from __future__ import annotations

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


def find_campaigns(
    signatures: npt.NDArray[np.uint32],
    members: npt.NDArray[np.int64],
    banding: Banding,
    threshold: float,
    quorum: int,
) -> list[Component]:
    """Components of the cross-member match graph that span ≥ ``quorum`` members.

    ``members[i]`` is the member that shared signature ``i``. Only pairs from different members
    are compared: a member's own near-duplicates were merged by its local clustering, and an
    edge inside one member says nothing about sharing.
    """
    count = len(signatures)
    if count == 0:
        return []
    pairs = candidate_pairs(signatures, banding, groups=members)
    similarity = pair_similarity(signatures, pairs)
    keep = similarity >= threshold
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
