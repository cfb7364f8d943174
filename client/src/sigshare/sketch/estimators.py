"""Cardinality and intersection estimates from Bloom filter bit counts, with their errors.

* Swamidass & Baldi (2007): ``n̂ = −(m/k)·ln(1 − t/m)`` from ``t`` set bits.
* Papapetrou, Siberski & Nejdl (2010): ``|A∩B|`` from ``t₁``, ``t₂`` and ``t∧`` (set bits of
  ``A AND B``); the zero-fraction of the intersection's own bits is
  ``z∩ = (m − t₁)(m − t₂) / (m·(m − t₁ − t₂ + t∧))`` and ``n̂∩ = ln z∩ / (k·ln(1 − 1/m))``.

Standard errors come from the delta method: per-bit (multinomial) covariances of the bit
counts, then the correction for item counts being fixed rather than Poisson (Poissonisation),
which recovers the exact occupancy variance ``m(e^λ − 1 − λ)/k²`` for a single set.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sigshare.sketch.bloom import BloomFilter, and_popcount
from sigshare.sketch.errors import ParameterError


def _log_keep(m: int) -> float:
    """ln(1 − 1/m): the log-probability that one hash misses a given bit."""
    return math.log1p(-1.0 / m)


def estimate_cardinality(m: int, k: int, set_bits: int) -> float:
    """Swamidass–Baldi estimate of the number of distinct items; ``inf`` when saturated."""
    if not 0 <= set_bits <= m:
        raise ParameterError("set bits must be between 0 and m")
    if set_bits == m:
        return math.inf
    return math.log1p(-set_bits / m) / (k * _log_keep(m))


def estimate_intersection(m: int, k: int, bits_a: int, bits_b: int, bits_and: int) -> float:
    """Papapetrou estimate of ``|A∩B|`` from set-bit counts of ``A``, ``B`` and ``A AND B``."""
    if not (0 <= bits_and <= min(bits_a, bits_b) and max(bits_a, bits_b) <= m):
        raise ParameterError("inconsistent set-bit counts")
    if max(bits_a, bits_b) == m:
        return math.inf
    denominator = m - bits_a - bits_b + bits_and
    if denominator <= 0:
        return math.inf
    zero_fraction = (m - bits_a) * (m - bits_b) / (m * denominator)
    # Sampling noise can push z∩ just above 1 when the true intersection is empty.
    return max(0.0, math.log(min(zero_fraction, 1.0)) / (k * _log_keep(m)))


def cardinality_stderr(m: int, k: int, n: float) -> float:
    """Standard error of :func:`estimate_cardinality` for a true size ``n``.

    Var ≈ m·(e^λ − 1 − λ)/k² with λ = k·n/m (delta method on the set-bit count).
    """
    lam = k * n / m
    return math.sqrt(m * (math.expm1(lam) - lam)) / k


def intersection_stderr(m: int, k: int, n_a: float, n_b: float, n_ab: float) -> float:
    """Standard error of :func:`estimate_intersection` for true sizes ``|A|``, ``|B|``, ``|A∩B|``.

    Each bit is in one of four states (in neither, only A, only B, both); the fractions
    ``(t₁, t₂, t∧)/m`` are means over bits, so with independent bits their covariance is
    ``Σ₁/m`` where ``Σ₁`` is the per-bit covariance. With the estimator's gradient ``∇`` in
    those fractions (central differences), ``Var = ∇ᵀ Σ₁ ∇ / m − |A∩B|/k``: the last term
    removes the Poisson fluctuation of the intersection's item count, which is in fact fixed.
    """
    if not 0 <= n_ab <= min(n_a, n_b):
        raise ParameterError("intersection cannot exceed either set")
    keep = _log_keep(m) * k
    zero_a, zero_b, zero_ab = (math.exp(keep * n) for n in (n_a, n_b, n_ab))
    p_a, p_b = 1.0 - zero_a, 1.0 - zero_b
    p_and = 1.0 - zero_a - zero_b + zero_a * zero_b / zero_ab
    covariance = np.array(
        [
            [p_a * (1 - p_a), p_and - p_a * p_b, p_and * (1 - p_a)],
            [p_and - p_a * p_b, p_b * (1 - p_b), p_and * (1 - p_b)],
            [p_and * (1 - p_a), p_and * (1 - p_b), p_and * (1 - p_and)],
        ]
    )

    def estimate(fa: float, fb: float, fab: float) -> float:
        zero = (1 - fa) * (1 - fb) / (1 - fa - fb + fab)
        return math.log(zero) / keep

    point = np.array([p_a, p_b, p_and])
    step = 1e-7
    gradient = np.empty(3)
    for axis in range(3):
        delta = np.zeros(3)
        delta[axis] = step
        gradient[axis] = (estimate(*(point + delta)) - estimate(*(point - delta))) / (2 * step)
    independent_bits = float(gradient @ covariance @ gradient) / m  # Var(t/m) = Σ₁/m
    # Item counts are fixed, not Poisson: removing the intersection class's count fluctuation
    # takes (∂n̂∩/∂N∩)²·N∩ = n∩/k off the variance (the A-only and B-only classes leave n̂∩
    # unchanged to first order). For one set this turns m(e^λ − 1)/k² into m(e^λ − 1 − λ)/k².
    variance = independent_bits - n_ab / k
    return math.sqrt(max(variance, 0.0))


def overlap_matrix(filters: list[BloomFilter]) -> npt.NDArray[np.float64]:
    """Estimated ``|A_i ∩ A_j|`` for every pair; the diagonal holds each ``|A_i|`` estimate."""
    return overlap_estimates(filters)[0]


def _intersection_error(m: int, k: int, n_a: float, n_b: float, n_ab: float) -> float:
    if not (math.isfinite(n_a) and math.isfinite(n_b) and math.isfinite(n_ab)):
        return math.inf  # a saturated filter says nothing
    # Noise can put the estimate just outside [0, min size]; its error is the same.
    plausible = min(max(n_ab, 0.0), n_a, n_b)
    try:
        return intersection_stderr(m, k, n_a, n_b, plausible)
    except ArithmeticError:  # nearly saturated: the state fractions underflow
        return math.inf


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
