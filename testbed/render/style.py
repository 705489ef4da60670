"""Colours and markers shared by every panel, so that one thing looks the same everywhere.

Class probabilities map to a colour wheel: class y sits at hue y / p, a probability vector is
drawn with the hue of its weighted mean direction on the wheel and a saturation equal to that
mean's length, so a sure prediction is a pure hue and an undecided one fades to white (works for
any p; for p = 2 the classes are red and cyan).
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import hsv_to_rgb

CLASS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
PREFIX_MARKER, SUFFIX_MARKER = "o", "s"  # positions t <= k (non-spurious) and t > k (spurious)
NEURON_CMAP = "hsv"


def class_marker(y: int) -> str:
    return CLASS_MARKERS[y % len(CLASS_MARKERS)]


def wheel(probs: np.ndarray) -> np.ndarray:
    """(..., p) probabilities -> (..., 3) RGB on the colour wheel."""
    p = probs.shape[-1]
    angles = 2 * np.pi * np.arange(p) / p
    cx, cy = probs @ np.cos(angles).astype(probs.dtype), probs @ np.sin(angles).astype(probs.dtype)  # real maths: complex is slow
    hue = (np.arctan2(cy, cx) / (2 * np.pi)) % 1.0
    sat = np.clip(np.hypot(cx, cy), 0.0, 1.0)
    hsv = np.stack([hue, sat, np.full_like(hue, 0.95)], -1)
    return hsv_to_rgb(hsv)


def class_colors(p: int) -> np.ndarray:
    """(p, 3) the pure colour of each class on the wheel."""
    return wheel(np.eye(p))


def position_colors(L: int) -> np.ndarray:
    """(L, 4) one colour per position, shared by P, E+P, Z, VZ and the attention panels."""
    return colormaps["viridis"](np.linspace(0.0, 0.9, L))


def neuron_colors(h: int) -> np.ndarray:
    """(h, 4): receptor w_i and assembler u_i of neuron i share a colour."""
    return colormaps[NEURON_CMAP](np.arange(h) / max(h, 1))


def group_colors(groups: np.ndarray, n_groups: int, shade: np.ndarray) -> np.ndarray:
    """(N, 3) colour per item: hue from its group (prefixes equal up to permutation), brightness
    varied slightly by `shade` in [0, 1] so members of a group stay distinguishable."""
    cmap = colormaps["turbo"]
    base = cmap(0.05 + 0.9 * groups / max(n_groups - 1, 1))[:, :3]
    out = np.empty_like(base)
    for i, (rgb, s) in enumerate(zip(base, shade)):
        h, light, sat = colorsys.rgb_to_hls(*rgb)
        out[i] = colorsys.hls_to_rgb(h, np.clip(light * (0.75 + 0.45 * s), 0.0, 0.92), sat)
    return out


def square_extent(points: np.ndarray, margin: float = 0.12, include_origin: bool = True) -> tuple[float, float, float, float]:
    """A square (x0, x1, y0, y1) holding every finite point of (..., 2), with a margin."""
    pts = points.reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(1)]
    if include_origin:
        pts = np.concatenate([pts, np.zeros((1, 2))])
    if len(pts) == 0:
        return (-1.0, 1.0, -1.0, 1.0)
    lo, hi = pts.min(0), pts.max(0)
    c = (lo + hi) / 2
    half = max(float((hi - lo).max()) / 2, 1e-3) * (1 + margin)
    if not math.isfinite(half) or half > 1e6:
        half = 1e6
    return (c[0] - half, c[0] + half, c[1] - half, c[1] + half)
