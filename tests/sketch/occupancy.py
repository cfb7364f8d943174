"""Exact occupancy law of a Bloom filter with distinct positions: the oracle for its moments."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def occupancy_distribution(m: int, k: int, n: int) -> npt.NDArray[np.float64]:
    """Exact law of the number of set bits after ``n`` items of ``k`` distinct uniform positions.

    A Markov chain on the set-bit count ``s``: an item's ``k``-subset hits ``j`` unset bits with
    the hypergeometric probability ``C(m − s, j)·C(s, k − j) / C(m, k)``.
    """
    transition = np.zeros((m + 1, m + 1))
    total = math.comb(m, k)
    for s in range(m + 1):
        for new in range(max(0, k - s), min(k, m - s) + 1):
            transition[s, s + new] = math.comb(m - s, new) * math.comb(s, k - new) / total
    law = np.zeros(m + 1)
    law[0] = 1.0
    for _ in range(n):
        law = law @ transition
    return law
