"""Where thumbnails go on a 2-D plot: boxes near their points that neither overlap nor leave the axes.

The boxes are placed in the plot's *paper* coordinates (the unit square of the plot area),
so two boxes that do not overlap there do not overlap on screen whatever the chart's width
in pixels; the axis ranges are fixed with room around the data, so no box is cut at an edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Box of one thumbnail in paper units (about 72 x 72 px on a 760 x 510 px plot area),
#: plus the caption strip under it (22 % of its width, as imgrec.app.thumbs draws it).
BOX_W, BOX_H, CAPTION_H = 0.095, 0.14, 0.031
#: Empty space kept between two boxes, in paper units.
GAP = 0.008
#: Share of the data's extent added on each side of the axes so boxes fit beside edge points.
PAD = 0.12
_GRID = 48  # candidate centres per axis
_COVER_COST = 0.04  # cost of covering one per cent of the points, against distance


@dataclass(frozen=True)
class Placement:
    """Thumbnail boxes laid out on a plot (all arrays in data coordinates)."""

    centres: np.ndarray  # (n, 2) centre of each thumbnail image
    size: tuple[float, float]  # (width, height) of a thumbnail image
    caption_h: float  # height of the caption line under each image
    xrange: tuple[float, float]  # the axis ranges to draw with
    yrange: tuple[float, float]

    def boxes(self) -> np.ndarray:
        """(n, 4) ``x0, y0, x1, y1`` of each image and its caption."""
        w, h = self.size
        c = self.centres
        return np.stack([c[:, 0] - w / 2, c[:, 1] - h / 2 - self.caption_h,
                         c[:, 0] + w / 2, c[:, 1] + h / 2], axis=1)


def axis_ranges(points: np.ndarray, pad: float = PAD) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y ranges around ``points`` (m, 2) with ``pad`` of the extent on each side."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if not len(pts):
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = pts.min(0), pts.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    a, b = lo - pad * span, hi + pad * span
    return (float(a[0]), float(b[0])), (float(a[1]), float(b[1]))


def place(anchors: np.ndarray, points: np.ndarray, box: tuple[float, float] = (BOX_W, BOX_H),
          caption_h: float = CAPTION_H) -> Placement:
    """Place one thumbnail box per anchor, near it, without overlaps, inside the axes.

    Each box goes, in order, to the free candidate position with the lowest cost: its
    distance from its anchor plus a charge for the share of ``points`` it covers (and it
    never covers its own anchor). When some box finds no free position, every box is made
    smaller and the layout starts again, so the boxes never overlap.

    Args:
        anchors: (n, 2) the points the thumbnails belong to.
        points: (m, 2) every point drawn (sets the axis ranges; boxes avoid covering them).
        box: width and height of a thumbnail image in paper units.
        caption_h: height of the caption line under it in paper units.

    Example:
        >>> p = place(np.array([[0.0, 0.0], [0.01, 0.0]]), np.array([[0.0, 0.0], [1.0, 1.0]]))
        >>> b = p.boxes()
        >>> bool(b[0, 2] <= b[1, 0] or b[1, 2] <= b[0, 0] or b[0, 3] <= b[1, 1] or b[1, 3] <= b[0, 1])
        True
    """
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    xr, yr = axis_ranges(np.concatenate([points, anchors]))
    lo = np.array([xr[0], yr[0]])
    span = np.array([xr[1] - xr[0], yr[1] - yr[0]])
    a = (anchors - lo) / span  # paper coordinates
    p = (points - lo) / span
    w, h = box
    for _ in range(12):
        centres = _greedy(a, p, w, h, caption_h)
        if centres is not None:
            break
        w, h, caption_h = 0.85 * w, 0.85 * h, 0.9 * caption_h
    else:  # pragma: no cover - 12 shrinks leave boxes a fiftieth of their size
        centres = a.copy()
    return Placement(lo + centres * span, (w * span[0], h * span[1]), caption_h * span[1], xr, yr)


def _greedy(a: np.ndarray, p: np.ndarray, w: float, h: float, cap: float) -> np.ndarray | None:
    """Centres (n, 2) of the images in paper units, or None when one box finds no room."""
    g = (np.arange(_GRID) + 0.5) / _GRID
    cx, cy = (c.ravel() for c in np.meshgrid(g, g))
    # the whole box (image + caption) stays inside the unit square
    inside = (cx - w / 2 >= 0) & (cx + w / 2 <= 1) & (cy - h / 2 - cap >= 0) & (cy + h / 2 <= 1)
    cx, cy = cx[inside], cy[inside]
    covered = _covered(p, cx, cy, w, h, cap)
    free = np.ones(len(cx), bool)
    out = np.zeros((len(a), 2))
    for i, (ax, ay) in enumerate(a):
        own = (np.abs(cx - ax) < w / 2 + GAP) & (cy - h / 2 - cap - GAP < ay) & (ay < cy + h / 2 + GAP)
        ok = free & ~own
        if not ok.any():
            return None
        cost = np.hypot(cx - ax, cy - ay) + _COVER_COST * covered
        j = int(np.argmin(np.where(ok, cost, np.inf)))
        out[i] = cx[j], cy[j]
        # no later box may overlap this one (boxes of equal size: centre distances)
        free &= ~((np.abs(cx - cx[j]) < w + GAP) & (np.abs(cy - cy[j]) < h + cap + GAP))
    return out


def _covered(p: np.ndarray, cx: np.ndarray, cy: np.ndarray, w: float, h: float, cap: float
             ) -> np.ndarray:
    """Per cent of the points ``p`` under a box centred at each candidate (a summed-area
    table of a fine 2-D histogram, so it costs the same for 200 or 20,000 points)."""
    if not len(p):
        return np.zeros(len(cx))
    bins = 4 * _GRID
    hist, _, _ = np.histogram2d(p[:, 0], p[:, 1], bins=bins, range=[[0, 1], [0, 1]])
    sat = np.zeros((bins + 1, bins + 1))
    sat[1:, 1:] = hist.cumsum(0).cumsum(1)
    x0 = np.clip(np.floor((cx - w / 2) * bins), 0, bins).astype(int)
    x1 = np.clip(np.ceil((cx + w / 2) * bins), 0, bins).astype(int)
    y0 = np.clip(np.floor((cy - h / 2 - cap) * bins), 0, bins).astype(int)
    y1 = np.clip(np.ceil((cy + h / 2) * bins), 0, bins).astype(int)
    n = sat[x1, y1] - sat[x0, y1] - sat[x1, y0] + sat[x0, y0]
    return 100.0 * n / len(p)
