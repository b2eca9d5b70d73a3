"""Placing one thumbnail as a crop of another: every variant, scale and position by FFT
correlation, refined to a quarter pixel, with the fine detail's agreement there."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgrec.insights.duplicates.bands import detail_agreement
from imgrec.insights.duplicates.dihedral import dihedral

CROP_MIN = 0.5  # a crop must keep at least this share of the frame


#: the share a placement must measure to confirm a crop: at 48 pixels a half-frame crop
#: measures 0.50-0.51, while a picture placed in a neighbouring tile of one wallpaper can
#: measure 0.49 (the search itself tries shares from CROP_MIN - 0.02, so that a crop just
#: over half the frame is still found where the grid rounds it down)
CROP_KEEP = 0.495


SCALES = tuple(np.round(np.arange(0.5, 1.0001, 0.05), 2))


DETAIL_MIN = 0.25  # correlation of the fine detail that a crop confirmation also needs


CROP_SURE = 0.97  # a crop correlation below this needs CROP_DETAIL_MIN of fine detail


CROP_DETAIL_MIN = 0.6


REFINE_FROM = 0.7  # a coarse crop correlation from which the placement is refined


@dataclass(frozen=True)
class Placement:
    """Where :func:`crop_place` puts a part in a whole (thumbnail pixels of the whole)."""

    ncc: float  #: normalised cross-correlation of the grey thumbnails there
    share: float  #: share of the whole's frame the part covers
    variant: int  #: rotation/mirroring of the part (numbered as in :func:`variants`)
    box: tuple[float, float, float, float]  #: (x, y, width, height) in the whole
    agree: float  #: :func:`detail_agreement` of the thumbnails there


def crop_match(part: np.ndarray, whole: np.ndarray) -> tuple[float, float]:
    """(best normalised cross-correlation, share of ``whole``'s frame) of ``part`` placed
    as a crop of ``whole`` under any variant, scale and position (:func:`crop_place`);
    the correlation counts as 0 unless the placement's fine detail agrees too
    (:func:`detail_agreement` at least :data:`DETAIL_MIN`, or :data:`CROP_DETAIL_MIN`
    for a correlation below :data:`CROP_SURE`: neighbouring tiles of one smooth wallpaper
    correlate 0.93-0.97 with their detail agreeing 0.15-0.6), else the correlation is the
    shading's alone."""
    p = crop_place(part, whole)
    if p is None:
        return 0.0, 0.0
    return (p.ncc if p.agree >= crop_detail_need(p.ncc) else 0.0), p.share


def crop_detail_need(ncc: float) -> float:
    return DETAIL_MIN if ncc >= CROP_SURE else CROP_DETAIL_MIN


def crop_place(part: np.ndarray, whole: np.ndarray) -> Placement | None:
    """The best placement of ``part`` as a crop of ``whole`` under any variant, scale and
    position; shares below :data:`CROP_MIN` are not tried (None when nothing fits).
    Correlations by FFT, window sums by integral images, on a grid of whole pixels and
    :data:`SCALES`; the best placement is then refined to a quarter pixel
    (:func:`_refine`: at 48 pixels a half-pixel offset alone can take a fine-textured crop
    from 0.99 to 0.87)."""
    from scipy.signal import correlate

    wh, ww = whole.shape
    w = whole.astype(np.float64)
    ii = np.pad(w, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ii2 = np.pad(w * w, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    best, at = -1.0, None
    for v in range(8):
        p = Image.fromarray(dihedral(part, v))
        for sx in SCALES:
            tw = round(sx * ww)
            th = round(tw * p.height / p.width)
            if th > wh or th < 4 or tw < 4 or (tw * th) / (ww * wh) < CROP_MIN - 0.02:
                continue
            t = np.asarray(p.resize((tw, th), Image.LANCZOS), np.float64)
            t = t - t.mean()
            tn = np.sqrt((t * t).sum())
            if tn == 0:
                continue
            num = correlate(w, t, mode="valid", method="fft")
            s1 = ii[th:, tw:] - ii[:-th, tw:] - ii[th:, :-tw] + ii[:-th, :-tw]
            s2 = ii2[th:, tw:] - ii2[:-th, tw:] - ii2[th:, :-tw] + ii2[:-th, :-tw]
            var = s2 - s1 * s1 / (th * tw)
            ncc = num / (tn * np.sqrt(np.maximum(var, 1e-9)))
            k = int(np.argmax(ncc))
            got = float(ncc.flat[k])
            if got > best:
                y, x = divmod(k, ncc.shape[1])
                best, at = got, (v, float(x), float(y), float(tw), float(th))
    if at is None:
        return None
    p, box = dihedral(part, at[0]), at[1:]
    if best >= REFINE_FROM:
        best, box = _refine(p, whole, box, best)
    share = min(1.0, (box[2] * box[3]) / (ww * wh))
    return Placement(min(best, 1.0), share, at[0], tuple(box),
                     detail_agreement(*placed(p, whole, box)))


def placed(part: np.ndarray, whole: np.ndarray, box: tuple[float, float, float, float]
            ) -> tuple[np.ndarray, np.ndarray]:
    """(part, the region ``box`` = (x, y, width, height) of ``whole`` resampled to the
    part's size): the two aligned at sub-pixel precision, as floats."""
    x, y, tw, th = box
    region = Image.fromarray(whole).transform(
        (part.shape[1], part.shape[0]), Image.EXTENT, (x, y, x + tw, y + th), Image.BICUBIC)
    return part.astype(np.float64), np.asarray(region, np.float64)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally sized arrays (their 1-pixel rims off,
    where resampling reads outside the frame)."""
    a, b = a[1:-1, 1:-1], b[1:-1, 1:-1]
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-9 else 0.0


def _refine(part: np.ndarray, whole: np.ndarray, box: tuple[float, float, float, float],
            coarse: float) -> tuple[float, tuple]:
    """Hill-climb the placement ``box`` (x, y, width, height in ``whole``'s pixels; the
    aspect ratio stays the part's) in half, then quarter pixels of position and 1 % of
    scale: (the best correlation, which never falls below ``coarse``, and its box)."""
    wh, ww = whole.shape
    aspect = part.shape[0] / part.shape[1]
    x, y, tw, _ = box
    cur = (x, y, tw)

    def score(c: tuple[float, float, float]) -> float:
        cx, cy, cw = c
        ch = cw * aspect
        if (cx < -0.5 or cy < -0.5 or cx + cw > ww + 0.5 or cy + ch > wh + 0.5
                or cw * ch < (CROP_MIN - 0.02) * ww * wh):
            return -1.0
        return _ncc(*placed(part, whole, (cx, cy, cw, ch)))

    cur, got = climb(score, cur, score(cur), ((0.5, 0.01 * ww), (0.25, 0.01 * ww)))
    if got <= coarse:
        return coarse, (x, y, tw, box[3])
    return got, (cur[0], cur[1], cur[2], cur[2] * aspect)


Box = tuple[float, float, float]  # (x, y, width) of a placement; its height follows


def climb(score: Callable[[Box], float], cur: Box, got: float,
          stages: Iterable[tuple[float, float]]) -> tuple[Box, float]:
    """Hill-climb a placement: for each stage ``(step, scale_step)`` move ``cur`` by
    ``step`` in x or y or by ``scale_step`` in width while ``score`` rises; (the best
    placement, its score), never below the ``got`` it started from."""
    for step, wstep in stages:
        moved = True
        while moved:
            moved = False
            for d in ((step, 0, 0), (-step, 0, 0), (0, step, 0), (0, -step, 0),
                      (0, 0, wstep), (0, 0, -wstep)):
                c = (cur[0] + d[0], cur[1] + d[1], cur[2] + d[2])
                sc = score(c)
                if sc > got + 1e-6:
                    cur, got, moved = c, sc, True
    return cur, got
