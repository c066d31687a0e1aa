"""Large maps drawn on the server: a 2D projection of up to millions of points as one density
image (a PNG, counts per pixel on a log scale, optionally coloured by each pixel's most common
category), and the points inside a lasso or box answered here over every point. A browser's
WebGL scatter does not carry a million points; an image of the same map is a few hundred kB.

    image = density_image(proj.coords, width=1200, height=650, categories=labels)
    mask = points_in_polygon(proj.coords, [(x0, y0), (x1, y0), (x1, y1)])

Plain NumPy (``np.bincount``) and Pillow: no datashader."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..env import env_number

LARGE_MAP_ABOVE = 200_000  # above this many points a 2D map is drawn as a density image
MAX_CATEGORIES = 10  # colours of their own; the rest share OTHER_COLOUR
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f")
OTHER_COLOUR = "#b0b0b0"
NONE_TEXT = "(none)"
_LIGHT, _DARK = np.array([158, 202, 225]), np.array([8, 48, 107])  # the uncoloured ramp: few -> many points


def large_map_above() -> int:
    """How many points a 2D map may have before it is drawn as a density image:
    ``FEATURELAB_LARGE_MAP_ABOVE`` (tests set it low), else ``LARGE_MAP_ABOVE``."""
    return env_number("FEATURELAB_LARGE_MAP_ABOVE", LARGE_MAP_ABOVE, "a whole number of points, e.g. 200000")


@dataclass(frozen=True)
class DensityImage:
    """A PNG covering ``x_range`` x ``y_range`` (data units; its top row is ``y_range[1]``)."""

    png: bytes
    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    counts: np.ndarray = field(repr=False)  # (height, width) points per pixel, top row first
    legend: tuple[tuple[str, str, int], ...] = ()  # (category, colour, points) when coloured

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _ranges(x: np.ndarray, y: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """The points' extent with a 2% margin, never empty (a single point gets a unit square)."""
    out = []
    for v in (x, y):
        lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
        pad = (hi - lo) * 0.02 or 0.5
        out.append((lo - pad, hi + pad))
    return out[0], out[1]


def _pixels(x: np.ndarray, y: np.ndarray, width: int, height: int, xr: tuple[float, float],
            yr: tuple[float, float]) -> np.ndarray:
    """Each point's pixel, ``row * width + column``, row 0 at the top (largest y)."""
    col = ((x - xr[0]) * (width / (xr[1] - xr[0]))).astype(np.int64)
    row = ((yr[1] - y) * (height / (yr[1] - yr[0]))).astype(np.int64)
    return np.clip(row, 0, height - 1) * width + np.clip(col, 0, width - 1)


def _codes(categories: Sequence | np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, list[str], list[int]]:
    """Category codes 0..k (k = 'other') of the kept points, the k named categories (most
    points first) and their counts."""
    import pandas as pd

    codes, found = pd.factorize(np.asarray(categories, dtype=object)[keep], sort=False)  # None, NaN -> -1
    uniques = [str(v) for v in found] + [NONE_TEXT]
    codes = np.where(codes < 0, len(found), codes)
    totals = np.bincount(codes, minlength=len(uniques))
    top = [i for i in np.argsort(-totals, kind="stable")[:MAX_CATEGORIES] if totals[i] > 0]
    remap = np.full(len(uniques), len(top), dtype=np.int64)
    remap[top] = np.arange(len(top))
    return remap[codes], [str(uniques[i]) for i in top], [int(totals[i]) for i in top]


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _spread(index: np.ndarray, radius: int) -> np.ndarray:
    """Grow each drawn pixel (palette index > 0) into empty neighbours (a sparse map would be specks)."""
    out = index.copy()
    h, w = index.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx == 0 and dy == 0:
                continue
            shifted = np.zeros_like(index)
            shifted[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                index[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            empty = (out == 0) & (shifted > 0)
            out[empty] = shifted[empty]
    return out


def _palette_png(index: np.ndarray, colours: np.ndarray) -> bytes:
    """``index`` (h, w; 0 = transparent) as a palette PNG whose entry i is ``colours[i - 1]``
    (RGBA): a byte a pixel, a quarter of an RGBA PNG's size, so the page sends and decodes less."""
    from PIL import Image

    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[1:len(colours) + 1] = np.clip(np.rint(colours), 0, 255).astype(np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette[:, :3].tobytes(), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3, transparency=palette[:, 3].tobytes())
    return buffer.getvalue()


def density_image(
    xy: np.ndarray, width: int = 1200, height: int = 650, categories: Sequence | np.ndarray | None = None,
    *, x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
) -> DensityImage:
    """The points ``xy`` (n, >=2; columns x, y) as a ``width`` x ``height`` PNG (a palette with
    transparency): empty pixels transparent, the others from light (one point) to dark (the
    most) on a log scale.
    ``categories`` (one value per point): each pixel takes the colour of its most common
    category, its strength from the count; the ``MAX_CATEGORIES`` largest have colours of
    their own. Points with a NaN coordinate are left out."""
    xy = np.asarray(xy)
    keep = np.isfinite(xy[:, 0]) & np.isfinite(xy[:, 1])
    x, y = xy[keep, 0].astype(np.float64), xy[keep, 1].astype(np.float64)
    auto_x, auto_y = _ranges(x, y)
    xr, yr = x_range or auto_x, y_range or auto_y
    pix = _pixels(x, y, width, height, xr, yr)
    counts = np.bincount(pix, minlength=width * height)
    filled = np.flatnonzero(counts)
    # Log scale: one point is still visible next to a pixel of thousands.
    strength = np.log1p(counts[filled]) / np.log1p(max(int(counts.max(initial=0)), 1))
    # A palette of at most 255 colours (0 is transparent): each colour at ``levels`` strengths,
    # steps finer than the eye tells apart.
    legend: tuple[tuple[str, str, int], ...] = ()
    if categories is None:  # from light (one point) to dark (the most)
        levels = 255
        steps = np.linspace(0.0, 1.0, levels)[:, None]
        code, rgb = np.zeros(len(filled), dtype=np.int64), (_LIGHT + (_DARK - _LIGHT) * steps)[None]
    else:  # each pixel's most common category, darker where denser
        codes, names, totals = _codes(categories, keep)
        k = len(names) + 1
        rank = np.zeros(width * height, dtype=np.int64)
        rank[filled] = np.arange(len(filled))
        code = np.bincount(rank[pix] * k + codes, minlength=len(filled) * k).reshape(len(filled), k).argmax(axis=1)
        levels = 255 // k
        steps = np.linspace(0.0, 1.0, levels)[:, None]
        base = np.array([_rgb(c) for c in PALETTE[:len(names)]] + [_rgb(OTHER_COLOUR)], dtype=np.float64)
        rgb = base[:, None, :] * (0.55 + 0.45 * steps)[None]
        legend = tuple((n, PALETTE[i], t) for i, (n, t) in enumerate(zip(names, totals)))
    alpha = np.broadcast_to(150 + 105 * steps, (len(rgb), levels, 1))
    colours = np.concatenate([rgb, alpha], axis=2).reshape(-1, 4)
    index = np.zeros(width * height, dtype=np.uint8)
    index[filled] = 1 + code * levels + np.rint(strength * (levels - 1)).astype(np.int64)
    index = index.reshape(height, width)
    if len(filled) and len(x) < width * height // 200:  # sparse: points of a few pixels each
        index = _spread(index, 2 if len(x) < width * height // 2000 else 1)
    png = _palette_png(index, colours)
    return DensityImage(png, width, height, xr, yr, counts.reshape(height, width), legend)


def points_in_polygon(xy: np.ndarray, polygon: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """A bool mask of the points ``xy`` (n, >=2) inside ``polygon`` (its vertices (x, y), in
    order, closed or not), by the even-odd rule (a self-crossing lasso's loops alternate).
    Points on the boundary may fall either side. Only points in the polygon's bounding box
    are tested, sorted by y, so each edge looks only at the points level with it: a lasso of
    hundreds of vertices over a million points costs a few passes over the box's points."""
    xy = np.asarray(xy)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(len(xy), dtype=bool)
    poly = poly[np.isfinite(poly).all(axis=1)]
    if len(poly) < 3:
        return inside
    (x0, y0), (x1, y1) = poly.min(axis=0), poly.max(axis=0)
    px, py = xy[:, 0], xy[:, 1]
    candidates = np.flatnonzero((px >= x0) & (px <= x1) & (py >= y0) & (py <= y1))
    if len(candidates) == 0:
        return inside
    order = candidates[np.argsort(py[candidates], kind="stable")]
    ys, xs = py[order].astype(np.float64), px[order].astype(np.float64)
    flips = np.zeros(len(order), dtype=bool)
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0)):
        if ay == by:
            continue  # a level edge crosses no ray
        lo, hi = (ay, by) if ay < by else (by, ay)
        start, stop = np.searchsorted(ys, lo, "left"), np.searchsorted(ys, hi, "left")  # lo <= y < hi
        if start == stop:
            continue
        cross = ax + (bx - ax) * (ys[start:stop] - ay) / (by - ay)
        flips[start:stop] ^= xs[start:stop] < cross
    inside[order] = flips
    return inside


def box_polygon(x: Sequence[float], y: Sequence[float]) -> list[tuple[float, float]]:
    """A box selection (two x and two y values, any order) as a polygon."""
    (xa, xb), (ya, yb) = sorted(x[:2]), sorted(y[:2])
    return [(xa, ya), (xb, ya), (xb, yb), (xa, yb)]


__all__ = ["LARGE_MAP_ABOVE", "DensityImage", "box_polygon", "density_image", "large_map_above",
           "points_in_polygon"]
