"""Exact laws that tests hold probabilistic code to: the occupancy of a Bloom filter (the oracle
for its fill's moments) and the Poisson allowance for false positives."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FALSE_POSITIVE_ALPHA = 1e-9
"""Chance that a correct system exceeds a false-positive allowance: a flaky test once in 10⁹."""


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


def poisson_allowance(expected: float, alpha: float = FALSE_POSITIVE_ALPHA) -> int:
    """Smallest ``t`` with P(Poisson(expected) > t) ≤ ``alpha``."""
    term = cdf = math.exp(-expected)
    allowance = 0
    while 1.0 - cdf > alpha:
        allowance += 1
        term *= expected / allowance
        cdf += term
    return allowance
