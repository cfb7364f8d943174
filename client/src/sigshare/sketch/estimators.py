"""Cardinality and intersection estimates from Bloom filter bit counts, with their errors, and
the rate at which a value nobody else holds looks shared.

Every item sets ``k`` distinct bits (:mod:`sigshare.sketch.bloom`), so a bit escapes one item
with probability ``q = 1 − k/m`` exactly and the expected number of unset bits after ``n`` items
is ``m·qⁿ``. Inverting it:

* Swamidass & Baldi (2007): ``n̂ = ln(1 − t/m) / ln(1 − k/m)`` from ``t`` set bits.
* Papapetrou, Siberski & Nejdl (2010): ``|A∩B|`` from ``t₁``, ``t₂`` and ``t∧`` (set bits of
  ``A AND B``). The unset counts ``U_A = m − t₁``, ``U_B = m − t₂`` and
  ``U_or = m − t₁ − t₂ + t∧`` (unset in ``A OR B``, the filter of the union) have means
  ``m·q^|A|``, ``m·q^|B|`` and ``m·q^(|A| + |B| − |A∩B|)``, so ``z∩ = U_A·U_B / (m·U_or)``
  estimates ``q^|A∩B|`` and ``n̂∩ = ln z∩ / ln(1 − k/m)``.

Standard errors are the delta method on the *exact* covariances of the unset counts for fixed
item counts (:func:`sigshare.sketch.bloom.unset_covariance`); no Poisson approximation and no
correction for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sigshare.sketch.bloom import BloomFilter, and_popcount, log_keep, unset_covariance
from sigshare.sketch.errors import ParameterError


def _require_hashes(m: int, k: int) -> None:
    if not 1 <= k <= m:
        raise ParameterError(f"need 1 ≤ k ≤ m, got m={m} k={k}")


def estimate_cardinality(m: int, k: int, set_bits: int) -> float:
    """Swamidass–Baldi estimate of the number of distinct items; ``inf`` when saturated."""
    _require_hashes(m, k)
    if not 0 <= set_bits <= m:
        raise ParameterError("set bits must be between 0 and m")
    if set_bits == 0:
        return 0.0
    if m in (set_bits, k):  # k = m: one item sets every bit, so the count is unknowable
        return math.inf
    return math.log1p(-set_bits / m) / log_keep(m, k)


def estimate_intersection(m: int, k: int, bits_a: int, bits_b: int, bits_and: int) -> float:
    """Papapetrou estimate of ``|A∩B|`` from set-bit counts of ``A``, ``B`` and ``A AND B``."""
    _require_hashes(m, k)
    if not (0 <= bits_and <= min(bits_a, bits_b) and max(bits_a, bits_b) <= m):
        raise ParameterError("inconsistent set-bit counts")
    if max(bits_a, bits_b) == m:
        return math.inf
    denominator = m - bits_a - bits_b + bits_and
    if denominator <= 0:
        return math.inf
    zero_fraction = (m - bits_a) * (m - bits_b) / (m * denominator)
    # Sampling noise can push z∩ just above 1 when the true intersection is empty.
    return max(0.0, math.log(min(zero_fraction, 1.0)) / log_keep(m, k))


def cardinality_stderr(m: int, k: int, n: float) -> float:
    """Standard error of :func:`estimate_cardinality` for a true size ``n``.

    Delta method on the unset count ``U``: ``n̂ = ln(U/m)/ln q``, so
    ``sd(n̂) = sd(U) / (E[U]·|ln q|)`` with ``E[U] = m·qⁿ`` and ``Var(U)`` exact
    (``≈ sqrt(m(e^λ − 1 − λ))/k``, ``λ = kn/m``, for large ``m``).
    """
    _require_hashes(m, k)
    if n == 0:
        return 0.0
    log_q = log_keep(m, k)
    unset = m * math.exp(n * log_q)
    if unset == 0.0:
        return math.inf  # saturated: the estimate says nothing
    variance = unset_covariance(m, k, n, n, n)
    return math.sqrt(max(variance, 0.0)) / (unset * -log_q)


def unset_moments(
    m: int, k: int, n_a: float, n_b: float, n_ab: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Exact means and covariance matrix of ``(U_A, U_B, U_or)`` for fixed ``|A|, |B|, |A∩B|``.

    ``U_A``, ``U_B`` are the unset bits of the two filters and ``U_or`` those of ``A OR B``
    (the filter of the union); each entry is :func:`unset_covariance` of the two item sets.
    """
    _require_hashes(m, k)
    if not 0 <= n_ab <= min(n_a, n_b):
        raise ParameterError("intersection cannot exceed either set")
    n_union = n_a + n_b - n_ab
    sizes = (n_a, n_b, n_union)
    log_q = log_keep(m, k)
    means = np.array([m * math.exp(n * log_q) if n else float(m) for n in sizes])
    # |S ∩ T| for each pair: A∩B, and each set is inside the union.
    shared = ((n_a, n_ab, n_a), (n_ab, n_b, n_b), (n_a, n_b, n_union))
    covariance = np.array(
        [
            [unset_covariance(m, k, sizes[i], sizes[j], shared[i][j]) for j in range(3)]
            for i in range(3)
        ]
    )
    return means, covariance


def intersection_stderr(m: int, k: int, n_a: float, n_b: float, n_ab: float) -> float:
    """Standard error of :func:`estimate_intersection` for true sizes ``|A|``, ``|B|``, ``|A∩B|``.

    ``n̂∩ = [ln U_A + ln U_B − ln U_or − ln m] / ln q``; its gradient at the means ``μ`` is
    ``(1/μ_A, 1/μ_B, −1/μ_or) / ln q`` and ``Var = ∇ᵀ Σ ∇`` with ``Σ`` from :func:`unset_moments`.
    For ``A = B`` it is :func:`cardinality_stderr`.
    """
    means, covariance = unset_moments(m, k, n_a, n_b, n_ab)
    if float(means.min()) == 0.0:
        return math.inf  # saturated: the estimate says nothing
    gradient = np.array([1.0, 1.0, -1.0]) / (means * log_keep(m, k))
    variance = float(gradient @ covariance @ gradient)
    if not math.isfinite(variance):
        return math.inf  # nearly saturated: the means underflow
    return math.sqrt(max(variance, 0.0))  # rounding can leave −0.0 for an empty set


def false_shared_probability(fprs: Sequence[float], needed: int) -> float:
    """Probability that at least ``needed`` of independent events of probabilities ``fprs``
    happen (the upper tail of a Poisson-binomial distribution).

    For a value no other member holds, ``fprs`` are the other members' false-positive rates
    (each filter's :meth:`~sigshare.sketch.bloom.BloomParams.fpr_at_fill`) and ``needed`` is
    ``quorum − 1``: the result is the rate at which such a value is reported as shared, if the
    other filters are independent. Overlapping holdings make false positives coincide: for
    ``needed = 1`` the result then remains an upper bound, for larger ``needed`` it may not.
    Exact dynamic programme over how many events happened so far, capped at ``needed`` (an
    absorbing state); every step adds non-negative terms, so tiny tails keep full relative
    precision. ``needed ≤ 0`` is certain (1.0); ``needed > len(fprs)`` impossible (0.0).
    """
    rates = np.asarray(fprs, dtype=np.float64).reshape(-1)
    if not np.all((rates >= 0.0) & (rates <= 1.0)):  # also refuses NaN
        raise ParameterError("false-positive rates must be probabilities in [0, 1]")
    if needed <= 0:
        return 1.0
    if needed > rates.size:
        return 0.0
    # counts[j] = P(exactly j events so far) for j < needed; counts[needed] = P(≥ needed).
    counts = np.zeros(needed + 1, dtype=np.float64)
    counts[0] = 1.0
    for rate in rates:
        moved = counts[:-1] * rate
        counts[:-1] *= 1.0 - rate
        counts[1:] += moved
    return float(min(counts[needed], 1.0))


def overlap_matrix(filters: list[BloomFilter]) -> npt.NDArray[np.float64]:
    """Estimated ``|A_i ∩ A_j|`` for every pair; the diagonal holds each ``|A_i|`` estimate."""
    return overlap_estimates(filters)[0]


def _intersection_error(m: int, k: int, n_a: float, n_b: float, n_ab: float) -> float:
    if not (math.isfinite(n_a) and math.isfinite(n_b) and math.isfinite(n_ab)):
        return math.inf  # a saturated filter says nothing
    # Noise can put the estimate just outside [0, min size]; its error is the same.
    plausible = min(max(n_ab, 0.0), n_a, n_b)
    try:
        error = intersection_stderr(m, k, n_a, n_b, plausible)
    except ArithmeticError:  # nearly saturated: the unset fractions underflow
        return math.inf
    return error if math.isfinite(error) else math.inf


def overlap_estimates(
    filters: list[BloomFilter],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(estimate, stderr)`` matrices: ``|A_i ∩ A_j|`` off the diagonal, ``|A_i|`` on it."""
    size = len(filters)
    estimate, stderr = np.zeros((size, size)), np.zeros((size, size))
    if not filters:
        return estimate, stderr
    params = filters[0].params
    if any(bloom.params != params for bloom in filters):
        raise ParameterError("filters have different parameters and cannot be compared")
    m, k = params.m, params.k
    set_bits = [bloom.set_bits() for bloom in filters]
    sizes = [estimate_cardinality(m, k, bits) for bits in set_bits]
    for i in range(size):
        estimate[i, i] = sizes[i]
        stderr[i, i] = cardinality_stderr(m, k, sizes[i]) if math.isfinite(sizes[i]) else math.inf
        for j in range(i + 1, size):
            both = and_popcount(filters[i].bits, filters[j].bits)
            value = estimate_intersection(m, k, set_bits[i], set_bits[j], both)
            estimate[i, j] = estimate[j, i] = value
            stderr[i, j] = stderr[j, i] = _intersection_error(m, k, sizes[i], sizes[j], value)
    return estimate, stderr
