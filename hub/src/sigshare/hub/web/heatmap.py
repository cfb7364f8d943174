"""The overlap heatmap: members × members estimated shared counts drawn as an SVG on the server.

Plain SVG markup with presentation attributes only (no ``style``, no script), so it passes the
console's Content Security Policy and needs no JavaScript. Every cell has a ``<title>`` (shown as
a tooltip and read by screen readers) with the estimate and its standard error. The diagonal
holds each member's own estimated set size and is drawn in grey: it is not an overlap and would
otherwise dominate the colour scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np
import numpy.typing as npt
from markupsafe import Markup

LOW = (0xEE, 0xF4, 0xFB)
HIGH = (0x0B, 0x3D, 0x91)
DIAGONAL_FILL = "#e5e7eb"
DARK_TEXT = "#111827"
LIGHT_TEXT = "#ffffff"
CHAR_WIDTH = 7.2
"""Approximate width of a 12 px label character, to leave room for member names."""


def compact(value: float) -> str:
    """A short label for a cell: ``87``, ``12.3k``, ``4.1M``; ``∞`` for a saturated estimate."""
    if not math.isfinite(value):
        return "∞"
    value = max(value, 0.0)
    if value < 1000:
        return f"{value:.0f}"
    if value < 1_000_000:
        return f"{value / 1000:.1f}k"
    return f"{value / 1_000_000:.1f}M"


def figure(value: float) -> str:
    """A full figure for tables and tooltips: ``12,345``; ``∞`` when saturated."""
    if not math.isfinite(value):
        return "∞"
    return f"{max(value, 0.0):,.0f}"


def spread(value: float) -> str:
    """A standard error: one decimal below 10 (``± 0.4``), whole numbers above."""
    if math.isfinite(value) and 0 <= value < 10:
        return f"{value:.1f}"
    return figure(value)


def colour(fraction: float) -> str:
    """The scale's colour at ``fraction`` ∈ [0, 1] (light to dark blue)."""
    t = min(max(fraction, 0.0), 1.0)
    red, green, blue = (round(lo + (hi - lo) * t) for lo, hi in zip(LOW, HIGH, strict=True))
    return f"#{red:02x}{green:02x}{blue:02x}"


def _scale_maximum(estimate: npt.NDArray[np.float64]) -> float:
    size = estimate.shape[0]
    off = estimate[~np.eye(size, dtype=bool)] if size else np.zeros(0)
    finite = off[np.isfinite(off)]
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0


def heatmap_svg(
    members: Sequence[str],
    estimate: npt.NDArray[np.float64],
    stderr: npt.NDArray[np.float64],
    *,
    kind: str,
) -> Markup:
    """The SVG of the matrix (``members`` label both axes in the same order)."""
    size = len(members)
    cell = 64 if size <= 8 else max(30, 512 // size)
    font = 12 if cell >= 44 else 10
    label = max((len(name) for name in members), default=4)
    left = math.ceil(label * CHAR_WIDTH) + 16
    top = math.ceil(label * CHAR_WIDTH * 0.72) + 20
    grid = cell * size
    legend_y = top + grid + 28
    width = left + max(grid, 260) + 16
    height = legend_y + 44
    maximum = _scale_maximum(estimate)
    title = f"Estimated shared {kind} values between members"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="heatmap-title heatmap-desc" font-family="system-ui, sans-serif">',
        f'<title id="heatmap-title">{escape(title)}</title>',
        '<desc id="heatmap-desc">Each cell estimates how many values two members both hold '
        "(Bloom-filter intersection estimate, ± one standard error). The diagonal shows each "
        "member's own estimated set size.</desc>",
    ]
    for index, name in enumerate(members):
        y = top + index * cell + cell / 2
        parts.append(
            f'<text x="{left - 8}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle" '
            f'font-size="12" fill="{DARK_TEXT}">{escape(name)}</text>'
        )
        x = left + index * cell + cell / 2
        parts.append(
            f'<text x="{x:.1f}" y="{top - 8}" text-anchor="start" font-size="12" '
            f'fill="{DARK_TEXT}" transform="rotate(-40 {x:.1f} {top - 8})">{escape(name)}</text>'
        )
    for row, row_name in enumerate(members):
        for column, column_name in enumerate(members):
            value = float(estimate[row, column])
            error = float(stderr[row, column])
            x, y = left + column * cell, top + row * cell
            if row == column:
                fill, fraction = DIAGONAL_FILL, 0.0
                tip = f"{row_name}: ≈ {figure(value)} ± {spread(error)} {kind} values (own set)"
            else:
                fraction = 1.0 if not math.isfinite(value) else max(value, 0.0) / maximum
                fill = colour(fraction)
                tip = (
                    f"{row_name} ∩ {column_name}: ≈ {figure(value)} ± {spread(error)} "
                    f"shared {kind} values"
                )
            text_fill = LIGHT_TEXT if fraction > 0.55 else DARK_TEXT
            parts.append(
                f'<g class="cell"><title>{escape(tip)}</title>'
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" '
                f'stroke="#ffffff" stroke-width="2"/>'
                f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2:.1f}" text-anchor="middle" '
                f'dominant-baseline="middle" font-size="{font}" fill="{text_fill}">'
                f"{escape(compact(value))}</text></g>"
            )
    bar = max(grid, 260) - 80
    parts += [
        '<defs><linearGradient id="heatmap-scale" x1="0" x2="1" y1="0" y2="0">'
        f'<stop offset="0" stop-color="{colour(0.0)}"/>'
        f'<stop offset="1" stop-color="{colour(1.0)}"/></linearGradient></defs>',
        f'<text x="{left}" y="{legend_y - 8}" font-size="12" fill="{DARK_TEXT}">'
        f"shared {escape(kind)} values (estimate)</text>",
        f'<rect x="{left}" y="{legend_y}" width="{bar}" height="12" '
        'fill="url(#heatmap-scale)" stroke="#9ca3af" stroke-width="0.5"/>',
        f'<text x="{left}" y="{legend_y + 28}" font-size="11" fill="{DARK_TEXT}">0</text>',
        f'<text x="{left + bar}" y="{legend_y + 28}" font-size="11" text-anchor="end" '
        f'fill="{DARK_TEXT}">{escape(figure(maximum))}</text>',
        "</svg>",
    ]
    return Markup("".join(parts))  # noqa: S704 - every interpolated name and label is escaped
